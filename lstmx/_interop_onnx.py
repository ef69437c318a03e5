"""ONNX: an lstmx model as a graph of ONNX ``LSTM`` operators, and back.

Each layer becomes one ``LSTM`` node (``direction="bidirectional"`` for two directions). Per
direction ``d`` the operator holds ``W`` (D, 4H, I), ``R`` (D, 4H, H), ``B`` (D, 8H) =
[input biases, recurrent biases] and ``P`` (D, 3H) = [p_i, p_o, p_f], gates in the order
i, o, f, c; its equations are those of ``LSTM.md`` with ``h = o * h_act(c)``.
"""
from __future__ import annotations

import json
import os

import numpy as np

from lstmx._interop_gates import (LSTMX, ONNX, build_cell, build_lstm, layer_params,
                                  optional_import, resolve_dtype, reorder)

__all__ = ["to_onnx", "from_onnx"]

DEFAULT_OPSET = 21
MIN_OPSET = 14
METADATA_KEY = "lstmx.config"

# The ONNX activations (f, g, h) of each direction: the gates, the candidate and the output.
_ACTIVATIONS = {"tanh": ("Sigmoid", "Tanh", "Tanh"),
                "identity": ("Sigmoid", "Tanh", "Affine")}  # Affine(x) = 1 * x + 0


# Operations that may sit between stacked layers, moving data without computing.
_RESHAPES = ("Transpose", "Reshape", "Squeeze", "Identity", "Flatten")


def _onnx():
    return optional_import("onnx", "ONNX export and import",
                           "install it with `pip install onnx` or `pip install lstmx[interop]`")


def to_onnx(model, *, initial_state=False, sequence_lens=False, ir_version=13, opset=None):
    """Export ``model`` as an ONNX graph of ``LSTM`` operators.

    Parameters
    ----------
    model : LSTM or LSTMCell, or a list [Embedding, LSTM, Linear]
        Any configuration without projection (``proj_size=0``): ONNX's LSTM has no
        projection. An ``LSTMCell`` exports as a one-layer LSTM (feed T = 1 for one step).
        A list is a whole model, one graph: an LSTM with a ``Linear`` readout of its every
        step and/or an ``Embedding`` of its input tokens. The input ``X`` is then
        ``tokens`` (int64, (T, B)) and the output ``Y`` is ``output`` (T, B, O), the
        readout of lstmx's ``y`` ((B, T, .) with ``batch_first``).
    initial_state : bool, default False
        Add the graph inputs ``initial_h`` and ``initial_c``; without them the state starts
        at zero.
    sequence_lens : bool, default False
        Add the graph input ``sequence_lens`` (int32, (B,)): the valid steps of each sequence,
        as ``lengths`` of ``LSTM.__call__``.
    ir_version : int, default 13
        The model's IR version (onnxruntime 1.31 loads 13 or lower).
    opset : int, optional
        The ONNX opset, at least 14; default 21.

    Returns
    -------
    onnx.ModelProto
        Inputs ``X`` (T, B, I) and, if asked for, ``initial_h``, ``initial_c``
        (L*D, B, H) and ``sequence_lens`` (B,); outputs ``Y`` (T, D, B, H) (the last layer's
        output, as the ONNX LSTM operator gives it), ``Y_h`` and ``Y_c`` (L*D, B, H) (as
        ``h_n`` and ``c_n``). With ``batch_first`` every tensor is laid out as the operator's
        ``layout=1``: ``X`` (B, T, I), ``Y`` (B, T, D, H), states (B, L*D, H).
        ``Y.transpose(0, 2, 1, 3).reshape(T, B, D*H)`` is lstmx's ``y``.

    Raises
    ------
    ValueError
        For a model with a projection.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if isinstance(model, (list, tuple)):
        from lstmx._interop_onnx_model import sequential_to_onnx
        return sequential_to_onnx(model, to_onnx, initial_state=initial_state,
                                  sequence_lens=sequence_lens, ir_version=ir_version,
                                  opset=opset)
    cfg, params = layer_params(model)
    if cfg.proj_size:
        raise ValueError(f"ONNX's LSTM operator has no projection; cannot export a "
                                  f"model with proj_size={cfg.proj_size}")
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {MIN_OPSET}; got {opset!r}")
    if not isinstance(ir_version, int) or ir_version < 7:
        raise ValueError(f"ir_version must be an integer >= 7; got {ir_version!r}")

    elem = TensorProto.FLOAT if cfg.dtype == np.float32 else TensorProto.DOUBLE
    L, D, H = cfg.num_layers, cfg.num_directions, cfg.hidden_size
    LD = L * D
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, outputs, **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], **attrs))
        return outputs[0]

    seq, batch = "seq_len", "batch"
    if cfg.batch_first:  # outside: ONNX's layout=1; inside: layout 0, which all runtimes run
        x_shape, state_shape = [batch, seq, cfg.input_size], [batch, LD, H]
        y_shape = [batch, seq, D, H]
    else:
        x_shape, state_shape = [seq, batch, cfg.input_size], [LD, batch, H]
        y_shape = [seq, D, batch, H]
    graph_inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    x = node("Transpose", ["X"], ["X_tbi"], perm=[1, 0, 2]) if cfg.batch_first else "X"
    h0 = c0 = lens = ""
    if initial_state:
        graph_inputs += [helper.make_tensor_value_info(n, elem, state_shape)
                         for n in ("initial_h", "initial_c")]
        h0, c0 = "initial_h", "initial_c"
        if cfg.batch_first:
            h0 = node("Transpose", [h0], ["initial_h_ldbh"], perm=[1, 0, 2])
            c0 = node("Transpose", [c0], ["initial_c_ldbh"], perm=[1, 0, 2])
    if sequence_lens:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                          [batch]))
        lens = "sequence_lens"

    activations = list(_ACTIVATIONS[cfg.output_activation]) * D
    extra = {}
    if cfg.output_activation == "identity":
        extra = dict(activation_alpha=[1.0] * D, activation_beta=[0.0] * D)
    hs, cs = [], []
    for k in range(L):
        W, R, B, P = _layer_to_onnx(cfg, params, k)
        inputs = [x, const(f"W_l{k}", W), const(f"R_l{k}", R),
                  const(f"B_l{k}", B) if B is not None else "", lens]
        if initial_state:
            if L == 1:
                inputs += [h0, c0]
            else:
                starts, ends = const(f"start_l{k}", [k * D]), const(f"end_l{k}", [(k + 1) * D])
                axes = const(f"axes_l{k}", [0]) if k == 0 else "axes_l0"
                inputs += [node("Slice", [s, starts, ends, axes], [f"{s}_l{k}"])
                           for s in (h0, c0)]
        else:
            inputs += ["", ""]
        if P is not None:
            inputs.append(const(f"P_l{k}", P))
        last = k == L - 1
        y = "Y" if last and not cfg.batch_first else f"Y_l{k}"
        h_n = "Y_h" if L == 1 and not cfg.batch_first else f"Y_h_l{k}"
        c_n = "Y_c" if L == 1 and not cfg.batch_first else f"Y_c_l{k}"
        while inputs[-1] == "":  # trailing optional inputs are left out
            inputs.pop()
        node("LSTM", inputs, [y, h_n, c_n], hidden_size=H,
             direction="bidirectional" if D == 2 else "forward", activations=activations,
             **extra)
        hs.append(h_n)
        cs.append(c_n)
        if not last:  # (T, D, B, H) -> (T, B, D*H), the next layer's input
            x = node("Transpose", [y], [f"Y_tbdh_l{k}"], perm=[0, 2, 1, 3])
            x = node("Reshape", [x, const(f"shape_l{k}", np.array([0, 0, -1], np.int64))],
                     [f"X_l{k + 1}"])
    h_n, c_n = hs[0], cs[0]
    if L > 1:
        h_n = node("Concat", hs, ["Y_h" if not cfg.batch_first else "Y_h_ldbh"], axis=0)
        c_n = node("Concat", cs, ["Y_c" if not cfg.batch_first else "Y_c_ldbh"], axis=0)
    if cfg.batch_first:
        node("Transpose", [y], ["Y"], perm=[2, 0, 1, 3])
        node("Transpose", [h_n], ["Y_h"], perm=[1, 0, 2])
        node("Transpose", [c_n], ["Y_c"], perm=[1, 0, 2])
    outputs = [helper.make_tensor_value_info("Y", elem, y_shape),
               helper.make_tensor_value_info("Y_h", elem, state_shape),
               helper.make_tensor_value_info("Y_c", elem, state_shape)]
    graph = helper.make_graph(nodes, "lstmx", graph_inputs, outputs, inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                   producer_name="lstmx")
    onnx_model.ir_version = ir_version
    helper.set_model_props(onnx_model, {METADATA_KEY: json.dumps(
        {"batch_first": cfg.batch_first, "cell": type(model).__name__ == "LSTMCell"})})
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _layer_to_onnx(cfg, params, k):
    """W, R, B (or None), P (or None) of layer ``k`` in the ONNX layout."""
    D, H = cfg.num_directions, cfg.hidden_size
    sfx = [cfg.suffix(k, d) for d in range(D)]
    W = np.stack([reorder(params["weight_ih" + s], LSTMX, ONNX) for s in sfx])
    R = np.stack([reorder(params["weight_hh" + s], LSTMX, ONNX) for s in sfx])
    B = P = None
    if cfg.bias:
        B = np.stack([np.concatenate([reorder(params["bias_ih" + s], LSTMX, ONNX),
                                      reorder(params["bias_hh" + s], LSTMX, ONNX)])
                      for s in sfx])
    if cfg.peephole:
        P = np.stack([np.concatenate([params[f"weight_c{g}" + s] for g in "iof"])
                      for s in sfx])
    assert W.shape[:2] == (D, 4 * H)
    return W, R, B, P


def from_onnx(model, *, batch_first=None, dtype=None):
    """An ``LSTM`` from an ONNX graph of ``LSTM`` operators (such as ``to_onnx`` writes).

    The graph's ``LSTM`` nodes, in graph order, are the layers: each must read the output
    ``Y`` of the one before, through reshapes only. Other operations are not read, so a
    graph that computes more than a stack of LSTMs imports as its LSTM part. The weights
    must be initializers (or ``Constant`` nodes). Every node must have the same hidden size,
    direction ("forward" or "bidirectional"), bias and peephole presence, the default
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

    Returns
    -------
    LSTM, or LSTMCell for a model ``to_onnx`` exported from one
    """
    onnx = _onnx()
    from onnx import helper, numpy_helper

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    elif isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    elif not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, a path or bytes; "
                        f"got {type(model).__name__}")
    graph = model.graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    tensors[n.output[0]] = numpy_helper.to_array(a.t)
    lstm_nodes = [n for n in graph.node if n.op_type == "LSTM"]
    if not lstm_nodes:
        raise ValueError("the ONNX graph has no LSTM node")

    layers, act, layout = [], None, None
    for k, n in enumerate(lstm_nodes):
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        where = f"LSTM node {n.name or k!r}"
        node_act, node_layout, layer = _node_weights(n, attrs, tensors, where)
        if act not in (None, node_act) or layout not in (None, node_layout):
            raise ValueError(f"{where}: its activations or layout differ from the first "
                             "LSTM node's; lstmx layers are all alike")
        act, layout = node_act, node_layout
        layers.append(layer)

    producer = {out: n for n in graph.node for out in n.output}
    for k in range(1, len(lstm_nodes)):
        name = lstm_nodes[k].input[0]
        while name in producer and producer[name].op_type in _RESHAPES:
            name = producer[name].input[0]
        if name != lstm_nodes[k - 1].output[0]:
            raise ValueError(f"LSTM node {k} does not read the output Y of LSTM node {k - 1} "
                             "(through reshapes only): the LSTM nodes are not a stack")

    W0, R0, B0, P0 = layers[0]
    D, H = W0.shape[0], R0.shape[2]
    for k, (W, R, B, P) in enumerate(layers):
        want_in = W0.shape[2] if k == 0 else D * H
        if W.shape != (D, 4 * H, want_in) or R.shape != (D, 4 * H, H):
            raise ValueError(f"LSTM node {k}: W {W.shape} and R {R.shape} do not stack on "
                             f"the layers before it; expected W {(D, 4 * H, want_in)}, "
                             f"R {(D, 4 * H, H)}")
        if (B is None) != (B0 is None) or (P is None) != (P0 is None):
            raise ValueError(f"LSTM node {k}: bias or peepholes present in some layers only")

    meta = {p.key: p.value for p in model.metadata_props}
    saved = json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}
    if batch_first is None:
        batch_first = bool(saved.get("batch_first", layout == 1))
    options = dict(input_size=int(W0.shape[2]), hidden_size=int(H), num_layers=len(layers),
                   bias=B0 is not None, batch_first=batch_first, bidirectional=D == 2,
                   peephole=P0 is not None, output_activation=act,
                   dtype=resolve_dtype(dtype, W0.dtype))
    params = {}
    for k, (W, R, B, P) in enumerate(layers):
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
    if saved.get("cell") and len(layers) == 1 and D == 1:
        options = {k: v for k, v in options.items()
                   if k not in ("num_layers", "batch_first", "bidirectional")}
        return build_cell(params, **options)
    return build_lstm(params, **options)


def _node_weights(n, attrs, tensors, where):
    """Check one ONNX LSTM node; its output activation, layout and (W, R, B, P)."""
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{where}: direction {direction!r} has no lstmx equivalent "
                                  "(lstmx has 'forward' and 'bidirectional')")
    D = 2 if direction == "bidirectional" else 1
    if "clip" in attrs:
        raise ValueError(f"{where}: lstmx has no cell clipping (clip="
                                  f"{attrs['clip']})")
    if attrs.get("input_forget", 0):
        raise ValueError(f"{where}: lstmx has no coupled input-forget gate "
                                  "(input_forget=1)")
    acts = [a.decode() if isinstance(a, bytes) else a
            for a in attrs.get("activations", [b"Sigmoid", b"Tanh", b"Tanh"] * D)]
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    act = None
    for d in range(D):
        f, g, h = (a.lower() for a in acts[3 * d:3 * d + 3])
        if (f, g) != ("sigmoid", "tanh") or h not in ("tanh", "affine"):
            raise ValueError(f"{where}: activations {acts} have no lstmx "
                                      "equivalent (Sigmoid, Tanh, then Tanh or Affine(1, 0))")
        this = "tanh"
        if h == "affine":
            if not (alphas and betas) or (alphas.pop(0), betas.pop(0)) != (1.0, 0.0):
                raise ValueError(f"{where}: only Affine(alpha=1, beta=0) (identity) "
                                          "is an lstmx output activation")
            this = "identity"
        if act not in (None, this):
            raise ValueError(f"{where}: the directions use different activations")
        act = this

    def weight(i, name):
        if len(n.input) <= i or not n.input[i]:
            return None
        if n.input[i] not in tensors:
            raise ValueError(f"{where}: input {name} ({n.input[i]!r}) is not a constant of "
                             "the graph (initializer or Constant node)")
        return np.asarray(tensors[n.input[i]])

    W, R, B, P = weight(1, "W"), weight(2, "R"), weight(3, "B"), weight(7, "P")
    if W is None or R is None:
        raise ValueError(f"{where}: W and R are required")
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or W.shape[1] % 4:
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
    for name, a in zip("WRBP", (W, R, B, P)):
        if a is not None and a.dtype.kind != "f":
            raise TypeError(f"{where}: {name} must be a float tensor; got {a.dtype}")
    return act, attrs.get("layout", 0), (W, R, B, P)
