"""Keras 3: the weights of ``keras.layers.LSTM``, ``Bidirectional(LSTM)`` and ``LSTMCell``.

A Keras LSTM holds ``kernel`` (I, 4H) = ``weight_ih.T``, ``recurrent_kernel`` (H, 4H) =
``weight_hh.T`` and one ``bias`` (4H,) = ``bias_ih + bias_hh``, gates in the order i, f, c, o
(lstmx's i, f, g, o). ``Bidirectional`` lists the forward layer's weights, then the backward
layer's. Keras is never imported here: these functions read and write NumPy arrays, which
``layer.get_weights()`` / ``layer.set_weights()`` exchange.
"""
from __future__ import annotations

import numpy as np

from lstmx._interop_gates import (build_cell, build_lstm, check_flag, layer_params,
                                  resolve_dtype)

__all__ = ["to_keras_weights", "from_keras_weights"]


def to_keras_weights(model):
    """The weights of ``model`` as Keras' ``set_weights`` takes them.

    Parameters
    ----------
    model : LSTM or LSTMCell
        Without peepholes, projection or ``output_activation="identity"``: Keras' LSTM has
        none of them (its ``activation`` is both the candidate's and the output's). Not
        ``reverse=True``: Keras' ``go_backwards=True`` returns its outputs in reversed time
        order, so it does not compute what lstmx's reversed layer does.

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


def from_keras_weights(weights, *, batch_first=False, dtype=None, cell=False):
    """An lstmx model from the weights of Keras LSTM layers.

    Parameters
    ----------
    weights : Keras layer, list of layers, list of arrays, or list of lists of arrays
        ``keras.layers.LSTM`` / ``Bidirectional(LSTM)`` / ``LSTMCell`` layers (built), or
        their ``get_weights()``: one list per stacked layer (a flat list is one layer). Each
        has 3 arrays per direction (``kernel``, ``recurrent_kernel``, ``bias``), or 2 without
        bias; 6 or 4 mean bidirectional.
    batch_first : bool, default False
        The layout of the lstmx model's inputs (Keras itself is batch-major).
    dtype : float32 or float64, optional
        Default: float64 for float64 weights, else float32.
    cell : bool, default False
        Return an ``LSTMCell`` (from a single unidirectional layer).

    Returns
    -------
    LSTM or LSTMCell
        Keras' one bias goes to ``bias_ih``; ``bias_hh`` is zero.
    """
    cell = check_flag("cell", cell)
    if hasattr(weights, "get_weights"):
        groups = [_keras_layer_weights(weights)]
    elif isinstance(weights, (list, tuple)) and weights and all(
            hasattr(w, "get_weights") for w in weights):
        groups = [_keras_layer_weights(w) for w in weights]
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
    if cell:
        if len(groups) != 1 or D != 1:
            raise ValueError(f"cell=True needs one unidirectional layer; got {len(groups)} "
                             f"layer(s) with {D} direction(s)")
        return build_cell(params, **options)
    return build_lstm(params, num_layers=len(groups), bidirectional=D == 2,
                      batch_first=batch_first, **options)
