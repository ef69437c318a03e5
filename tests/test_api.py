"""The public contract of LSTM and LSTMCell: parameters, state, layouts, caches."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from _helpers import random_problem, tolerances


def test_default_init_is_pytorch_uniform_and_seeded():
    a = lstmx.LSTM(8, 16, num_layers=2, bidirectional=True, seed=0)
    b = lstmx.LSTM(8, 16, num_layers=2, bidirectional=True, seed=0)
    c = lstmx.LSTM(8, 16, num_layers=2, bidirectional=True, seed=1)
    for name, value in a.parameters().items():
        assert value.dtype == np.float32
        assert np.abs(value).max() <= 1 / np.sqrt(16)
        assert_array_equal(value, b.parameters()[name])
        assert not np.array_equal(value, c.parameters()[name])


def test_keras_init():
    lstm = lstmx.LSTM(3, 4, init="keras", dtype=np.float64, seed=0)
    U = lstm.weight_hh_l0
    assert_allclose(U.T @ U, np.eye(4), atol=1e-12)  # orthogonal recurrent kernel
    assert_array_equal(lstm.bias_ih_l0, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    assert_array_equal(lstm.bias_hh_l0, 0)
    limit = np.sqrt(6 / (3 + 16))
    assert np.abs(lstm.weight_ih_l0).max() <= limit
    with pytest.raises(ValueError, match="init must be one of"):
        lstmx.LSTM(3, 4, init="xavier")


def test_state_dict_returns_copies_and_parameters_are_live():
    lstm = lstmx.LSTM(3, 4)
    sd = lstm.state_dict()
    sd["weight_ih_l0"][...] = 0
    assert np.any(lstm.weight_ih_l0 != 0)
    live = lstm.parameters()["weight_ih_l0"]
    live[...] = 0.5
    assert np.all(lstm.state_dict()["weight_ih_l0"] == 0.5)
    assert lstm.weight_ih_l0 is live


def test_load_state_dict_casts_and_keeps_live_arrays():
    src = lstmx.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=1)
    dst = lstmx.LSTM(3, 4, num_layers=2, dtype=np.float32, seed=2)
    live = dst.parameters()
    dst.load_state_dict(src.state_dict())
    for name, value in src.state_dict().items():
        assert dst.parameters()[name] is live[name]
        assert dst.parameters()[name].dtype == np.float32
        assert_allclose(dst.parameters()[name], value, rtol=1e-7)


@pytest.mark.parametrize("mutate", ["missing", "unexpected", "shape", "dtype"])
def test_failed_load_state_dict_changes_nothing(mutate):
    lstm = lstmx.LSTM(3, 4, num_layers=2, seed=0)
    before = lstm.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    if mutate == "missing":
        del sd["bias_hh_l1"]
    elif mutate == "unexpected":
        sd["weight_hr_l0"] = np.zeros((2, 4), np.float32)
    elif mutate == "shape":
        sd["weight_hh_l1"] = np.zeros((16, 5), np.float32)
    else:
        sd["bias_ih_l1"] = np.zeros(16, dtype=np.int64)
    with pytest.raises((KeyError, ValueError, TypeError)):
        lstm.load_state_dict(sd)
    for name, value in lstm.state_dict().items():
        assert_array_equal(value, before[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_by_step_equals_whole_sequence(dtype):
    lstm = lstmx.LSTM(3, 5, num_layers=2, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((9, 2, 3)).astype(dtype)
    y, (h, c) = lstm(x)
    state, steps = None, []
    for t in range(9):
        y_t, state = lstm(x[t:t + 1], state)
        steps.append(y_t)
    assert_allclose(np.concatenate(steps), y, **tolerances(dtype))
    assert_allclose(state[0], h, **tolerances(dtype))
    assert_allclose(state[1], c, **tolerances(dtype))


def test_cell_steps_equal_lstm():
    lstm = lstmx.LSTM(3, 5, dtype=np.float64, seed=0)
    cell = lstmx.LSTMCell(3, 5, dtype=np.float64)
    cell.load_state_dict({k[:-3]: v for k, v in lstm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    y, (h_n, c_n) = lstm(x)
    h = c = None
    for t in range(6):
        h, c = cell(x[t], None if h is None else (h, c))
        assert_allclose(h, y[t], rtol=1e-12)
    assert_allclose(c, c_n[0], rtol=1e-12)


def test_lengths_give_zero_outputs_and_last_valid_state():
    lstm = lstmx.LSTM(2, 3, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 2))
    y, (h, c) = lstm(x, lengths=[5, 2])
    assert_array_equal(y[2:, 1], 0)
    y2, (h2, c2) = lstm(x[:2, 1:])
    assert_allclose(y[:2, 1], y2[:, 0], rtol=1e-12)
    assert_allclose(h[:, 1], h2[:, 0], rtol=1e-12)
    assert_allclose(c[:, 1], c2[:, 0], rtol=1e-12)


def test_identity_output_activation_worked_example():
    # LSTM.md: c = [0.7, 0.3], o = [0.4, 0.6] gives h = o * c = [0.28, 0.18].
    # With zero weights, z is the bias: f = 0 forgets c0, i = 1 and g = tanh(z_g) = c.
    c_target, o_target = np.array([0.7, 0.3]), np.array([0.4, 0.6])
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    cell = lstmx.LSTMCell(1, 2, output_activation="identity", dtype=np.float64)
    params = {k: np.zeros_like(v) for k, v in cell.state_dict().items()}
    params["bias_ih"] = np.r_[[40.0, 40.0], [-40.0, -40.0], np.arctanh(c_target),
                              logit(o_target)]
    cell.load_state_dict(params)
    h, c = cell(np.zeros((1, 1)), (np.zeros((1, 2)), np.ones((1, 2))))
    assert_allclose(c[0], c_target, rtol=1e-12)
    assert_allclose(h[0], [0.28, 0.18], rtol=1e-12)


@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "other_dtype",
                                    "batch_first_view"])
def test_memory_layouts_give_the_same_answer(layout):
    lstm = lstmx.LSTM(4, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, state, lens, dy, dstate = random_problem(lstm, 5, 3, rng, lengths=True)
    y, (h, c), cache = lstm.forward_train(x, state, lens)
    dx, _, grads = lstm.backward(cache, dy, dstate)
    if layout == "fortran":
        x2 = np.asfortranarray(x)
    elif layout == "strided":
        x2 = np.repeat(x, 2, axis=2)[:, :, ::2]
    elif layout == "readonly":
        x2 = x.copy()
        x2.flags.writeable = False
    elif layout == "other_dtype":
        x2 = x.astype(np.float32).astype(np.float64)
        x = x2
        y, (h, c), cache = lstm.forward_train(x, state, lens)
        dx, _, grads = lstm.backward(cache, dy, dstate)
        x2 = x.astype(np.float32)
    else:
        x2 = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    before = np.array(x2, copy=True)
    y2, (h2, c2), cache2 = lstm.forward_train(x2, state, lens)
    dx2, _, grads2 = lstm.backward(cache2, dy, dstate)
    assert_array_equal(x2, before)
    assert_allclose(y2, y, rtol=1e-12)
    assert_allclose(dx2, dx, rtol=1e-12)
    for name in grads:
        assert_allclose(grads2[name], grads[name], rtol=1e-12)


def test_inputs_are_never_mutated():
    lstm = lstmx.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    x, state, lens, dy, dstate = random_problem(lstm, 4, 2, rng, lengths=True)
    copies = [a.copy() for a in (x, *state, lens, dy, *dstate)]
    _, _, cache = lstm.forward_train(x, state, lens)
    lstm.backward(cache, dy, dstate)
    lstm(x, state, lens)
    for before, after in zip(copies, (x, *state, lens, dy, *dstate)):
        assert_array_equal(before, after)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("I,H,B", [(3, 4, 2), (20, 128, 1)])
def test_cell_step_fast_path_matches_general_path(dtype, peephole, I, H, B):
    # Arrays that are already C-contiguous and of the cell's dtype take a path that checks
    # and runs the step in C (lstmx._kernels.cell_step); anything else is validated and
    # converted in Python first. Both give the same new state and leave the inputs alone.
    # At H = 128 the step runs on the threaded kernels of AVX2 and AVX-512 builds.
    cell = lstmx.LSTMCell(I, H, peephole=peephole, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x, h, c = (rng.standard_normal(shape).astype(dtype) for shape in [(B, I), (B, H), (B, H)])
    copies = [a.copy() for a in (x, h, c)]
    h1, c1 = cell(x, (h, c))
    for before, after in zip(copies, (x, h, c)):
        assert_array_equal(before, after)
    assert h1.shape == c1.shape == (B, H) and h1.dtype == c1.dtype == dtype
    assert not np.shares_memory(h1, h) and not np.shares_memory(c1, c)
    h2, c2 = cell(x.tolist(), [h.tolist(), c.tolist()])  # the general path
    assert_array_equal(h1, h2)
    assert_array_equal(c1, c2)
    (h3, c3), _ = cell.forward_train(x, (h, c))
    assert_array_equal(h1, h3)
    assert_array_equal(c1, c3)


def test_training_output_is_read_only_and_later_changes_do_not_reach_backward():
    # The cache computes with its own copies of x and the weights: changing the caller's
    # arrays in place after forward_train leaves the gradient that of the forward pass.
    lstm = lstmx.LSTM(3, 4, proj_size=2, peephole=True, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, state, _, dy, dstate = random_problem(lstm, 4, 2, rng)
    y, _, cache = lstm.forward_train(x, state)
    with pytest.raises(ValueError, match="read-only"):
        y[...] = 0
    dx, _, grads = lstm.backward(cache, dy, dstate)
    for array in [x, *lstm.parameters().values()]:
        array.flat[-1] = np.nextafter(array.flat[-1], np.inf)  # the smallest change
        array *= -1
    dx2, _, grads2 = lstm.backward(cache, dy, dstate)
    assert_array_equal(dx2, dx)
    for name in grads:
        assert_array_equal(grads2[name], grads[name])


def test_caches_back_propagate_in_any_order():
    lstm = lstmx.LSTM(3, 4, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    p1, p2 = random_problem(lstm, 4, 2, rng), random_problem(lstm, 6, 3, rng)
    c1, c2 = lstm.forward_train(*p1[:3])[2], lstm.forward_train(*p2[:3])[2]
    g2 = lstm.backward(c2, p2[3], p2[4])
    g1 = lstm.backward(c1, p1[3], p1[4])
    f1 = lstm.backward(lstm.forward_train(*p1[:3])[2], p1[3], p1[4])
    assert_array_equal(g1[0], f1[0])
    assert g2[0].shape == (6, 3, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_inputs_give_finite_outputs(dtype):
    lstm = lstmx.LSTM(3, 4, num_layers=2, bidirectional=True, peephole=True, dtype=dtype,
                      seed=0)
    x = np.array([1e30, -1e30, 0.0], dtype)[None, None].repeat(5, 0).repeat(2, 1)
    x[:, 1] *= -1
    y, (h, c), cache = lstm.forward_train(x)
    dx, (dh0, dc0), grads = lstm.backward(cache, np.ones_like(y))
    for a in (y, h, c, dx, dh0, dc0, *grads.values()):
        assert np.all(np.isfinite(a))
    assert np.abs(y).max() <= 1


def test_repr_and_attributes():
    lstm = lstmx.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    assert repr(lstm) == "LSTM(3, 4, num_layers=2, bidirectional=True, dtype=float64)"
    assert lstm.dtype == np.float64
    with pytest.raises(AttributeError, match="weight_ih_l5"):
        lstm.weight_ih_l5
    assert "LSTMCell(3, 4" in repr(lstmx.LSTMCell(3, 4))


def test_load_state_dict_of_swapped_live_views():
    lstm = lstmx.LSTM(2, 3, seed=0)
    live = lstm.parameters()
    ih, hh = live["bias_ih_l0"].copy(), live["bias_hh_l0"].copy()
    swapped = dict(live, bias_ih_l0=live["bias_hh_l0"], bias_hh_l0=live["bias_ih_l0"])
    lstm.load_state_dict(swapped)
    assert_array_equal(lstm.bias_ih_l0, hh)
    assert_array_equal(lstm.bias_hh_l0, ih)
