"""Gradients against central finite differences, in float64, for every option."""
import itertools

import numpy as np
import pytest

import lstmx
from _helpers import FD_RTOL, directional_fd, random_problem

RTOL = FD_RTOL


def loss_fn(lstm, x, state, lengths, dy, dstate):
    """A scalar whose gradient with respect to (y, h_n, c_n) is (dy, dh_n, dc_n)."""
    y, (h, c) = lstm(x, state, lengths)
    return np.sum(y * dy) + np.sum(h * dstate[0]) + np.sum(c * dstate[1])


def check_gradients(lstm, T, B, lengths, seed):
    rng = np.random.default_rng(seed)
    x, state, lens, dy, dstate = random_problem(lstm, T, B, rng, lengths)
    _, _, cache = lstm.forward_train(x, state, lens)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    f = lambda: loss_fn(lstm, x, state, lens, dy, dstate)  # noqa: E731
    targets = [("x", x, dx), ("h0", state[0], dh0), ("c0", state[1], dc0)]
    targets += [(name, arr, grads[name]) for name, arr in lstm.parameters().items()]
    for name, arr, grad in targets:
        v = rng.standard_normal(arr.shape)
        numeric = directional_fd(f, arr, v)
        analytic = np.sum(grad * v)
        assert abs(numeric - analytic) <= RTOL * max(1.0, abs(analytic)), (
            f"{name}: finite difference {numeric!r} vs backward {analytic!r}")


@pytest.mark.parametrize(
    "peephole,act,proj,layers,lengths",
    list(itertools.product([False, True], ["tanh", "identity"], [0, 2],
                           [(1, False), (2, True)], [False, True])))
def test_lstm_gradients(peephole, act, proj, layers, lengths):
    lstm = lstmx.LSTM(3, 4, num_layers=layers[0], bidirectional=layers[1], proj_size=proj,
                      peephole=peephole, output_activation=act, dtype=np.float64, seed=5)
    check_gradients(lstm, T=5, B=3, lengths=lengths, seed=6)


def test_gradients_batch_first_no_bias():
    lstm = lstmx.LSTM(3, 4, num_layers=2, bias=False, batch_first=True, dtype=np.float64,
                      seed=0)
    check_gradients(lstm, T=4, B=2, lengths=True, seed=1)


@pytest.mark.parametrize("peephole", [False, True])
def test_cell_gradients(peephole):
    cell = lstmx.LSTMCell(3, 4, peephole=peephole, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    dh, dc = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    _, cache = cell.forward_train(x, (h, c))
    dx, (dh0, dc0), grads = cell.backward(cache, (dh, dc))

    def f():
        h1, c1 = cell(x, (h, c))
        return np.sum(h1 * dh) + np.sum(c1 * dc)

    for name, arr, grad in [("x", x, dx), ("h", h, dh0), ("c", c, dc0)] + [
            (k, v, grads[k]) for k, v in cell.parameters().items()]:
        v = rng.standard_normal(arr.shape)
        numeric, analytic = directional_fd(f, arr, v), np.sum(grad * v)
        assert abs(numeric - analytic) <= RTOL * max(1.0, abs(analytic)), name
