"""Dropout, recurrent dropout, zoneout, layer norm and cell clipping in the kernels: against the
reference (forward and backward, training and inference, with every other option), finite
differences with fixed masks, PyTorch's dropout, the statistics of the masks, seeding and the
validation of the options and of ``rng``."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lstmx import LSTM, LSTMCell, _masks, reference_regularised as rr
from lstmx._config import LSTMConfig

from _helpers import FD_EPS, random_problem, require, tolerances

REGULARISERS = [
    dict(cell_clip=0.3),
    dict(zoneout=(0.3, 0.5)),
    dict(zoneout=0.4, proj_size=2),
    dict(recurrent_dropout=0.4),
    dict(dropout=0.5, num_layers=3),
    dict(layer_norm=True),
    dict(layer_norm=True, output_activation="identity", peephole=True),
    dict(layer_norm=True, proj_size=3, cell_clip=0.5, zoneout=(0.2, 0.3),
         recurrent_dropout=0.3, dropout=0.4, num_layers=2, bidirectional=True,
         peephole=True),
    dict(reverse=True, zoneout=0.3, recurrent_dropout=0.2, layer_norm=True),
    dict(batch_first=True, bias=False, cell_clip=1.0, zoneout=(0.0, 0.3)),
]


def _shift_layer_norms(lstm, seed):
    """Move the layer-norm parameters off 1 and 0, so that a wrong gradient shows."""
    rng = np.random.default_rng(seed)
    for name, value in lstm.parameters().items():
        if name.startswith("layer_norm_"):
            value += rng.uniform(-0.5, 0.5, value.shape).astype(value.dtype)


def _reference(lstm, x, state, lengths, dy, dstate, masks, training=True):
    p = {k: v.astype(np.float64) for k, v in lstm.parameters().items()}
    f64 = (lambda a: None if a is None else np.asarray(a, np.float64))
    h0, c0 = (None, None) if state is None else map(f64, state)
    m64 = None if masks is None else _masks.Masks(
        *([f64(a) for a in part] for part in masks))
    cfg = lstm.config
    if not training:
        return rr.lstm_forward(p, cfg, f64(x), h0, c0, lengths)[:2]
    if m64 is None:  # options that draw nothing: training with no masks
        m64 = _masks.Masks([None] * (cfg.num_layers - 1), *[[None] * (
            cfg.num_layers * cfg.num_directions)] * 3)
    y, (h, c), saved = rr.lstm_forward(p, cfg, f64(x), h0, c0, lengths, m64)
    dx, (dh0, dc0), grads = rr.lstm_backward(p, cfg, saved, f64(dy), *map(f64, dstate))
    return y, h, c, dx, dh0, dc0, grads


def _check_against_reference(lstm, T, B, lengths, seed):
    rng = np.random.default_rng(seed)
    x, state, lens, dy, dstate = random_problem(lstm, T, B, rng, lengths=lengths)
    tol = tolerances(lstm.dtype)
    cfg = lstm.config
    # inference
    y, (h, c) = lstm(x, state, lens)
    ry, (rh, rc) = _reference(lstm, x, state, lens, None, None, None, training=False)
    np.testing.assert_allclose(y, ry, **tol)
    np.testing.assert_allclose(h, rh, **tol)
    np.testing.assert_allclose(c, rc, **tol)
    # training, with the masks drawn from the same seed
    y, (h, c), cache = lstm.forward_train(x, state, lens, rng=seed)
    masks = _masks.draw(cfg, T, B, seed)
    ry, rh, rc, rdx, rdh0, rdc0, rgrads = _reference(lstm, x, state, lens, dy, dstate, masks)
    np.testing.assert_allclose(y, ry, **tol)
    np.testing.assert_allclose(h, rh, **tol)
    np.testing.assert_allclose(c, rc, **tol)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    np.testing.assert_allclose(dx, rdx, **tol)
    np.testing.assert_allclose(dh0, rdh0, **tol)
    np.testing.assert_allclose(dc0, rdc0, **tol)
    assert list(grads) == list(rgrads)
    for name in grads:
        np.testing.assert_allclose(grads[name], rgrads[name], err_msg=name, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", REGULARISERS)
def test_kernels_match_reference(options, dtype):
    lstm = LSTM(3, 5, dtype=dtype, seed=1, **options)
    _shift_layer_norms(lstm, 2)
    _check_against_reference(lstm, T=6, B=3, lengths=True, seed=3)


@pytest.mark.parametrize("options", [dict(zoneout=0.3, layer_norm=True, cell_clip=0.4,
                                          recurrent_dropout=0.2),
                                     dict(layer_norm=True, proj_size=8, zoneout=0.2)])
def test_kernels_match_reference_large(options):
    # Large enough for BLAS and the packed products (and several backward chunks).
    lstm = LSTM(24, 40, dtype=np.float64, seed=4, **options)
    _shift_layer_norms(lstm, 5)
    _check_against_reference(lstm, T=12, B=24, lengths=True, seed=6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(zoneout=(0.2, 0.4), cell_clip=0.5),
                                     dict(recurrent_dropout=0.3, peephole=True),
                                     dict(zoneout=0.3, output_activation="identity"),
                                     dict(layer_norm=True, peephole=True, cell_clip=0.5),
                                     dict(layer_norm=True, zoneout=0.3,
                                          output_activation="identity")])
def test_a_rows_last_units_run_as_a_vector_match_reference(options, dtype):
    # H = 63: the regularised cell runs a row's last units as its last whole vector
    # (regularised_window) on AVX-512 (both dtypes) and AVX2 (float32), as the plain cell;
    # the layer-norm cell (layer_norm_cell) on AVX-512 in float32.
    lstm = LSTM(4, 63, dtype=dtype, seed=2, **options)
    _shift_layer_norms(lstm, 3)
    _check_against_reference(lstm, T=5, B=3, lengths=True, seed=4)


@settings(max_examples=15)
@given(T=st.integers(1, 5), B=st.integers(1, 4), H=st.integers(1, 6),
       P=st.integers(0, 3), layers=st.integers(1, 2), bidirectional=st.booleans(),
       layer_norm=st.booleans(), zoneout=st.sampled_from([0.0, 0.3, (0.5, 0.0)]),
       rdrop=st.sampled_from([0.0, 0.4]), clip=st.sampled_from([None, 0.5]),
       lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_kernels_match_reference_shapes(T, B, H, P, layers, bidirectional, layer_norm,
                                        zoneout, rdrop, clip, lengths, seed):
    lstm = LSTM(2, H, layers, proj_size=P if P < H else 0, bidirectional=bidirectional,
                dtype=np.float64, seed=seed, dropout=0.3, recurrent_dropout=rdrop,
                zoneout=zoneout, layer_norm=layer_norm, cell_clip=clip)
    _shift_layer_norms(lstm, seed)
    _check_against_reference(lstm, T, B, lengths, seed)


@pytest.mark.parametrize("options", [dict(zoneout=(0.3, 0.6), recurrent_dropout=0.3,
                                          dropout=0.4, num_layers=2, cell_clip=0.6),
                                     dict(layer_norm=True, peephole=True, proj_size=2,
                                          bidirectional=True)])
def test_gradients_finite_differences(options):
    lstm = LSTM(3, 4, dtype=np.float64, seed=7, **options)
    _shift_layer_norms(lstm, 8)
    rng = np.random.default_rng(9)
    x, state, lens, dy, dstate = random_problem(lstm, 4, 3, rng, lengths=True)

    def loss():
        y, (h, c), _ = lstm.forward_train(x, state, lens, rng=11)  # the same masks
        return (y * dy).sum() + (h * dstate[0]).sum() + (c * dstate[1]).sum()

    _, _, cache = lstm.forward_train(x, state, lens, rng=11)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    params = lstm.parameters()
    for arr, grad in [(x, dx), (state[0], dh0), (state[1], dc0)] + [
            (params[n], grads[n]) for n in params]:
        v = rng.standard_normal(arr.shape)
        saved = arr.copy()
        arr += FD_EPS * v
        up = loss()
        arr[...] = saved - FD_EPS * v
        down = loss()
        arr[...] = saved
        np.testing.assert_allclose((grad * v).sum(), (up - down) / (2 * FD_EPS),
                                   rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_matches_lstm_of_one_step(dtype):
    cell = LSTMCell(3, 4, peephole=True, zoneout=(0.3, 0.4), layer_norm=True, cell_clip=0.5,
                    dtype=dtype, seed=0)
    lstm = LSTM(3, 4, peephole=True, zoneout=(0.3, 0.4), layer_norm=True, cell_clip=0.5,
                dtype=dtype, seed=0)
    _shift_layer_norms(cell, 1)
    lstm.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3)).astype(dtype)
    h0, c0 = rng.standard_normal((2, 2, 4)).astype(dtype)
    tol = tolerances(dtype)
    h, c = cell(x, (h0, c0))
    y, (h1, c1) = lstm(x[None], (h0[None], c0[None]))
    np.testing.assert_allclose(h, h1[0], **tol)
    np.testing.assert_allclose(c, c1[0], **tol)
    (h, c), cache = cell.forward_train(x, (h0, c0), rng=3)
    y, (h1, c1), lcache = lstm.forward_train(x[None], (h0[None], c0[None]), rng=3)
    np.testing.assert_allclose(h, h1[0], **tol)
    np.testing.assert_allclose(c, c1[0], **tol)
    dh, dc = rng.standard_normal((2, 2, 4)).astype(dtype)
    dx, (dh0, dc0), grads = cell.backward(cache, (dh, dc))
    ldx, (ldh0, ldc0), lgrads = lstm.backward(lcache, dh[None], (None, dc[None]))
    np.testing.assert_allclose(dx, ldx[0], **tol)
    np.testing.assert_allclose(dh0, ldh0[0], **tol)
    np.testing.assert_allclose(dc0, ldc0[0], **tol)
    for name, value in grads.items():
        np.testing.assert_allclose(value, lgrads[name + "_l0"], err_msg=name, **tol)


def test_dropout_against_torch():
    torch = require("torch")
    T, B, I, H = 5, 3, 4, 6
    lstm = LSTM(I, H, 3, dropout=0.4, dtype=np.float64, seed=0)
    tl = torch.nn.LSTM(I, H, 3, dropout=0.0, dtype=torch.float64)
    tl.load_state_dict({k: torch.tensor(v) for k, v in lstm.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, H))
    y, _, cache = lstm.forward_train(x, rng=5)
    dx, _, grads = lstm.backward(cache, dy)
    masks = _masks.draw(lstm.config, T, B, 5)
    # torch's dropout between layers, with our masks: the layers one at a time.
    tx = torch.tensor(x, requires_grad=True)
    inp = tx
    for k in range(3):
        layer = torch.nn.LSTM(I if k == 0 else H, H, dtype=torch.float64)
        layer.load_state_dict({name[:-1] + "0": getattr(tl, name)
                               for name in tl.state_dict() if name.endswith(f"_l{k}")})
        out, _ = layer(inp)
        if k < 2:
            out = out * torch.tensor(masks.dropout[k])
        inp = out
        if k == 0:
            layers = [layer]
        else:
            layers.append(layer)
    np.testing.assert_allclose(y, inp.detach().numpy(), rtol=1e-10, atol=1e-12)
    (inp * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, layer in enumerate(layers):
        for name, p in layer.named_parameters():
            np.testing.assert_allclose(grads[name[:-1] + str(k)], p.grad.numpy(),
                                       rtol=1e-10, atol=1e-12)
    # And inference is torch's eval mode of nn.LSTM(dropout=p), mask or no mask.
    tl_p = torch.nn.LSTM(I, H, 3, dropout=0.4, dtype=torch.float64).eval()
    tl_p.load_state_dict(tl.state_dict())
    np.testing.assert_allclose(lstm(x)[0], tl_p(torch.tensor(x))[0].detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_masks_statistics():
    cfg = LSTMConfig(4, 50, 2, bidirectional=True, dropout=0.3, recurrent_dropout=0.2,
                     zoneout=(0.1, 0.4), dtype=np.float64)
    T, B = 40, 30
    masks = _masks.draw(cfg, T, B, 0)
    d = masks.dropout[0]
    assert d.shape == (T, B, 100)
    assert set(np.unique(d)) == {0.0, 1 / 0.7}
    # 120000 elements: the rate's standard error is ~0.0013
    assert abs((d == 0).mean() - 0.3) < 0.01
    assert abs(d.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation
    r = masks.recurrent[0]
    assert r.shape == (B, 50) and set(np.unique(r)) == {0.0, 1 / 0.8}
    assert abs(np.mean([(m == 0).mean() for m in masks.recurrent]) - 0.2) < 0.03
    zc, zh = masks.zoneout_c[0], masks.zoneout_h[0]
    assert zc.shape == (T, B, 50) and set(np.unique(zc)) == {0.0, 1.0}
    assert abs(zc.mean() - 0.1) < 0.01 and abs(zh.mean() - 0.4) < 0.01
    # zoneout draws fresh masks every step
    assert not np.array_equal(zc[0], zc[1])


def test_recurrent_dropout_mask_is_the_same_at_every_step():
    # One unit of h_{t-1} dropped for a sequence: its recurrent weights get no gradient
    # from that row at any step, and the kernel's output equals the reference with the
    # one (B, H) mask applied at every step (test_kernels_match_reference).
    lstm = LSTM(2, 6, recurrent_dropout=0.5, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((7, 1, 2))
    y, _, cache = lstm.forward_train(x, rng=3)
    mask = _masks.draw(lstm.config, 7, 1, 3).recurrent[0][0]
    assert 0 < (mask == 0).sum() < 6
    _, _, grads = lstm.backward(cache, np.ones_like(y))
    dU = grads["weight_hh_l0"]
    assert np.all(dU[:, mask == 0] == 0) and np.all(dU[:, mask != 0] != 0)


def test_inference_draws_nothing_and_is_deterministic():
    lstm = LSTM(3, 4, 2, dropout=0.5, recurrent_dropout=0.5, zoneout=0.3, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    state = np.random.get_state()
    y1, _ = lstm(x)
    y2, _ = lstm(x)
    np.testing.assert_array_equal(y1, y2)
    assert all(np.array_equal(a, b) for a, b in zip(state, np.random.get_state())
               if isinstance(a, np.ndarray))


def test_seeded_training_is_reproducible():
    lstm = LSTM(3, 4, 2, dropout=0.5, recurrent_dropout=0.5, zoneout=0.3, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y1, _, _ = lstm.forward_train(x, rng=4)
    y2, _, _ = lstm.forward_train(x, rng=np.random.default_rng(4))
    y3, _, _ = lstm.forward_train(x, rng=5)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, y3)


def test_options_without_randomness_train_as_they_infer():
    lstm = LSTM(3, 4, layer_norm=True, cell_clip=0.3, peephole=True, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y, _, _ = lstm.forward_train(x)
    np.testing.assert_allclose(y, lstm(x)[0], rtol=1e-6, atol=1e-7)


def test_cell_clip_bounds_the_state():
    lstm = LSTM(3, 4, cell_clip=0.2, seed=0)
    x = 10 * np.random.default_rng(0).standard_normal((20, 3, 3)).astype(np.float32)
    _, (_, c) = lstm(x)
    assert np.abs(c).max() <= np.float32(0.2)


def test_inputs_not_mutated():
    lstm = LSTM(3, 4, 2, dropout=0.3, zoneout=0.2, layer_norm=True, recurrent_dropout=0.2,
                seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, state, lens, dy, dstate = random_problem(lstm, 5, 2, rng, lengths=True)
    copies = [a.copy() for a in (x, *state, lens, dy, *dstate)]
    params = {k: v.copy() for k, v in lstm.parameters().items()}
    lstm(x, state, lens)
    _, _, cache = lstm.forward_train(x, state, lens, rng=1)
    lstm.backward(cache, dy, dstate)
    for a, b in zip((x, *state, lens, dy, *dstate), copies):
        np.testing.assert_array_equal(a, b)
    for k, v in lstm.parameters().items():
        np.testing.assert_array_equal(v, params[k])


def test_unbatched_input():
    lstm = LSTM(3, 4, 2, dropout=0.3, zoneout=0.2, layer_norm=True, seed=0,
                dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 3))
    y, (h, c), cache = lstm.forward_train(x, rng=2)
    yb, (hb, cb), cacheb = lstm.forward_train(x[:, None], rng=2)
    np.testing.assert_array_equal(y, yb[:, 0])
    dx, _, g = lstm.backward(cache, np.ones_like(y))
    dxb, _, gb = lstm.backward(cacheb, np.ones_like(yb))
    np.testing.assert_array_equal(dx, dxb[:, 0])


@pytest.mark.parametrize("rng, error", [("seed", TypeError), (1.5, TypeError),
                                        (True, TypeError), (-1, ValueError),
                                        (np.random.RandomState(0), TypeError)])
def test_rng_validation(rng, error):
    lstm = LSTM(3, 4, dropout=0.2, zoneout=0.1)
    with pytest.raises(error, match="rng"):
        lstm.forward_train(np.zeros((2, 1, 3), np.float32), rng=rng)
    cell = LSTMCell(3, 4, zoneout=0.1)
    with pytest.raises(error, match="rng"):
        cell.forward_train(np.zeros((1, 3), np.float32), rng=rng)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(dropout=-0.1), ValueError, "dropout"),
    (dict(dropout=float("nan")), ValueError, "dropout"),
    (dict(recurrent_dropout="0.1"), TypeError, "recurrent_dropout"),
    (dict(zoneout=(0.1, 1.0)), ValueError, "p_h"),
    (dict(zoneout=(0.1, 0.2, 0.3)), ValueError, "pair"),
    (dict(zoneout=True), TypeError, "zoneout"),
    (dict(layer_norm="yes"), TypeError, "layer_norm"),
    (dict(cell_clip=0), ValueError, "cell_clip"),
    (dict(cell_clip=-1.0), ValueError, "cell_clip"),
    (dict(cell_clip=float("inf")), ValueError, "cell_clip"),
    (dict(cell_clip="1"), TypeError, "cell_clip"),
])
def test_option_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        LSTM(3, 4, **kwargs)


def test_parameters_and_repr():
    lstm = LSTM(3, 4, 2, bidirectional=True, layer_norm=True, zoneout=(0.1, 0.2),
                cell_clip=2.0, dropout=0.1, recurrent_dropout=0.3)
    shapes = {k: v.shape for k, v in lstm.parameters().items()}
    assert shapes["layer_norm_ih_weight_l1_reverse"] == (16,)
    assert shapes["layer_norm_c_bias_l0"] == (4,)
    assert np.all(lstm.layer_norm_hh_weight_l1 == 1) and np.all(lstm.layer_norm_c_bias_l0 == 0)
    assert lstm.config.zoneout == (0.1, 0.2)
    r = repr(lstm)
    for text in ("dropout=0.1", "recurrent_dropout=0.3", "zoneout=(0.1, 0.2)",
                 "layer_norm=True", "cell_clip=2.0"):
        assert text in r
    cell = LSTMCell(3, 4, layer_norm=True, zoneout=0.5, cell_clip=1.0)
    assert "layer_norm_ih_weight" in cell.parameters()
    assert "zoneout=(0.5, 0.5)" in repr(cell) and "cell_clip=1.0" in repr(cell)
    # The plain model's parameters are unchanged by layer norm's (which draw nothing).
    plain = LSTM(3, 4, 2, bidirectional=True, seed=3).parameters()
    normed = LSTM(3, 4, 2, bidirectional=True, seed=3, layer_norm=True).parameters()
    for name, value in plain.items():
        np.testing.assert_array_equal(normed[name], value)


def test_layer_norm_parameters_are_live():
    lstm = LSTM(3, 4, layer_norm=True, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    y0, _ = lstm(x)
    lstm.layer_norm_c_weight_l0 = np.full(4, 0.5)
    y1, _ = lstm(x)
    assert not np.allclose(y0, y1)
    lstm.layer_norm_c_weight_l0[:] = 1
    np.testing.assert_array_equal(lstm(x)[0], y0)


def _seeded_train_step(lstm, problem):
    x, state, lens, dy, dstate, seed = problem
    y, (h, c), cache = lstm.forward_train(x, state, lens, rng=seed)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    y_inf, (h_inf, c_inf) = lstm(x, state, lens)
    return [y, h, c, dx, dh0, dc0, y_inf, h_inf, c_inf, *grads.values()]


def test_thread_pool_equals_serial():
    from concurrent.futures import ThreadPoolExecutor
    lstm = LSTM(3, 5, 2, bidirectional=True, dropout=0.3, recurrent_dropout=0.2,
                zoneout=0.2, layer_norm=True, cell_clip=0.8, seed=0)
    problems = []
    for k in range(16):
        rng = np.random.default_rng(k)
        problems.append((*random_problem(lstm, 2 + k % 5, 1 + k % 3, rng, lengths=True), k))
    serial = [_seeded_train_step(lstm, p) for p in problems]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda p: _seeded_train_step(lstm, p), problems))
    for s, t in zip(serial, threaded):
        for u, v in zip(s, t):
            np.testing.assert_array_equal(u, v, strict=True)


@pytest.mark.parametrize("kernel", ["forward", "backward"])
def test_regularised_kernels_release_the_gil(kernel):
    # A kernel call long enough (~0.1 s and more) that, if it held the GIL, this thread could
    # not run in the middle of it; it must tick throughout.
    import threading
    import time
    lstm = LSTM(8, 32, layer_norm=True, zoneout=0.1, recurrent_dropout=0.1,
                dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((3000, 8, 8))
    y, _, cache = lstm.forward_train(x, rng=0)
    window = []

    def run():
        t0 = time.perf_counter()
        if kernel == "forward":
            lstm.forward_train(x, rng=0)
        else:
            lstm.backward(cache, np.ones_like(y))
        window.extend([t0, time.perf_counter()])

    worker = threading.Thread(target=run)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    ticks = np.array(ticks)
    t0, t1 = window
    third = (t1 - t0) / 3
    assert third > 0.01, "the kernel call is too short to tell"
    assert np.count_nonzero((ticks > t0 + third) & (ticks < t1 - third)) > 0
