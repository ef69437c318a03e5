"""ONNX import: an lstmx ``LSTM`` from a graph of ONNX ``LSTM`` operators, checked node by node.

``from_onnx`` reads back the layout ``lstmx._interop_onnx`` writes, or any graph of ONNX
``LSTM`` nodes stacked the same way. Everything is checked before anything is built, no file
is read but the model (and, with ``base_dir``, its external weights inside that directory),
and what lstmx cannot compute exactly is refused with a message naming the node or tensor.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from lstmx._interop_gates import LSTMX, ONNX, build_cell, build_lstm, resolve_dtype, reorder
from lstmx._interop_onnx import METADATA_KEY, _onnx

__all__ = ["from_onnx"]


def from_onnx(model, *, batch_first=None, dtype=None, base_dir=None):
    """An ``LSTM`` from an ONNX graph of ``LSTM`` operators (such as ``to_onnx`` writes).

    The graph's ``LSTM`` nodes, in graph order, are the layers: each must read the output
    ``Y`` of the one before, through a ``Transpose`` and ``Reshape`` (or ``Squeeze``) that
    lay it out as (T, B, D*H) exactly as lstmx does, or through ``Identity``; anything else
    between two layers (a transpose that swaps time and batch, say) is refused. A
    bidirectional layer is one node with ``direction="bidirectional"``, or a
    ``"forward"`` and a ``"reverse"`` node on the same input whose outputs ``Y`` are
    concatenated on the direction axis; a lone ``"reverse"`` node is a layer of an
    ``LSTM(reverse=True)``, and then every layer must be one. Operations after the last
    layer are not read, so a graph that computes more than a stack of LSTMs imports as its
    LSTM part. The weights must be initializers (or ``Constant`` nodes); the initial state
    and ``sequence_lens``, if any, graph inputs (lstmx takes them at call time). Every node
    must have the same hidden size, layout, bias and peephole presence, the default
    activations (or ``Affine(1, 0)`` as the output activation, lstmx's "identity"), no
    ``clip`` and ``input_forget=0``; layer k > 0 must read D*H features.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
    batch_first : bool, optional
        Default: as the model was exported by ``to_onnx``, else True if the nodes use
        ``layout=1``.
    dtype : float32 or float64, optional
        Default: float64 for double weights, else float32.
    base_dir : str or path, optional
        The directory of the weights that the model keeps in external files. Without it,
        such a model is refused: nothing but ``model`` itself is read. With it, only
        regular files inside ``base_dir`` are read.

    Returns
    -------
    LSTM, or LSTMCell for a model ``to_onnx`` exported from one

    Raises
    ------
    ValueError, TypeError
        For anything that is not such a graph, naming the node or tensor and saying what
        was expected and what was found.
    """
    onnx = _onnx()
    model, source = _load_model(onnx, model)
    if base_dir is not None:
        if not isinstance(base_dir, (str, os.PathLike)) or not os.path.isdir(base_dir):
            raise ValueError(f"base_dir must be an existing directory; got {base_dir!r}")
        base_dir = os.path.realpath(os.fspath(base_dir))
    graph = model.graph
    # Every name must mean one thing: runtimes disagree on which of two same-named
    # initializers, or of two nodes writing one output, counts.
    names = [t.name for t in graph.initializer] + [o for n in graph.node for o in n.output
                                                   if o]
    if len(set(names)) != len(names):
        seen, dup = set(), set()
        for name in names:
            (dup if name in seen else seen).add(name)
        raise ValueError(f"{source} is ambiguous: the names {sorted(dup)[:5]} are each given "
                         "to more than one initializer or node output")
    tensors = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    tensors[n.output[0]] = a.t
    lstm_nodes = [n for n in graph.node if n.op_type == "LSTM"]
    if not lstm_nodes:
        quantized = any(n.op_type == "DynamicQuantizeLSTM" for n in graph.node)
        raise ValueError(f"{source}: the ONNX graph has no LSTM node" + (
            " (it has DynamicQuantizeLSTM nodes: a quantised model, which from_onnx does "
            "not read; import the float model's graph)" if quantized else ""))

    nodes = []
    for k, n in enumerate(lstm_nodes):
        where = f"{source}: LSTM node {n.name or k!r}"
        if n.domain not in ("", "ai.onnx"):
            raise ValueError(f"{where} is of domain {n.domain!r}, not ONNX's LSTM operator")
        attrs = _attributes(onnx, n, where)
        nodes.append((n, where, _node_weights(n, attrs, tensors, where, base_dir)))
    layers = _group_layers(nodes, graph, source)

    producer = {out: n for n in graph.node for out in n.output}
    for k in range(1, len(layers)):
        _check_between(layers[k - 1], layers[k], producer, tensors, source, k)

    first = layers[0]
    act, layout, D, H = first["act"], first["layout"], first["D"], first["H"]
    W0, _, B0, P0 = first["weights"]
    for k, layer in enumerate(layers):
        W, R, B, P = layer["weights"]
        where = layer["where"]
        if (layer["act"], layer["layout"]) != (act, layout):
            raise ValueError(f"{where}: its activations or layout differ from the first "
                             "LSTM node's; lstmx layers are all alike")
        want_in = W0.shape[2] if k == 0 else D * H
        if W.shape != (D, 4 * H, want_in) or R.shape != (D, 4 * H, H):
            raise ValueError(f"{where} (layer {k}): W {W.shape} and R {R.shape} do not "
                             f"stack on the layers before it; expected W "
                             f"{(D, 4 * H, want_in)}, R {(D, 4 * H, H)}")
        if (B is None) != (B0 is None) or (P is None) != (P0 is None):
            raise ValueError(f"{where} (layer {k}): bias or peepholes present in some "
                             "layers only")

    saved = _metadata(model, source)
    if batch_first is None:
        batch_first = saved.get("batch_first", layout == 1)
    options = dict(input_size=int(W0.shape[2]), hidden_size=int(H), num_layers=len(layers),
                   bias=B0 is not None, batch_first=batch_first, bidirectional=D == 2,
                   peephole=P0 is not None, output_activation=act,
                   dtype=resolve_dtype(dtype, W0.dtype), reverse=first["reverse"],
                   **{k: saved[k] for k in _DROPOUTS if k in saved})
    params = {}
    for k, layer in enumerate(layers):
        W, R, B, P = layer["weights"]
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            params["weight_ih" + s] = reorder(W[d], ONNX, LSTMX)
            params["weight_hh" + s] = reorder(R[d], ONNX, LSTMX)
            if B is not None:
                params["bias_ih" + s] = reorder(B[d, :4 * H], ONNX, LSTMX)
                params["bias_hh" + s] = reorder(B[d, 4 * H:], ONNX, LSTMX)
            if P is not None:
                for g, j in zip("iof", range(3)):
                    params[f"weight_c{g}" + s] = P[d, j * H:(j + 1) * H]
    if saved.get("cell") and len(layers) == 1 and D == 1 and not first["reverse"]:
        if any(k in saved for k in _DROPOUTS):
            raise ValueError(f"{source}: metadata {METADATA_KEY!r} records a cell with "
                             f"dropouts; an LSTMCell has none")
        options = {k: v for k, v in options.items()
                   if k not in ("num_layers", "batch_first", "bidirectional", "reverse")}
        return build_cell(params, **options)
    return build_lstm(params, **options)


def _load_model(onnx, model):
    """(ModelProto, how messages name it). A path is read without its external data."""
    from google.protobuf.message import DecodeError

    if isinstance(model, (str, os.PathLike)):
        source = repr(os.fspath(model))
        try:
            return onnx.load(os.fspath(model), load_external_data=False), source
        except (DecodeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{source} is not an ONNX model (it does not parse as one): "
                             f"{type(err).__name__}: {err}") from err
    if isinstance(model, (bytes, bytearray, memoryview)):
        source = f"the ONNX model ({len(model)} bytes)"
        try:
            return onnx.load_from_string(bytes(model)), source
        except (DecodeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{source} is not an ONNX model (it does not parse as one): "
                             f"{type(err).__name__}: {err}") from err
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, a path or bytes; "
                        f"got {type(model).__name__}")
    return model, f"the ONNX model {model.graph.name!r}"


_FLAGS = ("batch_first", "cell")
_DROPOUTS = ("dropout", "recurrent_dropout")  # given only when not 0


def _metadata(model, source) -> dict:
    """The options ``to_onnx`` recorded: {"batch_first": bool, "cell": bool} and the
    nonzero ones of "dropout" and "recurrent_dropout" (numbers), or {}."""
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        return {}
    where = f"{source}: metadata {METADATA_KEY!r}"
    try:
        saved = json.loads(meta[METADATA_KEY])
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from err
    if not isinstance(saved, dict) or not set(saved) <= {*_FLAGS, *_DROPOUTS}:
        got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{where} must be a JSON object with the fields 'batch_first' and "
                         f"'cell' (and 'dropout', 'recurrent_dropout'); got {got}")
    for key, value in saved.items():
        if key in _FLAGS and not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false; got {value!r}")
        if key in _DROPOUTS and (isinstance(value, bool)
                                 or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: {key} must be a number; got {value!r}")
    return saved


def _tensor(t, where, base_dir):
    """The array of TensorProto ``t``; data kept in an external file only from base_dir."""
    from onnx import TensorProto, numpy_helper

    if any(d < 0 for d in t.dims):
        raise ValueError(f"{where} has negative dimensions {tuple(t.dims)}")
    if t.data_location == TensorProto.EXTERNAL:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        if base_dir is None:
            raise ValueError(f"{where} keeps its data in the external file {location!r}; "
                             "from_onnx reads no file but the model it is given: pass "
                             "base_dir=<the directory of that file> to read it")
        path = os.path.realpath(os.path.join(base_dir, location))
        if os.path.commonpath([path, base_dir]) != base_dir or not os.path.isfile(path):
            raise ValueError(f"{where}: its external file {location!r} is not a file "
                             f"inside base_dir {base_dir!r}")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError as err:
            raise ValueError(f"{where}: bad external data offset or length: {err}") from err
        itemsize = {TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8,
                    TensorProto.FLOAT16: 2}.get(t.data_type)
        if itemsize is None:
            raise TypeError(f"{where} must be a float tensor; got ONNX data type "
                            f"{t.data_type}")
        want = math.prod(t.dims) * itemsize
        if offset < 0 or length not in (-1, want) or \
                offset + want > os.path.getsize(path):
            raise ValueError(f"{where}: its external data ({want} bytes at offset {offset}) "
                             f"does not fit {location!r} ({os.path.getsize(path)} bytes)")
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(want)
        dt = {4: "<f4", 8: "<f8", 2: "<f2"}[itemsize]
        return np.frombuffer(data, dt).reshape(tuple(t.dims)).copy()
    try:
        return numpy_helper.to_array(t)
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        raise ValueError(f"{where} does not hold the data its shape "
                         f"{tuple(t.dims)} and type claim: {err}") from err


_LSTM_ATTRIBUTES = {"activation_alpha": "FLOATS", "activation_beta": "FLOATS",
                    "activations": "STRINGS", "clip": "FLOAT", "direction": "STRING",
                    "hidden_size": "INT", "input_forget": "INT", "layout": "INT"}


def _attributes(onnx, n, where) -> dict:
    """The node's attributes by name, each of the type ONNX's LSTM gives it."""
    from onnx import helper

    attrs = {}
    for a in n.attribute:
        want = _LSTM_ATTRIBUTES.get(a.name)
        if want is None:
            raise ValueError(f"{where}: unknown attribute {a.name!r}; ONNX's LSTM has "
                             f"{sorted(_LSTM_ATTRIBUTES)}")
        if a.name in attrs:
            raise ValueError(f"{where}: attribute {a.name!r} is given twice")
        if a.type != getattr(onnx.AttributeProto, want):
            got = onnx.AttributeProto.AttributeType.Name(a.type) \
                if a.type in onnx.AttributeProto.AttributeType.values() else a.type
            raise TypeError(f"{where}: attribute {a.name!r} must be of type {want}; got {got}")
        attrs[a.name] = helper.get_attribute_value(a)
    return attrs


_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _node_weights(n, attrs, tensors, where, base_dir):
    """Check one ONNX LSTM node; {direction, act, layout, D, H, weights: (W, R, B, P)}."""
    direction = _text(attrs.get("direction", b"forward"))
    if direction not in _DIRECTIONS:
        raise ValueError(f"{where}: direction must be one of {list(_DIRECTIONS)}; got "
                         f"{direction!r}")
    D = _DIRECTIONS[direction]
    if "clip" in attrs:
        raise ValueError(f"{where}: lstmx has no cell clipping (clip={attrs['clip']})")
    if attrs.get("input_forget", 0) != 0:
        raise ValueError(f"{where}: lstmx has no coupled input-forget gate "
                         f"(input_forget={attrs['input_forget']!r})")
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{where}: layout must be 0 or 1; got {layout!r}")
    acts = [_text(a) for a in attrs.get("activations", [b"Sigmoid", b"Tanh", b"Tanh"] * D)]
    if len(acts) != 3 * D:
        raise ValueError(f"{where}: activations must list 3 functions per direction, "
                         f"{3 * D} in all; got {len(acts)}: {acts}")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    affine = sum(a.lower() == "affine" for a in acts)
    if len(alphas) != affine or len(betas) != affine:
        raise ValueError(f"{where}: activation_alpha and activation_beta must have one "
                         f"value per Affine activation ({affine}); got {len(alphas)} and "
                         f"{len(betas)}")
    act = None
    for d in range(D):
        f, g, h = (a.lower() for a in acts[3 * d:3 * d + 3])
        if (f, g) != ("sigmoid", "tanh") or h not in ("tanh", "affine"):
            raise ValueError(f"{where}: activations {acts} have no lstmx equivalent "
                             "(Sigmoid, Tanh, then Tanh or Affine(1, 0))")
        this = "tanh"
        if h == "affine":
            if (alphas.pop(0), betas.pop(0)) != (1.0, 0.0):
                raise ValueError(f"{where}: only Affine(alpha=1, beta=0) (identity) is an "
                                 "lstmx output activation")
            this = "identity"
        if act not in (None, this):
            raise ValueError(f"{where}: the directions use different activations")
        act = this

    names = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
    if len(n.input) > len(names) or len(n.output) > 3:
        raise ValueError(f"{where}: ONNX's LSTM has at most 8 inputs and 3 outputs; got "
                         f"{len(n.input)} and {len(n.output)}")
    for i in (4, 5, 6):
        if len(n.input) > i and n.input[i] in tensors:
            raise ValueError(f"{where}: input {names[i]} ({n.input[i]!r}) is a constant of "
                             "the graph; lstmx takes it at call time (state=, lengths=), so "
                             "it must be a graph input")

    def weight(i):
        if len(n.input) <= i or not n.input[i]:
            return None
        if n.input[i] not in tensors:
            raise ValueError(f"{where}: input {names[i]} ({n.input[i]!r}) is not a constant "
                             "of the graph (initializer or Constant node)")
        a = _tensor(tensors[n.input[i]], f"{where}: input {names[i]} ({n.input[i]!r})",
                    base_dir)
        if a.dtype.kind != "f":
            raise TypeError(f"{where}: {names[i]} must be a float tensor; got {a.dtype}")
        return a

    if not n.input or not n.input[0]:
        raise ValueError(f"{where}: input X is required")
    W, R, B, P = weight(1), weight(2), weight(3), weight(7)
    if W is None or R is None:
        raise ValueError(f"{where}: W and R are required")
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or W.shape[1] % 4 or not W.shape[1]:
        raise ValueError(f"{where}: W must be (D={D}, 4H, I) and R (D, 4H, H); got "
                         f"W {W.shape}, R {R.shape}")
    H = W.shape[1] // 4
    if R.shape != (D, 4 * H, H):
        raise ValueError(f"{where}: R must have shape {(D, 4 * H, H)}; got {R.shape}")
    if "hidden_size" in attrs and attrs["hidden_size"] != H:
        raise ValueError(f"{where}: hidden_size={attrs['hidden_size']} but W has 4H = "
                         f"{4 * H} rows")
    if B is not None and B.shape != (D, 8 * H):
        raise ValueError(f"{where}: B must have shape {(D, 8 * H)}; got {B.shape}")
    if P is not None and P.shape != (D, 3 * H):
        raise ValueError(f"{where}: P must have shape {(D, 3 * H)}; got {P.shape}")
    return dict(direction=direction, act=act, layout=layout, D=D, H=H, weights=(W, R, B, P))


def _group_layers(nodes, graph, source):
    """The layers: one node each (bidirectional, forward or reverse), or a forward node and
    a reverse node on the same input whose Y are concatenated on the direction axis."""
    consumers = {}
    for c in graph.node:
        for i in c.input:
            consumers.setdefault(i, []).append(c)
    layers, i = [], 0
    while i < len(nodes):
        n, where, info = nodes[i]
        pair = nodes[i:i + 2]
        directions = sorted(p[2]["direction"] for p in pair)
        if directions != ["forward", "reverse"] or not all(p[0].input for p in pair) or \
                pair[0][0].input[0] != pair[1][0].input[0]:
            layers.append(dict(info, node=n, where=where, y=n.output[0] if n.output else "",
                               reverse=info["direction"] == "reverse"))
            i += 1
            continue
        fwd, rev = sorted(pair, key=lambda p: p[2]["direction"] != "forward")
        (nf, wf, f), (nr, wr, r) = fwd, rev
        axis = 1 if f["layout"] == 0 else 2
        yf, yr = (nf.output[0] if nf.output else ""), (nr.output[0] if nr.output else "")
        concat = [c for c in consumers.get(yf, []) if yf and yr and c.output
                  and c.op_type == "Concat" and list(c.input) == [yf, yr]
                  and {a.name: a.i for a in c.attribute}.get("axis") in (axis, axis - 4)]
        if nf.input[0] != nr.input[0] or not concat or \
                (f["act"], f["layout"], f["H"]) != (r["act"], r["layout"], r["H"]) or \
                any((a is None) != (b is None) for a, b in zip(f["weights"], r["weights"])):
            raise ValueError(f"{wr}: a direction='reverse' node must pair with a 'forward' "
                             "node of the same options on the same input X, their outputs Y "
                             f"concatenated (forward first) on axis {axis}, to be the two "
                             "directions of an lstmx layer")
        weights = tuple(None if a is None else np.concatenate([a, b])
                        for a, b in zip(f["weights"], r["weights"]))
        layers.append(dict(f, D=2, weights=weights, node=nf, where=wf,
                           y=concat[0].output[0], reverse=False))
        i += 2
    kinds = {"bidirectional" if layer["D"] == 2 else "reverse" if layer["reverse"]
             else "forward" for layer in layers}
    if kinds == {"forward", "reverse"}:
        where = next(layer["where"] for layer in layers if layer["reverse"])
        raise ValueError(f"{where}: a direction='reverse' node must pair with a 'forward' "
                         "node of the same options on the same input X, their outputs Y "
                         "concatenated (forward first) on the direction axis, to be the two "
                         "directions of an lstmx layer; or every layer must be a lone "
                         "'reverse' node (an LSTM with reverse=True); lstmx layers are all "
                         "alike")
    if len(kinds) > 1:
        raise ValueError(f"{source}: some layers are {' and some '.join(sorted(kinds))}; "
                         "lstmx layers all have the same direction(s)")
    return layers


def _check_between(prev, layer, producer, tensors, source, k):
    """Refuse unless ``layer`` reads ``prev``'s Y laid out as (T, B, D*H) (layout 0) or
    (B, T, D*H) (layout 1), through reshapes that keep time, batch and features apart."""
    D, layout = prev["D"], prev["layout"]
    want = ("T", "B", "DH") if layout == 0 else ("B", "T", "DH")
    # The dims of the tensor that reaches the layer, followed back from its input X.
    chain, name = [], layer["node"].input[0]
    while name != prev["y"]:
        op = producer.get(name)
        if op is None or op.op_type not in ("Transpose", "Reshape", "Squeeze",
                                             "Identity") or len(chain) > 8 or not op.input:
            what = "a graph input" if op is None else f"a {op.op_type} node"
            raise ValueError(f"{layer['where']} (layer {k}) does not read the output Y of "
                             f"the layer before it through reshapes only (its input comes "
                             f"from {what}): the LSTM nodes are not a stack lstmx can "
                             "import exactly")
        chain.append(op)
        name = op.input[0]
    dims = ["T", "D", "B", "H"] if layout == 0 else ["B", "T", "D", "H"]  # prev's Y
    for op in reversed(chain):
        attrs = {a.name: a for a in op.attribute}
        dims = _apply(op, attrs, dims, D, tensors, f"{source}: {op.op_type} node "
                      f"{op.name or op.output[0]!r} between layers {k - 1} and {k}")
    squeezed = tuple("H" if d == "DH" else d for d in want)  # one direction, squeezed
    if tuple(dims) != want and not (D == 1 and tuple(dims) == squeezed):
        raise ValueError(f"{layer['where']} (layer {k}) reads the output of layer {k - 1} "
                         f"laid out as {tuple(dims)}; an lstmx layer reads {want} (the "
                         "operations in between move time, batch or features)")


def _apply(op, attrs, dims, D, tensors, where):
    """The dims after ``op``, for the reshapes that lstmx can follow; else ValueError."""
    from onnx import helper

    if op.op_type == "Identity":
        return dims
    if op.op_type == "Transpose":
        perm = list(helper.get_attribute_value(attrs["perm"])) if "perm" in attrs else \
            list(range(len(dims)))[::-1]
        if sorted(perm) != list(range(len(dims))):
            raise ValueError(f"{where}: perm {perm} does not fit a {len(dims)}-D tensor")
        return [dims[p] for p in perm]
    if op.op_type == "Squeeze":
        if "axes" in attrs:
            axes = list(helper.get_attribute_value(attrs["axes"]))
        elif len(op.input) > 1 and op.input[1] in tensors:
            axes = [int(a) for a in _tensor(tensors[op.input[1]], where, None).ravel()]
        else:
            raise ValueError(f"{where}: a Squeeze must name its axes (as a constant)")
        axes = [a + len(dims) if a < 0 else a for a in axes]
        if any(a >= len(dims) or dims[a] != "D" for a in axes) or D != 1:
            raise ValueError(f"{where}: squeezes axes {axes} of {tuple(dims)}; only the "
                             "direction axis of a one-direction layer can be squeezed")
        return [d for i, d in enumerate(dims) if i not in axes]
    # Reshape: [0, 0, -1] (or the explicit sizes) merging the last two of four dims.
    if len(op.input) < 2 or op.input[1] not in tensors:
        raise ValueError(f"{where}: a Reshape between layers must have a constant shape")
    if helper.get_attribute_value(attrs["allowzero"]) if "allowzero" in attrs else 0:
        raise ValueError(f"{where}: allowzero=1 is not a reshape lstmx can follow")
    shape = [int(v) for v in _tensor(tensors[op.input[1]], where, None).ravel()]
    merged = dims[:2] + ["DH" if dims[2:] == ["D", "H"] else "?"]
    if len(dims) == 4 and shape == [0, 0, -1] and merged[2] == "DH":
        return merged
    if len(dims) == 3 and shape == [0, 0, -1]:
        return dims
    raise ValueError(f"{where}: reshapes {tuple(dims)} to {shape}; lstmx follows only "
                     "[0, 0, -1] merging (direction, hidden) into one axis")
