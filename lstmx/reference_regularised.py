"""The regularised and layer-normalised LSTM in plain NumPy: ``docs/equations.md``, line for line.

Dropout, recurrent dropout, zoneout, layer normalisation and cell clipping, forward and
backward, as ``lstmx.reference`` does the plain cell (which this reduces to with every option
off). The masks are arguments (see ``lstmx._masks.Masks``), so that tests can fix them;
``masks=None`` is inference: no dropout, and zoneout's expectation.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit as sigmoid

from lstmx._config import LSTMConfig
from lstmx.reference import ACTIVATIONS

__all__ = ["layer_norm", "layer_norm_backward", "cell_forward", "cell_backward",
           "lstm_forward", "lstm_backward"]

EPS = 1e-5  # as torch.nn.LayerNorm


def layer_norm(v, gamma, beta):
    """LN(v; gamma, beta) over the last axis, with the biased variance."""
    v_hat = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + EPS)
    return gamma * v_hat + beta


def layer_norm_backward(d_out, v, gamma):
    """Gradients of ``layer_norm`` with respect to v, gamma and beta."""
    rstd = 1 / np.sqrt(v.var(-1, keepdims=True) + EPS)
    v_hat = (v - v.mean(-1, keepdims=True)) * rstd
    d_hat = d_out * gamma
    dv = rstd * (d_hat - d_hat.mean(-1, keepdims=True)
                 - v_hat * (d_hat * v_hat).mean(-1, keepdims=True))
    return dv, (d_out * v_hat).sum(0), d_out.sum(0)


def cell_forward(x, h, c, W, U, b=None, R=None, peep=None, act="tanh", ln=None, clip=None,
                 keep_c=0.0, keep_h=0.0, h_scale=None):
    """One time step. ``ln`` = (g_ih, b_ih, g_hh, b_hh, g_c, b_c) or None; ``clip`` the cell
    clip or None; ``keep_c``, ``keep_h``: zoneout masks (1: keep the previous value), or
    their probabilities at inference; ``h_scale``: the recurrent dropout mask or None.
    Returns h_t, c_t and what ``cell_backward`` needs."""
    h_d = h if h_scale is None else h * h_scale           # recurrent dropout
    zx, zh = x @ W.T, h_d @ U.T
    if ln is None:
        z = zx + zh
    else:
        z = layer_norm(zx, ln[0], ln[1]) + layer_norm(zh, ln[2], ln[3])
    z = z + (0 if b is None else b)
    z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
    p_i, p_f, p_o = (0, 0, 0) if peep is None else peep
    i = sigmoid(z_i + p_i * c)
    f = sigmoid(z_f + p_f * c)
    g = np.tanh(z_g)
    c_new = f * c + i * g                                  # the cell's own c~_t
    if clip is not None:
        c_new = np.clip(c_new, -clip, clip)
    o = sigmoid(z_o + p_o * c_new)                         # the peephole reads the raw cell
    n = c_new if ln is None else layer_norm(c_new, ln[4], ln[5])
    m = o * ACTIVATIONS[act][0](n)
    h_new = m if R is None else m @ R.T                    # h~_t
    c_t = keep_c * c + (1 - keep_c) * c_new                # zoneout
    h_t = keep_h * h + (1 - keep_h) * h_new
    return h_t, c_t, (x, h_d, c, zx, zh, i, f, g, o, c_new, n, m, keep_c, keep_h, h_scale)


def cell_backward(dh, dc, saved, W, U, R=None, peep=None, act="tanh", ln=None, clip=None):
    """Backward of one time step: ``dh``, ``dc`` reach h_t and c_t. Returns dx, dh_{t-1},
    dc_{t-1} and the gradients of W, U, b, R, peep and the layer-norm parameters (a tuple
    as ``ln``), None for absent parameters."""
    x, h_d, c_prev, zx, zh, i, f, g, o, c, n, m, keep_c, keep_h, h_scale = saved
    p_i, p_f, p_o = (0, 0, 0) if peep is None else peep
    act_fn, act_prime = ACTIVATIONS[act]
    dh_new, dc_new = (1 - keep_h) * dh, (1 - keep_c) * dc  # zoneout
    dm = dh_new if R is None else dh_new @ R
    dR = None if R is None else dh_new.T @ m
    do = dm * act_fn(n)
    dz_o = do * o * (1 - o)
    dn = dm * o * act_prime(n)
    dln_c = (None, None)
    if ln is not None:
        dn, *dln_c = layer_norm_backward(dn, c, ln[4])
    dc_new = dc_new + dn + dz_o * p_o
    if clip is not None:
        dc_new = np.where(np.abs(c) < clip, dc_new, 0)     # no gradient where clipped
    dz_i = dc_new * g * i * (1 - i)
    dz_f = dc_new * c_prev * f * (1 - f)
    dz_g = dc_new * i * (1 - g ** 2)
    dc_prev = dc_new * f + dz_i * p_i + dz_f * p_f + keep_c * dc
    dz = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=-1)
    dzx = dzh = dz
    dln = None
    if ln is not None:
        dzx, dg_ih, db_ih = layer_norm_backward(dz, zx, ln[0])
        dzh, dg_hh, db_hh = layer_norm_backward(dz, zh, ln[2])
        dln = (dg_ih, db_ih, dg_hh, db_hh, *dln_c)
    dh_d = dzh @ U
    dh_prev = (dh_d if h_scale is None else dh_d * h_scale) + keep_h * dh
    dpeep = None if peep is None else np.stack([
        (dz_i * c_prev).sum(0), (dz_f * c_prev).sum(0), (dz_o * c).sum(0)])
    return (dzx @ W, dh_prev, dc_prev,
            (dzx.T @ x, dzh.T @ h_d, dz.sum(0), dR, dpeep, dln))


def _layer_params(params, cfg, layer, direction):
    n = cfg.names(layer, direction)
    b = (params[n.bias_ih] + params[n.bias_hh]) if cfg.bias else None
    R = params[n.weight_hr] if cfg.proj_size else None
    peep = np.stack([params[p] for p in n.peepholes]) if cfg.peephole else None
    ln = tuple(params[p] for p in n.layer_norm) if cfg.layer_norm else None
    return params[n.weight_ih], params[n.weight_hh], b, R, peep, ln


def _step_masks(cfg, masks, idx, t):
    """keep_c, keep_h and h_scale of layer and direction ``idx`` at step t."""
    if masks is None:  # inference: zoneout's expectation, no dropout
        return cfg.zoneout[0], cfg.zoneout[1], None
    kc, kh = masks.zoneout_c[idx], masks.zoneout_h[idx]
    return (0.0 if kc is None else kc[t], 0.0 if kh is None else kh[t], masks.recurrent[idx])


def lstm_forward(params, config: LSTMConfig, x, h0=None, c0=None, lengths=None, masks=None):
    """As ``lstmx.reference.lstm_forward``, with the options of ``config`` and ``masks``
    (None: inference). Rows past their length keep their state and output zeros."""
    cfg = config
    D, H, Hout = cfg.num_directions, cfg.hidden_size, cfg.output_size
    act = cfg.output_activation
    x = np.swapaxes(x, 0, 1) if cfg.batch_first else x
    T, B = x.shape[:2]
    h0 = np.zeros((cfg.num_layers * D, B, Hout), x.dtype) if h0 is None else h0
    c0 = np.zeros((cfg.num_layers * D, B, H), x.dtype) if c0 is None else c0
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    h_n, c_n, saved = [], [], []
    layer_input = x
    for k in range(cfg.num_layers):
        outputs = []
        for d in range(D):
            idx = k * D + d
            W, U, b, R, peep, ln = _layer_params(params, cfg, k, d)
            h, c = h0[idx], c0[idx]
            y = np.zeros((T, B, Hout), dtype=x.dtype)
            s = [None] * T
            for t in (reversed(range(T)) if cfg.is_reversed(d) else range(T)):
                active = (t < lengths)[:, None]
                kc, kh, hs = _step_masks(cfg, masks, idx, t)
                h_t, c_t, s[t] = cell_forward(layer_input[t], h, c, W, U, b, R, peep, act, ln,
                                              cfg.cell_clip, kc, kh, hs)
                h, c = np.where(active, h_t, h), np.where(active, c_t, c)
                y[t] = np.where(active, h_t, 0)
            outputs.append(y)
            h_n.append(h)
            c_n.append(c)
            saved.append(s)
        layer_input = np.concatenate(outputs, axis=-1)
        if masks is not None and k < cfg.num_layers - 1 and masks.dropout[k] is not None:
            layer_input = layer_input * masks.dropout[k]   # dropout between layers
    y = np.swapaxes(layer_input, 0, 1) if cfg.batch_first else layer_input
    return y, (np.stack(h_n), np.stack(c_n)), (saved, lengths, masks)


def lstm_backward(params, config: LSTMConfig, saved, dy, dh_n=None, dc_n=None):
    """Gradients of ``lstm_forward``: dx, (dh0, dc0) and a dict keyed like the parameters."""
    cfg = config
    saved, lengths, masks = saved
    D, H, Hout = cfg.num_directions, cfg.hidden_size, cfg.output_size
    act = cfg.output_activation
    dy = np.swapaxes(dy, 0, 1) if cfg.batch_first else dy
    L = cfg.num_layers
    T, B = dy.shape[:2]
    dh_n = np.zeros((L * D, B, Hout), dy.dtype) if dh_n is None else dh_n
    dc_n = np.zeros((L * D, B, H), dy.dtype) if dc_n is None else dc_n
    dh0, dc0 = np.zeros_like(dh_n), np.zeros_like(dc_n)
    grads = {}
    d_out = dy
    for k in reversed(range(L)):
        d_in = 0
        for d in range(D):
            idx = k * D + d
            W, U, b, R, peep, ln = _layer_params(params, cfg, k, d)
            dyd = d_out[..., d * Hout:(d + 1) * Hout]
            dh, dc = dh_n[idx], dc_n[idx]
            dx = np.zeros((T, B, W.shape[1]), dtype=dy.dtype)
            total = None
            for t in (range(T) if cfg.is_reversed(d) else reversed(range(T))):
                active = (t < lengths)[:, None]
                dh_t, dc_t = np.where(active, dyd[t] + dh, 0), np.where(active, dc, 0)
                dx[t], dh_prev, dc_prev, g = cell_backward(dh_t, dc_t, saved[idx][t], W, U, R,
                                                           peep, act, ln, cfg.cell_clip)
                dh, dc = np.where(active, dh_prev, dh), np.where(active, dc_prev, dc)
                total = g if total is None else [
                    a if a is None else (tuple(u + v for u, v in zip(a, b_))
                                         if isinstance(a, tuple) else a + b_)
                    for a, b_ in zip(total, g)]
            dh0[idx], dc0[idx] = dh, dc
            d_in = d_in + dx
            dW, dU, db, dR, dpeep, dln = total
            n = cfg.names(k, d)
            grads[n.weight_ih], grads[n.weight_hh] = dW, dU
            if cfg.bias:
                grads[n.bias_ih], grads[n.bias_hh] = db, db.copy()
            if cfg.proj_size:
                grads[n.weight_hr] = dR
            for name, value in zip(n.peepholes or (), () if dpeep is None else dpeep):
                grads[name] = value
            for name, value in zip(n.layer_norm or (), dln or ()):
                grads[name] = value
        if k > 0 and masks is not None and masks.dropout[k - 1] is not None:
            d_in = d_in * masks.dropout[k - 1]
        d_out = d_in
    dx = np.swapaxes(d_out, 0, 1) if cfg.batch_first else d_out
    return dx, (dh0, dc0), {name: grads[name] for name in cfg.parameter_shapes()}
