"""Numerical robustness: extreme inputs, NaN isolation, long sequences, float32 drift.

- Saturating inputs (+-1e30) give finite outputs and gradients, bounded where the maths bounds
  them; infinite inputs give finite, bounded outputs (gates saturate to exactly 0 or 1).
- A NaN in one batch item never reaches another item's outputs or input gradients.
- T = 10 000: inference runs in memory bounded independently of T (beyond its output), and
  ends in the state the step-by-step ``LSTMCell`` reaches, within a derived rounding bound.
- float32 stays within a derived first-order rounding bound of float64 over 10 000 steps.
"""
import itertools
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
from lstmx import reference

DTYPES = [np.float32, np.float64]
FEATURES = [dict(), dict(peephole=True), dict(output_activation="identity"),
            dict(proj_size=2), dict(bidirectional=True, num_layers=2),
            dict(peephole=True, output_activation="identity", proj_size=2, bidirectional=True)]
FEATURE_IDS = ["plain", "peephole", "identity", "proj", "bidir2", "all"]


def model(dtype, I=3, H=4, **kw):
    return lstmx.LSTM(I, H, dtype=dtype, seed=0, **kw)


def output_bound(m, T, c0_max=0.0):
    """The largest |h| the maths allows: |m| = |o act(c)| <= 1 for tanh, <= |c_t| <= |c0| + t
    for the identity (|c_t| <= |c_{t-1}| + 1); a projection multiplies by max row-sum |R|,
    and a layer above a projecting/identity one sees bounded inputs all the same."""
    cfg = m.config
    bound = 1.0 if cfg.output_activation == "tanh" else c0_max + T
    if cfg.proj_size:
        bound *= max(np.abs(m.parameters()[k]).sum(1).max()
                     for k in m.parameters() if k.startswith("weight_hr"))
    return bound


# ----------------------------------------------------------------------------- saturation

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", FEATURES, ids=FEATURE_IDS)
@pytest.mark.parametrize("magnitude", [1e30, -1e30])
def test_saturating_inputs_give_finite_bounded_outputs_and_gradients(dtype, features,
                                                                    magnitude):
    m = model(dtype, **features)
    rng = np.random.default_rng(0)
    T, B = 7, 3
    x = (np.sign(rng.standard_normal((T, B, 3))) * magnitude).astype(dtype)
    x[:, 0] = magnitude  # one item entirely one-signed
    lengths = [7, 4, 1]
    y, (h, c), cache = m.forward_train(x, lengths=lengths)
    dx, (dh0, dc0), grads = m.backward(cache, rng.standard_normal(y.shape).astype(dtype))
    for name, a in [("y", y), ("h_n", h), ("c_n", c), ("dx", dx), ("dh0", dh0),
                    ("dc0", dc0)] + list(grads.items()):
        assert np.all(np.isfinite(a)), name
    assert np.abs(y).max() <= output_bound(m, T)
    assert np.abs(c).max() <= T  # |c_t| <= |c_{t-1}| + |i g| <= t
    # Saturated gates are exactly 0 or 1 in both: the kernels agree with the reference.
    p64 = {k: v.astype(np.float64) for k, v in m.parameters().items()}
    y_ref, _, _ = reference.lstm_forward(p64, m.config, x.astype(np.float64), lengths=lengths)
    scale = max(1.0, np.abs(y_ref).max())
    assert np.abs(y - y_ref).max() <= 1e3 * np.finfo(dtype).eps * scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", FEATURES, ids=FEATURE_IDS)
def test_infinite_inputs_give_finite_bounded_outputs(dtype, features):
    m = model(dtype, **features)
    rng = np.random.default_rng(1)
    T, B = 6, 4
    x = rng.standard_normal((T, B, 3)).astype(dtype)
    # One infinite feature per row: z = w*inf + finite = +-inf for w != 0, so every gate it
    # feeds saturates to exactly 0 or 1 and tanh to +-1; nothing is inf - inf.
    x[:, :, 0] = np.where(rng.random((T, B)) < 0.5, np.inf, -np.inf)
    y, (h, c), cache = m.forward_train(x)
    for a in (y, h, c):
        assert np.all(np.isfinite(a))
    assert np.abs(y).max() <= output_bound(m, T)
    dx, (dh0, dc0), grads = m.backward(cache, np.ones_like(y))
    for name, a in [("dx", dx), ("dh0", dh0), ("dc0", dc0)] + list(grads.items()):
        if name.startswith("weight_ih_l0"):
            # dW = dz^T x has 0 * inf terms at saturated gates: undefined, not a bug.
            continue
        assert np.all(np.isfinite(a)), name


# ----------------------------------------------------------------------------- NaN isolation

def _run(m, x, state, lengths, dy, dstate):
    y, (h, c), cache = m.forward_train(x, state, lengths)
    dx, (dh0, dc0), grads = m.backward(cache, dy, dstate)
    return dict(y=y, h=h, c=c, dx=dx, dh0=dh0, dc0=dc0), grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", FEATURES, ids=FEATURE_IDS)
@pytest.mark.parametrize("where", ["x", "h0", "c0", "dy", "dh_n", "dc_n"])
def test_nan_in_one_batch_item_does_not_leak_into_others(dtype, features, where):
    m = model(dtype, **features)
    cfg = m.config
    rng = np.random.default_rng(2)
    T, B, LD = 5, 4, cfg.num_layers * cfg.num_directions
    F = cfg.num_directions * cfg.output_size
    arrays = dict(x=rng.standard_normal((T, B, 3)),
                  h0=rng.standard_normal((LD, B, cfg.output_size)),
                  c0=rng.standard_normal((LD, B, cfg.hidden_size)),
                  dy=rng.standard_normal((T, B, F)),
                  dh_n=rng.standard_normal((LD, B, cfg.output_size)),
                  dc_n=rng.standard_normal((LD, B, cfg.hidden_size)))
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    lengths = [5, 3, 5, 2]
    bad_item = 2
    poisoned = {k: v.copy() for k, v in arrays.items()}
    # Batch is axis 1 of every array here.
    poisoned[where][:, bad_item] = np.nan

    def call(a):
        return _run(m, a["x"], (a["h0"], a["c0"]), lengths, a["dy"], (a["dh_n"], a["dc_n"]))

    clean, _ = call(arrays)
    dirty, _ = call(poisoned)
    others = [b for b in range(B) if b != bad_item]
    for name in clean:
        # Axis 1 is the batch for every output (T, B, .) and state (L*D, B, .).
        assert_array_equal(dirty[name][:, others], clean[name][:, others], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", FEATURES, ids=FEATURE_IDS)
def test_nan_in_padding_past_lengths_changes_nothing(dtype, features):
    m = model(dtype, **features)
    rng = np.random.default_rng(3)
    T, B = 6, 3
    x = rng.standard_normal((T, B, 3)).astype(dtype)
    lengths = [6, 2, 4]
    dy = rng.standard_normal(m.forward_train(x, lengths=lengths)[0].shape).astype(dtype)
    clean, grads = _run(m, x, None, lengths, dy, None)
    x_pad = x.copy()
    for b, n in enumerate(lengths):
        x_pad[n:, b] = np.nan
    dirty, grads_pad = _run(m, x_pad, None, lengths, dy, None)
    for name in ("y", "h", "c", "dh0", "dc0"):
        assert_array_equal(dirty[name], clean[name], err_msg=name)
    for b, n in enumerate(lengths):
        assert_array_equal(dirty["dx"][:n, b], clean["dx"][:n, b])
        assert_array_equal(dirty["dx"][n:, b], 0)
    for name in grads:
        assert_array_equal(grads_pad[name], grads[name], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_padding_does_not_reach_input_weight_gradient(dtype):
    m = model(dtype)
    x = np.ones((4, 2, 3), dtype)
    x[2:, 1] = np.nan  # past item 1's length: the loss does not depend on it
    y, _, cache = m.forward_train(x, lengths=[4, 2])
    _, _, grads = m.backward(cache, np.ones_like(y))
    assert np.all(np.isfinite(grads["weight_ih_l0"]))


# ----------------------------------------------------------------------------- long sequences

def _first_order_error_bound(params, x, dtype):
    """A first-order bound on |h_t - h*_t| and |c_t - c*_t| for a one-layer tanh LSTM without
    peepholes or projection run in ``dtype``, where * is exact arithmetic.

    Local error of one step, with u the unit roundoff of ``dtype``: the pre-activations z are
    inner products of length n = I + H + 2, so |dz| <= g_n S with g_n = n u / (1 - n u) and S
    the largest sum |W x| + |U h| + |b| of the step (Higham, Accuracy and Stability, 3.1).
    z reaches c' = f c + i g through sensitivities f(1-f)|c| <= |c|/4, i(1-i)|g| <= 1/4 and
    i(1-g^2) <= 1, and h' = o tanh(c') through o(1-o) <= 1/4 and then c'; sigmoid, tanh and
    the few products and sums round with at most 8 u (1 + |c|) between them (the kernels'
    sigmoid and tanh are within 2.5 and 1.5 ulp: test_activations). So every component of the step's local error is below
    e_t = (2 + |c|max/4 + 1/4) g_n S + 8 u (1 + |c|max).

    Propagation: to first order the error obeys d_t = J_t d_{t-1} + local_t, J_t the Jacobian
    of (h, c) -> (h', c') along the exact trajectory, so componentwise
    |d_t| <= b_t = |J_t| b_{t-1} + e_t, b_0 = 0. Computed in float64 along the float64
    trajectory (its own error is ~1e-16, far below a float32 bound). Returns b_t, (T, B, 2H).
    """
    W, U = params["weight_ih_l0"], params["weight_hh_l0"]
    b = params["bias_ih_l0"] + params["bias_hh_l0"]
    T, B, I = x.shape
    H = U.shape[1]
    u = np.finfo(dtype).eps / 2
    n = I + H + 2
    gamma = n * u / (1 - n * u)
    Ui, Uf, Ug, Uo = np.split(U, 4)
    absW, absU, absb = np.abs(W), np.abs(U), np.abs(b)
    h, c = np.zeros((B, H)), np.zeros((B, H))
    bound = np.zeros((B, 2 * H))
    out = np.empty((T, B, 2 * H))
    for t in range(T):
        z = x[t] @ W.T + h @ U.T + b
        S = (np.abs(x[t]) @ absW.T + np.abs(h) @ absU.T + absb).max(axis=1)  # (B,)
        zi, zf, zg, zo = np.split(z, 4, axis=1)
        i, f, o = (1 / (1 + np.exp(-v)) for v in (zi, zf, zo))
        g = np.tanh(zg)
        c_new = f * c + i * g
        th = np.tanh(c_new)
        # Jacobian blocks, (B, H, H): d c'/d h, d c'/d c, d h'/d h, d h'/d c
        dc_dh = ((c * f * (1 - f))[:, :, None] * Uf + (g * i * (1 - i))[:, :, None] * Ui
                 + (i * (1 - g * g))[:, :, None] * Ug)
        dh_dh = ((o * (1 - o) * th)[:, :, None] * Uo
                 + (o * (1 - th ** 2))[:, :, None] * dc_dh)
        dc_dc_diag = f
        dh_dc_diag = o * (1 - th ** 2) * f
        bh, bc = bound[:, :H], bound[:, H:]
        cmax = np.maximum(np.abs(c).max(axis=1), np.abs(c_new).max(axis=1))
        local = (2.25 + cmax / 4) * gamma * S + 8 * u * (1 + cmax)  # (B,)
        new_h = (np.abs(dh_dh) @ bh[:, :, None])[:, :, 0] + np.abs(dh_dc_diag) * bc
        new_c = (np.abs(dc_dh) @ bh[:, :, None])[:, :, 0] + np.abs(dc_dc_diag) * bc
        bound = np.concatenate([new_h, new_c], axis=1) + local[:, None]
        out[t] = bound
        h, c = o * th, c_new
    return out


LONG_T = 10_000


@pytest.mark.parametrize("init", ["pytorch", "keras"])
def test_float32_stays_within_rounding_bound_of_float64_over_long_sequences(init):
    I, H, B = 8, 8, 4
    m32 = lstmx.LSTM(I, H, dtype=np.float32, seed=0, init=init)
    m64 = lstmx.LSTM(I, H, dtype=np.float64, seed=0, init=init)
    m64.load_state_dict(m32.state_dict())  # the same, float32-representable, parameters
    x = np.random.default_rng(4).standard_normal((LONG_T, B, I)).astype(np.float32)
    y32, (h32, c32) = m32(x)
    y64, (h64, c64) = m64(x.astype(np.float64))
    bound = _first_order_error_bound(m64.parameters(), x.astype(np.float64), np.float32)
    # The bound must say something (a wrong kernel errs by O(0.1)), and it must not grow with
    # T: this model contracts, so rounding errors are forgotten, not accumulated.
    assert bound.max() < 1e-3
    assert bound[-LONG_T // 10:].max() <= 2 * bound[:LONG_T // 10].max()
    err_h = np.abs(y32.astype(np.float64) - y64)
    assert np.all(err_h <= bound[:, :, :H]), (err_h / bound[:, :, :H]).max()
    assert np.all(np.abs(c32[0] - c64[0]) <= bound[-1, :, H:])
    # And no drift: the error at the end is no larger than in the first 100 steps' bound.
    assert err_h[-100:].max() <= bound[:100, :, :H].max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_sequence_matches_step_by_step_cell(dtype):
    I, H, B = 8, 8, 2
    m = lstmx.LSTM(I, H, dtype=dtype, seed=5)
    cell = lstmx.LSTMCell(I, H, dtype=dtype)
    cell.load_state_dict({k[:-3]: v for k, v in m.state_dict().items()})
    x = np.random.default_rng(5).standard_normal((LONG_T, B, I)).astype(dtype)
    y, (h_n, c_n) = m(x)
    state = None
    for t in range(LONG_T):
        state = cell(x[t], state)
    # Both are the same maths in the same precision, with differently blocked GEMMs: each
    # is within the rounding bound of the exact result, so they are within twice of it.
    bound = _first_order_error_bound({k: v.astype(np.float64) for k, v in
                                      m.parameters().items()}, x.astype(np.float64), dtype)
    assert np.all(np.abs(state[0] - h_n[0]) <= 2 * bound[-1, :, :H])
    assert np.all(np.abs(state[1] - c_n[0]) <= 2 * bound[-1, :, H:])
    assert_array_equal(y[-1], h_n[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_sequence_inference_memory_is_bounded(dtype):
    """Inference keeps no per-step cache: past its output y (and the state), it allocates at
    most one chunk of gate pre-activations (2**20 elements) however long the sequence."""
    I, H, B = 8, 32, 8
    m = lstmx.LSTM(I, H, dtype=dtype, seed=0)
    x = np.random.default_rng(6).standard_normal((LONG_T, B, I)).astype(dtype)
    itemsize = np.dtype(dtype).itemsize
    chunk = 2 ** 20 * itemsize
    slack = 2 ** 20  # small temporaries: states, lengths, the projection scratch
    gates_if_cached = LONG_T * B * 4 * H * itemsize
    assert gates_if_cached > 4 * (chunk + slack)  # so that the test can tell the two apart
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        y, _ = m(x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak - y.nbytes <= chunk + slack, (peak - y.nbytes) / 2 ** 20


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("B, H, I", [(1, 1, 1), (1, 1, 1000), (3, 1, 2), (1, 5, 1)])
def test_tiny_and_wide_shapes_match_reference(T, B, H, I):
    for dtype, features in itertools.product(DTYPES, FEATURES[:3]):
        m = model(dtype, I=I, H=H, **features)
        x = np.random.default_rng(7).standard_normal((T, B, I)).astype(dtype)
        y, (h, c), cache = m.forward_train(x)
        dx, _, grads = m.backward(cache, np.ones_like(y))
        p64 = {k: v.astype(np.float64) for k, v in m.parameters().items()}
        y_r, _, saved = reference.lstm_forward(p64, m.config, x.astype(np.float64))
        dx_r, _, grads_r = reference.lstm_backward(p64, m.config, saved, np.ones(y.shape))
        # Inner products of length I + H + 1 (forward) and 4H or T*B (backward).
        tol = 4 * np.finfo(dtype).eps * (I + H + 1 + T * B) * T
        for got, want in [(y, y_r), (dx, dx_r)] + [(grads[k], grads_r[k]) for k in grads]:
            assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max())
