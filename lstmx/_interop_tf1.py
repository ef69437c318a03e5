"""TensorFlow 1: the variables of ``tf.compat.v1.nn.rnn_cell.LSTMCell``.

One TF1 cell holds ``kernel`` (I + H_out, 4H): the input rows, then the recurrent rows,
multiplied from the right (``[x, h] @ kernel``); one ``bias`` (4H,); with peepholes
``w_i_diag``, ``w_f_diag``, ``w_o_diag`` (H,); with ``num_proj`` a ``projection/kernel``
(H, P). Its gates are in the order i, j, f, o (j the candidate, lstmx's g), and it adds
``forget_bias`` to the forget gate's pre-activation at run time. Its ``cell_clip`` (a
constructor argument, like ``forget_bias`` not in the variables) clips c_t as lstmx's
``cell_clip`` does. TensorFlow is never imported.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lstmx._interop_gates import (LSTMX, TF1, build_cell, build_lstm, check_flag,
                                  layer_params, resolve_dtype, reorder)

__all__ = ["to_tf1", "from_tf1"]

_PEEPHOLES = {"i": "w_i_diag", "f": "w_f_diag", "o": "w_o_diag"}
_KEYS = ("kernel", "bias", "projection/kernel", *_PEEPHOLES.values())


def _forget_bias(value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating,
                                                                     np.integer)):
        raise TypeError(f"forget_bias must be a number; got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"forget_bias must be finite; got {value!r}")
    return float(value)


def _cell_clip(value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating,
                                                                     np.integer)):
        raise TypeError(f"cell_clip must be None or a number; got {value!r}")
    return float(value)


def to_tf1(model, *, forget_bias, cell_clip=None):
    """The variables of TF1 ``LSTMCell`` cells computing the same as ``model``.

    Parameters
    ----------
    model : LSTM or LSTMCell
        With ``output_activation="tanh"``: TF1's ``activation`` is both the candidate's
        and the output's.
    forget_bias : float
        The ``forget_bias`` of the TF1 cells that will hold these variables (TF1's default
        is 1.0; it is not stored in checkpoints, so it must be given). It is subtracted from
        the forget-gate bias, so 0.0 exports the bias unchanged.
    cell_clip : float, optional
        The ``cell_clip`` of the TF1 cells that will hold these variables (not stored in
        checkpoints either): it must be the model's ``cell_clip`` (None for none), so that
        a model that clips is not exported to cells that do not.

    Returns
    -------
    dict or list of dict
        For each cell ``{"kernel": (I_k + H_out, 4H), "bias": (4H,)}``, plus ``"w_i_diag"``,
        ``"w_f_diag"``, ``"w_o_diag"`` (H,) with peepholes and ``"projection/kernel"`` (H, P)
        with a projection. An ``LSTMCell`` gives one dict; an ``LSTM`` a list of L*D dicts
        in the order of ``h_n`` (layer * D + direction), as cells stacked by
        ``tf.compat.v1.nn.rnn_cell.MultiRNNCell`` (one direction) or
        ``tf.contrib.rnn.stack_bidirectional_dynamic_rnn`` (two). A model without bias
        exports a zero bias (TF1's cell always has one).
    """
    forget_bias = _forget_bias(forget_bias)
    cfg, params = layer_params(model)
    if _cell_clip(cell_clip) != cfg.cell_clip:
        raise ValueError(f"the model has cell_clip={cfg.cell_clip!r} and the TF1 cells would "
                         f"have cell_clip={cell_clip!r}; TF1 keeps it in the cell's "
                         "constructor, not its variables: build the cells with the model's "
                         "and pass it here")
    lacks = [f"{name}={getattr(cfg, name)!r}" for name, off in
             (("zoneout", (0.0, 0.0)), ("layer_norm", False)) if getattr(cfg, name) != off]
    if lacks:
        raise ValueError("TF1's LSTMCell has no zoneout or layer normalisation; cannot "
                         f"convert a model with {', '.join(lacks)}")
    if cfg.reverse:
        raise ValueError("cannot convert a model with reverse=True: TF1's cells hold no "
                         "direction, so whatever ran them would run them forwards in time")
    if cfg.output_activation != "tanh":
        raise ValueError("TF1's LSTMCell uses one activation for the candidate and the "
                         "output, so it cannot compute h = o * c "
                         "(output_activation='identity')")
    H = cfg.hidden_size
    cells = []
    for k in range(cfg.num_layers):
        for d in range(cfg.num_directions):
            s = cfg.suffix(k, d)
            kernel = np.concatenate([params["weight_ih" + s], params["weight_hh" + s]],
                                    axis=1).T
            bias = np.zeros(4 * H, cfg.dtype)
            if cfg.bias:
                bias = params["bias_ih" + s] + params["bias_hh" + s]
            if forget_bias:
                bias[H:2 * H] -= cfg.dtype.type(forget_bias)  # lstmx's f block
            cell = {"kernel": reorder(kernel, LSTMX, TF1, axis=1), "bias":
                    reorder(bias, LSTMX, TF1)}
            if cfg.peephole:
                for gate, name in _PEEPHOLES.items():
                    cell[name] = params[f"weight_c{gate}" + s].copy()
            if cfg.proj_size:
                cell["projection/kernel"] = params["weight_hr" + s].T.copy()
            cells.append(cell)
    return cells[0] if type(model).__name__ == "LSTMCell" else cells


def from_tf1(cells, *, forget_bias, bidirectional=False, batch_first=False, dtype=None,
             cell=False, cell_clip=None):
    """An lstmx model from the variables of TF1 ``LSTMCell`` cells.

    Parameters
    ----------
    cells : mapping or list of mappings
        One cell's variables (``"kernel"``, ``"bias"`` and, if present, ``"w_i_diag"``,
        ``"w_f_diag"``, ``"w_o_diag"``, ``"projection/kernel"``: the names after the cell's
        scope), or a list of L*D of them in the order layer * D + direction. A cell without
        ``"bias"`` makes a model without bias.
    forget_bias : float
        The ``forget_bias`` the TF1 cells ran with (TF1's default is 1.0; it is not in the
        checkpoint). It is added to the forget-gate bias.
    bidirectional : bool, default False
        Whether the list alternates forward and backward cells of each layer.
    batch_first : bool, default False
    dtype : float32 or float64, optional
        Default: float64 for float64 kernels, else float32.
    cell : bool, default False
        Return an ``LSTMCell`` (from one cell without projection).
    cell_clip : float, optional
        The ``cell_clip`` the TF1 cells ran with (not in the checkpoint): the model's.

    Returns
    -------
    LSTM or LSTMCell
        The bias goes to ``bias_ih``; ``bias_hh`` is zero.
    """
    forget_bias = _forget_bias(forget_bias)
    cell_clip = _cell_clip(cell_clip)
    bidirectional, cell = check_flag("bidirectional", bidirectional), check_flag("cell", cell)
    if isinstance(cells, Mapping):
        cells = [cells]
    if not isinstance(cells, (list, tuple)) or not cells or \
            not all(isinstance(c, Mapping) for c in cells):
        raise TypeError("cells must be a mapping of a TF1 LSTMCell's variables or a list of "
                        f"them; got {type(cells).__name__}")
    D = 2 if bidirectional else 1
    if len(cells) % D:
        raise ValueError(f"a bidirectional model needs an even number of cells; got "
                         f"{len(cells)}")
    first = {name: np.asarray(v) for name, v in cells[0].items()}
    if "kernel" not in first or first["kernel"].ndim != 2 or first["kernel"].shape[1] % 4:
        raise ValueError("cells[0]['kernel'] must be a (I + H_out, 4H) array")
    H = first["kernel"].shape[1] // 4
    proj = first.get("projection/kernel")
    if proj is not None and (proj.ndim != 2 or proj.shape[0] != H or not proj.shape[1]):
        raise ValueError(f"cells[0]['projection/kernel'] must be a (H, P) = ({H}, P) array; "
                         f"got shape {proj.shape}")
    P = 0 if proj is None else proj.shape[1]
    H_out = P or H
    I = first["kernel"].shape[0] - H_out
    if H < 1 or I < 1:
        raise ValueError(f"cells[0]['kernel'] must be a (I + H_out, 4H) array with I >= 1 "
                         f"and H >= 1; got shape {first['kernel'].shape} (H_out = {H_out})")
    bias = "bias" in first
    peephole = "w_i_diag" in first
    dt = resolve_dtype(dtype, first["kernel"].dtype)
    params = {}
    for index, c in enumerate(cells):
        k, d = divmod(index, D)
        c = {name: np.asarray(v) for name, v in c.items()}
        unknown = [name for name in c if name not in _KEYS]
        want = {"kernel": ((I if k == 0 else D * H_out) + H_out, 4 * H)}
        if bias:
            want["bias"] = (4 * H,)
        if peephole:
            want.update({name: (H,) for name in _PEEPHOLES.values()})
        if P:
            want["projection/kernel"] = (H, P)
        missing = [name for name in want if name not in c]
        if unknown or missing or len(c) != len(want):
            raise ValueError(f"cells[{index}]: expected the variables {list(want)} like "
                             f"cells[0]; missing {missing}, unexpected "
                             f"{[n for n in c if n not in want]}")
        for name, shape in want.items():
            if c[name].shape != shape:
                raise ValueError(f"cells[{index}][{name!r}] must have shape {shape}; got "
                                 f"{c[name].shape}")
            if c[name].dtype.kind != "f":
                raise TypeError(f"cells[{index}][{name!r}] must be a float array; got "
                                f"{c[name].dtype}")
        s = f"_l{k}" + ("_reverse" if d else "")
        kernel = reorder(c["kernel"], TF1, LSTMX, axis=1).T  # (4H, I_k + H_out)
        params["weight_ih" + s] = kernel[:, :-H_out]
        params["weight_hh" + s] = kernel[:, -H_out:]
        if bias:
            b = reorder(c["bias"], TF1, LSTMX).astype(dt)
            if forget_bias:
                b[H:2 * H] += dt.type(forget_bias)
            params["bias_ih" + s] = b
            params["bias_hh" + s] = np.zeros_like(b)
        elif forget_bias:
            raise ValueError("forget_bias needs a bias to fold into; the cells have none")
        if peephole:
            for gate, name in _PEEPHOLES.items():
                params[f"weight_c{gate}" + s] = c[name]
        if P:
            params["weight_hr" + s] = c["projection/kernel"].T
    options = dict(input_size=I, hidden_size=H, bias=bias, peephole=peephole, dtype=dt,
                   cell_clip=cell_clip)
    if cell:
        if len(cells) != 1 or P:
            raise ValueError(f"cell=True needs one cell without projection; got {len(cells)} "
                             f"cell(s), num_proj={P or None}")
        return build_cell(params, **options)
    return build_lstm(params, num_layers=len(cells) // D, bidirectional=bidirectional,
                      batch_first=batch_first, proj_size=P, **options)
