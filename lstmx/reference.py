"""A plain NumPy LSTM: the maths of ``docs/equations.md``, line for line.

This is the ground truth of the tests and the baseline of the benchmarks, written to be read,
not to be fast. The compiled path (``lstmx._kernels``) never imports it.

Shapes: ``x`` is (T, B, I) (or (B, T, I) with ``batch_first``); ``h`` is (B, H_out), ``c`` is
(B, H); parameters are keyed like ``torch.nn.LSTM.state_dict()`` (see ``LSTMConfig``).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit as sigmoid

from lstmx._config import LSTMConfig

__all__ = ["cell_forward", "cell_backward", "lstm_forward", "lstm_backward"]

ACTIVATIONS = {
    # name: (act, act')
    "tanh": (np.tanh, lambda c: 1 - np.tanh(c) ** 2),
    "identity": (lambda c: c, lambda c: np.ones_like(c)),
}


def cell_forward(x, h, c, W, U, b=None, R=None, peep=None, act="tanh"):
    """One time step. Returns h_t, c_t and what ``cell_backward`` needs."""
    z = x @ W.T + h @ U.T + (0 if b is None else b)
    z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
    p_i, p_f, p_o = (0, 0, 0) if peep is None else peep
    i = sigmoid(z_i + p_i * c)
    f = sigmoid(z_f + p_f * c)
    g = np.tanh(z_g)
    c_t = f * c + i * g
    o = sigmoid(z_o + p_o * c_t)
    m = o * ACTIVATIONS[act][0](c_t)
    h_t = m if R is None else m @ R.T
    return h_t, c_t, (x, h, c, i, f, g, o, c_t, m)


def cell_backward(dh, dc, saved, W, U, R=None, peep=None, act="tanh"):
    """Backward of one time step.

    ``dh``, ``dc``: gradients reaching h_t and c_t. Returns dx, dh_{t-1}, dc_{t-1} and the
    gradients of W, U, b, R, peep (None for absent parameters).
    """
    x, h_prev, c_prev, i, f, g, o, c, m = saved
    p_i, p_f, p_o = (0, 0, 0) if peep is None else peep
    act_fn, act_prime = ACTIVATIONS[act]
    dm = dh if R is None else dh @ R
    dR = None if R is None else dh.T @ m
    da = act_fn(c)
    do = dm * da
    dz_o = do * o * (1 - o)
    dc = dc + dm * o * act_prime(c) + dz_o * p_o
    di = dc * g
    df = dc * c_prev
    dg = dc * i
    dz_i = di * i * (1 - i)
    dz_f = df * f * (1 - f)
    dz_g = dg * (1 - g ** 2)
    dc_prev = dc * f + dz_i * p_i + dz_f * p_f
    dz = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=-1)
    dh_prev = dz @ U
    dx = dz @ W
    dpeep = None if peep is None else np.stack([
        (dz_i * c_prev).sum(0), (dz_f * c_prev).sum(0), (dz_o * c).sum(0)])
    return dx, dh_prev, dc_prev, (dz.T @ x, dz.T @ h_prev, dz.sum(0), dR, dpeep)


def _layer_params(params, cfg, layer, direction):
    s = cfg.suffix(layer, direction)
    b = (params["bias_ih" + s] + params["bias_hh" + s]) if cfg.bias else None
    R = params["weight_hr" + s] if cfg.proj_size else None
    peep = (np.stack([params[f"weight_c{gate}" + s] for gate in "ifo"])
            if cfg.peephole else None)
    return params["weight_ih" + s], params["weight_hh" + s], b, R, peep


def layer_forward(x, h0, c0, W, U, b, R, peep, lengths, reverse, act):
    """One layer, one direction over a sequence; rows stop at their length."""
    T = x.shape[0]
    h, c = h0, c0
    y = np.zeros((T, h0.shape[0], h0.shape[1]), dtype=x.dtype)
    saved = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        active = (t < lengths)[:, None]
        h_t, c_t, saved[t] = cell_forward(x[t], h, c, W, U, b, R, peep, act)
        h = np.where(active, h_t, h)
        c = np.where(active, c_t, c)
        y[t] = np.where(active, h_t, 0)
    return y, h, c, saved


def layer_backward(dy, dh, dc, saved, W, U, R, peep, lengths, reverse, act):
    """Backpropagation through time over one layer and direction."""
    T = dy.shape[0]
    dx = np.zeros(dy.shape[:2] + (W.shape[1],), dtype=dy.dtype)
    grads = None
    for t in (range(T) if reverse else reversed(range(T))):
        active = (t < lengths)[:, None]
        dh_t = np.where(active, dy[t] + dh, 0)
        dc_t = np.where(active, dc, 0)
        dx[t], dh_prev, dc_prev, g = cell_backward(dh_t, dc_t, saved[t], W, U, R, peep, act)
        dh = np.where(active, dh_prev, dh)
        dc = np.where(active, dc_prev, dc)
        grads = g if grads is None else [a if a is None else a + b for a, b in zip(grads, g)]
    return dx, dh, dc, grads


def lstm_forward(params, config: LSTMConfig, x, h0=None, c0=None, lengths=None):
    """Stacked, optionally bidirectional LSTM. Returns y, (h_n, c_n) and the saved values."""
    cfg = config
    D, H, Hout = cfg.num_directions, cfg.hidden_size, cfg.output_size
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
            W, U, b, R, peep = _layer_params(params, cfg, k, d)
            reverse = (d == 1) != cfg.reverse  # a bidirectional layer's second, or reverse=True
            y, h, c, s = layer_forward(layer_input, h0[k * D + d], c0[k * D + d], W, U, b, R,
                                       peep, lengths, reverse, cfg.output_activation)
            outputs.append(y)
            h_n.append(h)
            c_n.append(c)
            saved.append(s)
        layer_input = np.concatenate(outputs, axis=-1)
    y = np.swapaxes(layer_input, 0, 1) if cfg.batch_first else layer_input
    return y, (np.stack(h_n), np.stack(c_n)), (saved, lengths)


def lstm_backward(params, config: LSTMConfig, saved, dy, dh_n=None, dc_n=None):
    """Gradients of ``lstm_forward``: dx, (dh0, dc0) and a dict keyed like the parameters."""
    cfg = config
    saved, lengths = saved
    D, Hout = cfg.num_directions, cfg.output_size
    dy = np.swapaxes(dy, 0, 1) if cfg.batch_first else dy
    L = cfg.num_layers
    dh_n = np.zeros((L * D,) + dy.shape[1:2] + (Hout,), dy.dtype) if dh_n is None else dh_n
    dc_n = (np.zeros((L * D, dy.shape[1], cfg.hidden_size), dy.dtype)
            if dc_n is None else dc_n)
    dh0, dc0 = np.zeros_like(dh_n), np.zeros_like(dc_n)
    grads = {}
    d_out = dy
    for k in reversed(range(L)):
        d_in = 0
        for d in range(D):
            idx = k * D + d
            W, U, b, R, peep = _layer_params(params, cfg, k, d)
            reverse = (d == 1) != cfg.reverse
            dx, dh0[idx], dc0[idx], (dW, dU, db, dR, dpeep) = layer_backward(
                d_out[..., d * Hout:(d + 1) * Hout], dh_n[idx], dc_n[idx], saved[idx],
                W, U, R, peep, lengths, reverse, cfg.output_activation)
            d_in = d_in + dx
            s = cfg.suffix(k, d)
            grads["weight_ih" + s], grads["weight_hh" + s] = dW, dU
            if cfg.bias:
                grads["bias_ih" + s], grads["bias_hh" + s] = db, db.copy()
            if cfg.proj_size:
                grads["weight_hr" + s] = dR
            if cfg.peephole:
                for gate, dp in zip("ifo", dpeep):
                    grads[f"weight_c{gate}" + s] = dp
        d_out = d_in
    dx = np.swapaxes(d_out, 0, 1) if cfg.batch_first else d_out
    return dx, (dh0, dc0), {name: grads[name] for name in cfg.parameter_shapes()}
