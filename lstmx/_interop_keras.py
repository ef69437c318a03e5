"""Keras 3: the weights of ``keras.layers.LSTM``, ``Bidirectional(LSTM)`` and ``LSTMCell``.

A Keras LSTM holds ``kernel`` (I, 4H) = ``weight_ih.T``, ``recurrent_kernel`` (H, 4H) =
``weight_hh.T`` and one ``bias`` (4H,) = ``bias_ih + bias_hh``, gates in the order i, f, c, o
(lstmx's i, f, g, o). ``Bidirectional`` lists the forward layer's weights, then the backward
layer's. lstmx's ``dropout`` (PyTorch's: a fresh mask per element and step on the outputs of
every layer but the last) is a ``keras.layers.Dropout`` between the LSTM layers; its
``recurrent_dropout`` is Keras' (docs/interop.md says where they differ). Keras is imported
only by ``to_keras``; the other functions read and write NumPy arrays, which
``layer.get_weights()`` / ``layer.set_weights()`` exchange.
"""
from __future__ import annotations

import numpy as np

from lstmx._interop_gates import (build_cell, build_lstm, check_flag, layer_params,
                                  optional_import, resolve_dtype)

__all__ = ["to_keras_weights", "from_keras_weights", "to_keras"]


def to_keras_weights(model):
    """The weights of ``model`` as Keras' ``set_weights`` takes them.

    Parameters
    ----------
    model : LSTM or LSTMCell
        Without peepholes, projection or ``output_activation="identity"``: Keras' LSTM has
        none of them (its ``activation`` is both the candidate's and the output's). Not
        ``reverse=True``: Keras' ``go_backwards=True`` returns its outputs in reversed time
        order, so it does not compute what lstmx's reversed layer does. Nor zoneout, layer
        norm or cell clipping, which Keras' LSTM has not. A model's dropouts are not
        weights: give the Keras layers ``recurrent_dropout`` and ``Dropout`` layers between
        them (``to_keras`` builds them so).

    Returns
    -------
    list
        For an ``LSTM``: one list per layer, ``[kernel (I_k, 4H), recurrent_kernel (H, 4H),
        bias (4H,)]`` for ``keras.layers.LSTM(H)``, followed by the reverse direction's three
        for ``keras.layers.Bidirectional(keras.layers.LSTM(H))``; without ``bias`` the
        biases are left out (``use_bias=False``). For an ``LSTMCell``: the flat list for
        ``keras.layers.LSTMCell(H)``. The two biases are summed into Keras' one.
    """
    cfg, params = layer_params(model)
    _check_keras_computes(cfg)
    if cfg.peephole or cfg.proj_size or cfg.output_activation != "tanh":
        raise ValueError("Keras' LSTM has no peepholes or projection and computes "
                         "h = o * tanh(c); cannot convert a model with "
                         f"peephole={cfg.peephole}, proj_size={cfg.proj_size}, "
                         f"output_activation={cfg.output_activation!r}")
    if cfg.reverse:
        raise ValueError("cannot convert a model with reverse=True: Keras' go_backwards=True "
                         "returns its outputs in reversed time order (y_t at T-1-t) where "
                         "lstmx writes y_t at t, so no Keras LSTM layer computes the same")
    layers = []
    for k in range(cfg.num_layers):
        weights = []
        for d in range(cfg.num_directions):
            s = cfg.suffix(k, d)
            weights += [params["weight_ih" + s].T.copy(), params["weight_hh" + s].T.copy()]
            if cfg.bias:
                weights.append(params["bias_ih" + s] + params["bias_hh" + s])
        layers.append(weights)
    return layers[0] if type(model).__name__ == "LSTMCell" else layers


def _keras_layer_weights(layer):
    """``layer.get_weights()`` after checking that lstmx computes what ``layer`` does."""
    parts = [layer]
    for attr in ("forward_layer", "backward_layer", "cell"):
        if getattr(layer, attr, None) is not None:
            parts.append(getattr(layer, attr))
    merge = getattr(layer, "merge_mode", "concat")
    if merge != "concat":
        raise ValueError(f"a Bidirectional layer must have merge_mode='concat' to match "
                         f"lstmx; got {merge!r}")
    for part in parts:
        cfg = part.get_config() if hasattr(part, "get_config") else {}
        for key, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
            if key in cfg and cfg[key] != want:
                raise ValueError(f"Keras layer {part.name!r} has {key}={cfg[key]!r}; lstmx "
                                 f"computes {want}")
        if part is layer and cfg.get("go_backwards"):
            raise ValueError(f"Keras layer {part.name!r} has go_backwards=True: it returns "
                             "its outputs in reversed time order, which lstmx's reverse=True "
                             "does not (it writes y_t at time t); only the backward layer of "
                             "a Bidirectional converts")
    if not layer.weights:
        raise ValueError(f"Keras layer {layer.name!r} has no weights yet: build it (call it "
                         "on an input) first")
    return [_to_numpy(w) for w in layer.weights]


def _to_numpy(variable):
    # Not get_weights(): with the torch backend it calls np.array(tensor), which warns under
    # NumPy 2 (Keras 3.15, torch 2.13).
    value = getattr(variable, "value", variable)
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.array(value)


def from_keras_weights(weights, *, batch_first=False, dtype=None, cell=False, dropout=None,
                       recurrent_dropout=None):
    """An lstmx model from the weights of Keras LSTM layers.

    Parameters
    ----------
    weights : Keras layer, list of layers, list of arrays, or list of lists of arrays
        ``keras.layers.LSTM`` / ``Bidirectional(LSTM)`` / ``LSTMCell`` layers (built), or
        their ``get_weights()``: one list per stacked layer (a flat list is one layer). Each
        has 3 arrays per direction (``kernel``, ``recurrent_kernel``, ``bias``), or 2 without
        bias; 6 or 4 mean bidirectional. A list of layers may have a ``keras.layers.Dropout``
        (``noise_shape=None``) between each two LSTM layers, all of one rate: lstmx's
        ``dropout``. The layers' ``recurrent_dropout`` (all equal) becomes the model's; a
        layer's own ``dropout`` (of its input, one mask per sequence) has no lstmx
        equivalent and is refused, unless ``dropout`` is given.
    batch_first : bool, default False
        The layout of the lstmx model's inputs (Keras itself is batch-major).
    dtype : float32 or float64, optional
        Default: float64 for float64 weights, else float32.
    cell : bool, default False
        Return an ``LSTMCell`` (from a single unidirectional layer).
    dropout, recurrent_dropout : float, optional
        The model's options, in place of what the layers say (for weight lists, which say
        nothing, the default is 0). Giving ``dropout`` is choosing lstmx's dropout over a
        Keras layer's input dropout, which is then not read.

    Returns
    -------
    LSTM or LSTMCell
        Keras' one bias goes to ``bias_ih``; ``bias_hh`` is zero.
    """
    cell = check_flag("cell", cell)
    read = {}  # the dropouts the Keras layers hold
    if hasattr(weights, "get_weights"):
        weights = [weights]
    if isinstance(weights, (list, tuple)) and weights and all(
            hasattr(w, "get_weights") for w in weights):
        lstm_layers, read = _keras_dropouts(weights, dropout is not None,
                                            recurrent_dropout is not None)
        groups = [_keras_layer_weights(w) for w in lstm_layers]
    elif isinstance(weights, (list, tuple)) and weights and all(
            isinstance(w, (list, tuple)) for w in weights):
        groups = [list(w) for w in weights]
    elif isinstance(weights, (list, tuple)) and weights:
        groups = [list(weights)]
    else:
        got = "an empty list" if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise TypeError(f"weights must be Keras layers or their get_weights() lists; got {got}")
    counts = {len(g) for g in groups}
    if len(counts) != 1 or counts.pop() not in (2, 3, 4, 6):
        raise ValueError("each layer must have 3 weights per direction (kernel, "
                         "recurrent_kernel, bias) or 2 without bias, so 2, 3, 4 or 6; got "
                         f"{[len(g) for g in groups]}")
    n = len(groups[0])
    D, per = (2, n // 2) if n in (4, 6) else (1, n)
    groups = [[np.asarray(a) for a in g] for g in groups]
    kernel0, rec0 = groups[0][0], groups[0][1]
    if kernel0.ndim != 2 or rec0.ndim != 2 or rec0.shape[1] % 4 or \
            rec0.shape[1] != 4 * rec0.shape[0]:
        raise ValueError("kernel and recurrent_kernel must be (I, 4H) and (H, 4H); got "
                         f"{kernel0.shape} and {rec0.shape}")
    I, H = kernel0.shape[0], rec0.shape[0]
    params = {}
    for k, g in enumerate(groups):
        for d in range(D):
            arrays = g[d * per:(d + 1) * per]
            want = [(I if k == 0 else D * H, 4 * H), (H, 4 * H), (4 * H,)][:per]
            got = [a.shape for a in arrays]
            if got != want:
                raise ValueError(f"layer {k}{' reverse' if d else ''}: expected weights of "
                                 f"shapes {want}; got {got}")
            for a in arrays:
                if a.dtype.kind != "f":
                    raise TypeError(f"layer {k}: weights must be float arrays; got {a.dtype}")
            s = f"_l{k}" + ("_reverse" if d else "")
            params["weight_ih" + s] = arrays[0].T
            params["weight_hh" + s] = arrays[1].T
            if per == 3:
                params["bias_ih" + s] = arrays[2]
                params["bias_hh" + s] = np.zeros_like(arrays[2])
    options = dict(input_size=I, hidden_size=H, bias=per == 3,
                   dtype=resolve_dtype(dtype, kernel0.dtype))
    dropouts = {"dropout": read.get("dropout", 0.0) if dropout is None else dropout,
                "recurrent_dropout": read.get("recurrent_dropout", 0.0)
                if recurrent_dropout is None else recurrent_dropout}
    if cell:
        if len(groups) != 1 or D != 1:
            raise ValueError(f"cell=True needs one unidirectional layer; got {len(groups)} "
                             f"layer(s) with {D} direction(s)")
        if any(dropouts.values()):
            raise ValueError(f"an lstmx LSTMCell has no dropout or recurrent dropout (a cell "
                             f"step has no sequence to share a mask over; they are the "
                             f"LSTM's); got {dropouts}: build an LSTM (cell=False)")
        return build_cell(params, **options)
    return build_lstm(params, num_layers=len(groups), bidirectional=D == 2,
                      batch_first=batch_first, **options, **dropouts)


def _check_keras_computes(cfg):
    """ValueError for the options of ``cfg`` that a Keras LSTM cannot compute."""
    lacks = [f"{name}={getattr(cfg, name)!r}" for name, off in
             (("zoneout", (0.0, 0.0)), ("layer_norm", False), ("cell_clip", None))
             if getattr(cfg, name) != off]
    if lacks:
        raise ValueError("Keras' LSTM has no zoneout, layer normalisation or cell clipping; "
                         f"cannot convert a model with {', '.join(lacks)}")


def _keras_dropouts(layers, dropout_given, recurrent_given):
    """The LSTM layers of a list of Keras layers, and ``{"dropout": p,
    "recurrent_dropout": q}`` as they hold them (what is 0 left out).

    lstmx's dropout is a ``Dropout`` layer between each two LSTM layers, all of one rate;
    an LSTM layer's own ``dropout`` is refused unless ``dropout_given``, and unequal
    recurrent dropouts unless ``recurrent_given`` (the caller's choice replaces them)."""
    lstms, gaps, pending = [], [], None
    for layer in layers:
        if type(layer).__name__ == "Dropout":
            where = f"Keras layer {layer.name!r} (Dropout)"
            if not lstms or pending is not None:
                raise ValueError(f"{where}: lstmx's dropout acts between LSTM layers only, "
                                 "one Dropout between each two; found one "
                                 + ("before the first LSTM layer" if not lstms
                                    else "after another Dropout"))
            if getattr(layer, "noise_shape", None) is not None:
                raise ValueError(f"{where} has noise_shape={layer.noise_shape!r}: it shares "
                                 "its mask across an axis, where lstmx's dropout draws one per "
                                 "element and step (noise_shape=None)")
            pending = float(layer.rate)
            continue
        if lstms:
            gaps.append(pending or 0.0)
        pending = None
        lstms.append(layer)
    if pending is not None:
        raise ValueError("lstmx's dropout acts between LSTM layers only; the list ends with a "
                         "Dropout after its last LSTM layer")
    read = {}
    if len(set(gaps)) > 1 and not dropout_given:
        raise ValueError(f"lstmx has one dropout rate for all its layers; the Dropout layers "
                         f"between the LSTM layers have rates {gaps} (0: none)")
    if gaps and gaps[0]:
        read["dropout"] = gaps[0]
    rates = {}
    for layer in lstms:
        for part in [layer] + [getattr(layer, a) for a in ("forward_layer", "backward_layer")
                               if getattr(layer, a, None) is not None]:
            cfg = part.get_config() if hasattr(part, "get_config") else {}
            if cfg.get("dropout") and not dropout_given:
                raise ValueError(
                    f"Keras layer {part.name!r} has dropout={cfg['dropout']}: it drops the "
                    "layer's input with one mask per sequence (the same at every step), which "
                    "lstmx cannot compute; lstmx's dropout (PyTorch's) drops the outputs of "
                    "every layer but the last with a fresh mask per element and step, as a "
                    "keras.layers.Dropout between the LSTM layers does. Pass dropout= (0.0 to "
                    "leave it out) to choose lstmx's")
            if "recurrent_dropout" in cfg:
                rates[part.name] = float(cfg["recurrent_dropout"])
    if len(set(rates.values())) > 1 and not recurrent_given:
        raise ValueError(f"lstmx has one recurrent_dropout for all its layers; the Keras "
                         f"layers have {rates}")
    if rates and next(iter(rates.values())):
        read["recurrent_dropout"] = next(iter(rates.values()))
    return lstms, read


def to_keras(model):
    """Keras 3 layers computing what ``model`` does, its dropouts included.

    Parameters
    ----------
    model : LSTM or LSTMCell
        As for ``to_keras_weights``.

    Returns
    -------
    list of Keras layers, or a ``keras.layers.LSTMCell``
        For an ``LSTM``, built and holding its weights: per layer a
        ``keras.layers.LSTM(H, return_sequences=True)`` (in a ``Bidirectional`` for two
        directions) with the model's ``recurrent_dropout``, and a
        ``keras.layers.Dropout(dropout)`` between each two when ``dropout > 0``; in the
        model's dtype. Feed them in order (a ``keras.Sequential`` of them is the model); Keras
        is batch-major, whatever the model's ``batch_first``. For an ``LSTMCell``, a built
        ``keras.layers.LSTMCell``.
    """
    keras = optional_import("keras", "to_keras", "install Keras 3 (`pip install keras`) and a "
                            "backend for it (torch, JAX or TensorFlow)")
    weights = to_keras_weights(model)  # checks that Keras computes what the model does
    cfg, _ = layer_params(model)
    dt, H = cfg.dtype.name, cfg.hidden_size
    if type(model).__name__ == "LSTMCell":
        cell = keras.layers.LSTMCell(H, use_bias=cfg.bias, dtype=dt)
        cell.build((None, cfg.input_size))
        cell.set_weights(weights)
        return cell
    layers = []
    for k in range(cfg.num_layers):
        layer = keras.layers.LSTM(H, use_bias=cfg.bias, return_sequences=True,
                                  recurrent_dropout=cfg.recurrent_dropout, dtype=dt)
        if cfg.bidirectional:
            layer = keras.layers.Bidirectional(layer, dtype=dt)
        layer.build((None, None, cfg.layer_input_size(k)))
        layer.set_weights(weights[k])
        if k and cfg.dropout:
            layers.append(keras.layers.Dropout(cfg.dropout, dtype=dt))
        layers.append(layer)
    return layers
