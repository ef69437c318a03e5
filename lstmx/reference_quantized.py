"""The quantised LSTM of ``lstmx.QuantizedLSTM`` in plain NumPy, as docs/quantization.md says.

The ground truth of ``tests/test_quantized.py``, written to be read; the compiled path never
imports it. Integer products are exact (int64 sums of int8 products); everything else is
float32, as in the kernels. ``state`` is a quantised model's ``state_dict()`` (int8 matrices
with ``<name>_scale`` row scales, or bfloat16 bits as uint16), keyed like ``QuantizedLSTM``'s.
"""
from __future__ import annotations

import numpy as np

from lstmx._config import LSTMConfig

__all__ = ["LEVELS", "ACTIVATION_LEVELS", "SIGMOID_ERROR", "TANH_ERROR", "sigmoid", "tanh",
           "quantize_weights", "quantize_activations", "round_bfloat16", "int_product",
           "vdpbf16ps_product", "product", "lstm_forward"]

F32 = np.float32
LEVELS = F32(127)  # int8 weights are in [-127, 127]: symmetric, zero point 0
# Activations are 8-bit and symmetric, in [-127, 127], like the weights.
ACTIVATION_LEVELS = F32(127)


# The kernels' rational activations (lstmx/_activations_rational.pxd, docs/quantization.md):
# x P(x**2) / Q(x**2) with x = v clamped to [-edge, edge], coefficients by increasing power
# of x**2, the result clamped to [-bound, bound]; sigmoid(v) = 1/2 + tanh(v/2)/2 with tanh's
# coefficients scaled.
TANH = dict(edge=F32(9), bound=F32(1),
            P=F32([0.9999999, 0.13373204, 0.0034865881, 2.0471916e-05, 1.3184311e-08]),
            Q=F32([1, 0.467065, 0.025842005, 0.00032713948, 7.702706e-07]))
SIGMOID = dict(edge=F32(18), bound=F32(0.5),
               P=F32([0.24999997, 0.008358252, 5.447794e-05, 7.996842e-08, 1.2875304e-11]),
               Q=F32([1, 0.11676625, 0.0016151253, 5.1115544e-06, 3.0088696e-09]))
# Bounds of their absolute errors over every float32 in [-20, 20] (tools/rational_tanh.py
# --check), and so everywhere: beyond, both are clamped within 3e-8 of the exact values.
# With FMA (the reference's rounding) 1.92e-7 and 3.34e-7; the baseline build, which rounds
# products and sums apart, 2.16e-7 and 3.80e-7.
SIGMOID_ERROR, TANH_ERROR = 2.2e-7, 3.9e-7


def _multiply_add(a, b, c, fused):
    """a * b + c in float32: rounded once, as a fused multiply-add (the float64 product of two
    float32 values is exact), or the product and the sum each rounded."""
    if fused:
        return (a.astype(np.float64) * b + c).astype(F32)
    return a * b + c


def _rational(v, edge, bound, P, Q, fused):
    x = np.clip(np.asarray(v, F32), -edge, edge)  # a NaN stays NaN
    u = x * x
    p = np.full_like(x, P[-1])
    for k in P[-2::-1]:
        p = _multiply_add(p, u, k, fused)
    q = np.full_like(x, Q[-1])
    for k in Q[-2::-1]:
        q = _multiply_add(q, u, k, fused)
    return np.clip(x * p / q, -bound, bound)


def tanh(v, fused=True):
    """The quantised models' tanh, in float32: within ``TANH_ERROR`` of the exact function.
    ``fused``: its multiply-adds rounded once, as the optimised builds with FMA compile them
    (the AVX2 and AVX-512 ones); else as the others (baseline, or any at -O0)."""
    return _rational(v, **TANH, fused=fused)


def sigmoid(v, fused=True):
    """The quantised models' sigmoid, in float32: within ``SIGMOID_ERROR`` of the exact
    function. ``fused`` as for ``tanh``."""
    return _rational(v, **SIGMOID, fused=fused) + F32(0.5)


def quantize_weights(W):
    """Per output channel (row): s = max|W_row| / 127, q = rint(W / s). A zero row gets s = 1."""
    s = np.abs(W).max(axis=1) / LEVELS
    s[s == 0] = 1
    q = np.rint(np.clip(W / s[:, None], -LEVELS, LEVELS))
    return q.astype(np.int8), s.astype(F32)


def quantize_activations(v):
    """Per row of v (rows, K), at every step: s = max|v_row| / 127, q = rint(clip(v / s)) in
    [-127, 127].

    A row of zeros, or one so tiny that s underflows to 0, is q = 0 with s = 0; a row with a
    NaN or an infinity is q = 0 with s = NaN, so its products are NaN.
    """
    top = np.abs(v).max(axis=1)                     # NaN if the row holds a NaN
    s = top / ACTIVATION_LEVELS
    finite = np.isfinite(top)
    usable = finite & (s > 0)
    q = np.rint(np.clip(v / np.where(usable, s, 1)[:, None], -ACTIVATION_LEVELS,
                        ACTIVATION_LEVELS))
    q[~usable] = 0
    s = np.where(finite, s, np.nan).astype(F32)
    return q.astype(np.int8), s


def round_bfloat16(v):
    """v float32 rounded to bfloat16 (to nearest, ties to even; NaN stays NaN), as float32."""
    bits = np.ascontiguousarray(v, F32).view(np.uint32)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = np.where(nan, bits | np.uint32(0x00400000),
                       bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))
    return (rounded & np.uint32(0xFFFF0000)).view(F32)


def bfloat16_values(bits):
    """uint16 bfloat16 bits as the float32 values they stand for."""
    return (bits.astype(np.uint32) << 16).view(F32)


def int_product(qa, qw):
    """sum_k qa[r, k] qw[n, k]: the exact integer product (rows, N), int64."""
    return qa.astype(np.int64) @ qw.astype(np.int64).T


def vdpbf16ps_product(a, w):
    """a @ w.T for bfloat16 values a (rows, K) and w (N, K), held in float32, summed as
    ``vdpbf16ps`` sums: over k in pairs from the start, the odd one of each pair first, each
    product (exact in float32) added with one rounding to nearest. (The instruction also
    reads bfloat16 subnormals as zero and flushes float32 ones; NumPy does not.)"""
    K = a.shape[1]
    if K % 2:
        a, w = np.pad(a, ((0, 0), (0, 1))), np.pad(w, ((0, 0), (0, 1)))
    acc = np.zeros((a.shape[0], w.shape[0]), F32)
    for k in range(0, a.shape[1], 2):
        acc += np.multiply.outer(a[:, k + 1], w[:, k + 1])
        acc += np.multiply.outer(a[:, k], w[:, k])
    return acc


def product(v, W, scale, mode, bf16_sums="matmul"):
    """v @ W.T as the quantised model computes it, for activations v (rows, K) float32.

    int8: W int8 (N, K) with row scales ``scale``; the product of the quantised v and W,
    exact in integers, times s_v[r] * s_W[n]. bfloat16: W as uint16 bits; v rounded to
    bfloat16; float32 products and sums, in NumPy's order (``bf16_sums="matmul"``) or
    ``vdpbf16ps``'s (``"vdpbf16ps"``).
    """
    if mode == "int8":
        qa, sa = quantize_activations(v)
        return int_product(qa, W).astype(F32) * (sa[:, None] * scale[None, :])
    if bf16_sums == "vdpbf16ps":
        return vdpbf16ps_product(round_bfloat16(v), bfloat16_values(W))
    return round_bfloat16(v) @ bfloat16_values(W).T


def _names(state, cfg, layer, direction):
    """The state-dict names of one layer and direction, as a cell's if ``state`` is one's."""
    n = cfg.names(layer, direction)
    if n.weight_ih not in state:  # a cell: names without the layer suffix
        n = type(n)(*(None if v is None else tuple(p.removesuffix("_l0") for p in v)
                      if isinstance(v, tuple) else v.removesuffix("_l0") for v in n))
    return n


def _matrix(state, name, mode):
    if name is None:
        return None, None
    if mode != "int8":
        return state[name], None
    base, sep, suffix = name.partition("_l")
    return state[name], state[f"{base}_scale{sep}{suffix}"]


def cell_forward(x, h, c, W, U, b, R, peep, act, mode, bf16_sums="matmul"):
    """One time step with quantised products (docs/equations.md's step otherwise)."""
    z = b + product(x, *W, mode, bf16_sums) + product(h, *U, mode, bf16_sums)
    H = c.shape[1]
    z_i, z_f, z_g, z_o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
    p_i, p_f, p_o = (0, 0, 0) if peep is None else peep
    i = sigmoid(z_i + p_i * c)
    f = sigmoid(z_f + p_f * c)
    g = tanh(z_g)
    c_t = f * c + i * g
    o = sigmoid(z_o + p_o * c_t)
    m = o * (c_t if act == "identity" else tanh(c_t))
    h_t = m if R[0] is None else product(m, *R, mode, bf16_sums)
    return h_t.astype(F32), c_t.astype(F32)


def lstm_forward(state, config: LSTMConfig, mode, x, h0=None, c0=None, lengths=None,
                 bf16_sums="matmul"):
    """Stacked, optionally bidirectional quantised LSTM over x (as ``LSTM``: time-major unless
    ``batch_first``); ``bf16_sums`` as ``product``. Returns y, (h_n, c_n)."""
    cfg = config
    D, H, Hout = cfg.num_directions, cfg.hidden_size, cfg.output_size
    x = np.asarray(x, F32)
    x = np.swapaxes(x, 0, 1) if cfg.batch_first else x
    T, B = x.shape[:2]
    h0 = np.zeros((cfg.num_layers * D, B, Hout), F32) if h0 is None else h0
    c0 = np.zeros((cfg.num_layers * D, B, H), F32) if c0 is None else c0
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    h_n, c_n = [], []
    layer_input = x
    for k in range(cfg.num_layers):
        outputs = []
        for d in range(D):
            n = _names(state, cfg, k, d)
            W, U, R = (_matrix(state, name, mode) for name in (n.weight_ih, n.weight_hh,
                                                               n.weight_hr))
            b = state[n.bias_ih] + state[n.bias_hh] if cfg.bias else np.zeros(4 * H, F32)
            peep = np.stack([state[p] for p in n.peepholes]) if cfg.peephole else None
            h, c = h0[k * D + d], c0[k * D + d]
            y = np.zeros((T, B, Hout), F32)
            reverse = (d == 1) != cfg.reverse
            for t in (reversed(range(T)) if reverse else range(T)):
                active = (t < lengths)[:, None]
                h_t, c_t = cell_forward(layer_input[t], h, c, W, U, b, R, peep,
                                        cfg.output_activation, mode, bf16_sums)
                h = np.where(active, h_t, h)
                c = np.where(active, c_t, c)
                y[t] = np.where(active, h_t, 0)
            outputs.append(y)
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outputs, axis=-1)
    y = np.swapaxes(layer_input, 0, 1) if cfg.batch_first else layer_input
    return y, (np.stack(h_n), np.stack(c_n))
