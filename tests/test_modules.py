"""Linear and Embedding: forward against NumPy and PyTorch, gradients by finite differences."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from _helpers import FD_RTOL, directional_fd, require, tolerances
from lstmx.losses import cross_entropy

RTOL = FD_RTOL
DTYPES = [np.float32, np.float64]


def assert_directional(f, arr, grad, rng, name):
    v = rng.standard_normal(arr.shape)
    numeric = directional_fd(f, arr, v)
    analytic = np.sum(grad * v)
    assert abs(numeric - analytic) <= RTOL * max(1.0, abs(analytic)), (
        f"{name}: finite difference {numeric!r} vs backward {analytic!r}")


# Linear ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3,), (5, 3), (4, 2, 3)])
def test_linear_forward_matches_numpy(dtype, shape):
    head = lstmx.Linear(3, 2, dtype=dtype, seed=0)
    x = np.random.default_rng(1).standard_normal(shape)
    y = head(x)
    assert y.dtype == dtype and y.shape == shape[:-1] + (2,)
    want = x.astype(dtype) @ head.weight.T + head.bias
    assert_allclose(y, want, **tolerances(dtype))
    y_train, _ = head.forward_train(x)
    assert_array_equal(y_train, y)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients_finite_differences(bias):
    rng = np.random.default_rng(0)
    head = lstmx.Linear(4, 3, bias=bias, dtype=np.float64, seed=1)
    x = rng.standard_normal((5, 2, 4))
    dy = rng.standard_normal((5, 2, 3))
    _, cache = head.forward_train(x)
    dx, grads = head.backward(cache, dy)
    assert sorted(grads) == sorted(head.parameters())
    f = lambda: np.sum(head(x) * dy)  # noqa: E731  (its gradient in y is dy)
    assert_directional(f, x, dx, rng, "x")
    for name, arr in head.parameters().items():
        assert_directional(f, arr, grads[name], rng, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_matches_torch(dtype):
    torch = require("torch")
    rng = np.random.default_rng(0)
    head = lstmx.Linear(6, 4, dtype=dtype, seed=2)
    ref = torch.nn.Linear(6, 4, dtype=torch.float64)
    ref.load_state_dict({k: torch.from_numpy(v.astype(np.float64))
                         for k, v in head.state_dict().items()})
    x = rng.standard_normal((3, 5, 6))
    dy = rng.standard_normal((3, 5, 4))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(dy))
    y, cache = head.forward_train(x)
    dx, grads = head.backward(cache, dy)
    tol = tolerances(dtype)
    assert_allclose(y, yt.detach().numpy(), **tol)
    assert_allclose(dx, xt.grad.numpy(), **tol)
    for name, p in ref.named_parameters():
        assert_allclose(grads[name], p.grad.numpy(), **tol)


def test_linear_init_like_torch():
    head = lstmx.Linear(25, 7, seed=0)
    assert head.weight.shape == (7, 25) and head.bias.shape == (7,)
    assert np.abs(head.weight).max() <= 1 / 5 and np.abs(head.bias).max() <= 1 / 5
    assert_array_equal(lstmx.Linear(25, 7, seed=0).weight, head.weight)


def test_linear_cache_survives_parameter_update():
    rng = np.random.default_rng(0)
    head = lstmx.Linear(3, 2, dtype=np.float64, seed=0)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    _, cache = head.forward_train(x)
    want_dx, want = head.backward(cache, dy)
    _, cache = head.forward_train(x)
    head.weight[...] += 1.0  # an optimiser step between forward and backward
    x[...] = 0.0
    dx, grads = head.backward(cache, dy)
    assert_array_equal(dx, want_dx)
    assert_array_equal(grads["weight"], want["weight"])


def test_linear_parameters_are_live_and_state_dict_round_trips():
    head = lstmx.Linear(3, 2, seed=0)
    head.parameters()["bias"][...] = 5.0
    assert_array_equal(head.bias, 5.0)
    other = lstmx.Linear(3, 2, seed=1)
    other.load_state_dict(head.state_dict())
    assert_array_equal(other.weight, head.weight)


def test_linear_bad_inputs():
    head = lstmx.Linear(3, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        head(np.ones((4, 5)))
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        head(np.ones((4, 3), dtype=int))
    _, cache = head.forward_train(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2\)"):
        head.backward(cache, np.ones((4, 3)))
    with pytest.raises(ValueError, match="cache comes from a Linear"):
        lstmx.Linear(3, 5).backward(cache, np.ones((4, 5)))
    with pytest.raises(TypeError, match="cache must be"):
        head.backward(None, np.ones((4, 2)))
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        lstmx.Linear(0, 2)
    with pytest.raises(TypeError, match="bias must be a bool"):
        lstmx.Linear(2, 2, bias=1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        lstmx.Linear(2, 2, dtype=np.int32)


# Embedding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_forward_is_lookup(dtype):
    emb = lstmx.Embedding(7, 3, dtype=dtype, seed=0)
    idx = np.array([[0, 6], [3, 3], [1, 0]])
    y = emb(idx)
    assert y.dtype == dtype and y.shape == (3, 2, 3)
    assert_array_equal(y, emb.weight[idx])
    y_train, _ = emb.forward_train(idx)
    assert_array_equal(y_train, y)


def test_embedding_gradient_sums_repeated_tokens():
    rng = np.random.default_rng(0)
    emb = lstmx.Embedding(5, 2, dtype=np.float64, seed=0)
    idx = np.array([[1, 3], [1, 1]])
    dy = rng.standard_normal((2, 2, 2))
    _, cache = emb.forward_train(idx)
    dW = emb.backward(cache, dy)["weight"]
    want = np.zeros((5, 2))
    want[1] = dy[0, 0] + dy[1, 0] + dy[1, 1]
    want[3] = dy[0, 1]
    assert_allclose(dW, want, rtol=1e-15)
    f = lambda: np.sum(emb(idx) * dy)  # noqa: E731
    assert_directional(f, emb.weight, dW, rng, "weight")


def test_embedding_padding_idx():
    emb = lstmx.Embedding(4, 3, padding_idx=-1, seed=0)
    assert emb.padding_idx == 3
    assert_array_equal(emb.weight[3], 0)
    _, cache = emb.forward_train(np.array([3, 0, 3]))
    dW = emb.backward(cache, np.ones((3, 3)))["weight"]
    assert_array_equal(dW[3], 0)
    assert_array_equal(dW[0], 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch(dtype):
    torch = require("torch")
    rng = np.random.default_rng(0)
    emb = lstmx.Embedding(9, 4, padding_idx=2, dtype=dtype, seed=0)
    ref = torch.nn.Embedding(9, 4, padding_idx=2, dtype=torch.float64)
    ref.load_state_dict({"weight": torch.from_numpy(emb.weight.astype(np.float64))})
    idx = rng.integers(0, 9, size=(6, 5))
    dy = rng.standard_normal((6, 5, 4))
    yt = ref(torch.from_numpy(idx))
    yt.backward(torch.from_numpy(dy))
    y, cache = emb.forward_train(idx)
    tol = tolerances(dtype)
    assert_allclose(y, yt.detach().numpy(), **tol)
    assert_allclose(emb.backward(cache, dy)["weight"], ref.weight.grad.numpy(), **tol)


def test_embedding_bad_inputs():
    emb = lstmx.Embedding(4, 2)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 4\)"):
        emb(np.array([0, 4]))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 4\)"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="indices must be an integer array"):
        emb(np.array([0.0, 1.0]))
    _, cache = emb.forward_train(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2\)"):
        emb.backward(cache, np.ones((3, 3)))
    with pytest.raises(ValueError, match="cache comes from an Embedding"):
        lstmx.Embedding(5, 2).backward(cache, np.ones((3, 2)))
    with pytest.raises(ValueError, match="padding_idx must be in"):
        lstmx.Embedding(4, 2, padding_idx=4)


# Together -------------------------------------------------------------------------------------

def test_embedding_lstm_linear_cross_entropy_chain_gradients():
    """A character model end to end: every parameter's gradient by finite differences."""
    rng = np.random.default_rng(0)
    V, T, B = 6, 5, 3
    emb = lstmx.Embedding(V, 4, dtype=np.float64, seed=0)
    lstm = lstmx.LSTM(4, 5, peephole=True, dtype=np.float64, seed=1)
    head = lstmx.Linear(5, V, dtype=np.float64, seed=2)
    tokens = rng.integers(0, V, size=(T + 1, B))
    x, target = tokens[:-1], tokens[1:]
    mask = rng.random((T, B)) < 0.8

    def loss():
        y, _ = lstm(emb(x))
        return cross_entropy(head(y), target, mask=mask)[0]

    e, e_cache = emb.forward_train(x)
    y, _, l_cache = lstm.forward_train(e)
    logits, h_cache = head.forward_train(y)
    _, dlogits = cross_entropy(logits, target, mask=mask)
    dy, g_head = head.backward(h_cache, dlogits)
    de, _, g_lstm = lstm.backward(l_cache, dy)
    g_emb = emb.backward(e_cache, de)
    for module, grads in [(emb, g_emb), (lstm, g_lstm), (head, g_head)]:
        for name, arr in module.parameters().items():
            assert_directional(loss, arr, grads[name], rng, f"{module!r} {name}")
