"""Losses: values and gradients against PyTorch and finite differences; stability; masks."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from _helpers import require, tolerances
from lstmx.losses import cross_entropy, mse_loss

EPS = 1e-6
RTOL = 1e-6
DTYPES = [np.float32, np.float64]


def check_fd(f, arr, grad, rng):
    v = rng.standard_normal(arr.shape)
    up, down = f(arr + EPS * v), f(arr - EPS * v)
    numeric = (up - down) / (2 * EPS)
    analytic = np.sum(grad * v)
    assert abs(numeric - analytic) <= RTOL * max(1.0, abs(analytic))


# Mean squared error ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(dtype, reduction):
    torch = require("torch")
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 3, 2)).astype(dtype)
    target = rng.standard_normal((4, 3, 2)).astype(dtype)
    loss, dpred = mse_loss(pred, target, reduction=reduction)
    pt = torch.tensor(pred.astype(np.float64), requires_grad=True)
    lt = torch.nn.functional.mse_loss(pt, torch.from_numpy(target.astype(np.float64)),
                                      reduction=reduction)
    lt.backward()
    assert isinstance(loss, float) and dpred.dtype == dtype and dpred.shape == pred.shape
    assert_allclose(loss, lt.item(), **tolerances(dtype))
    assert_allclose(dpred, pt.grad.numpy(), **tolerances(dtype))


def test_mse_gradient_finite_differences():
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    _, dpred = mse_loss(pred, target)
    check_fd(lambda p: mse_loss(p, target)[0], pred, dpred, rng)


def test_mse_bad_inputs():
    with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
        mse_loss(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="input must be a float32 or float64 array"):
        mse_loss(np.ones(3, int), np.ones(3))
    with pytest.raises(ValueError, match="reduction must be one of"):
        mse_loss(np.ones(3), np.ones(3), reduction="none")


# Softmax cross-entropy ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [None, 2])
def test_cross_entropy_matches_torch(dtype, reduction, ignore_index):
    torch = require("torch")
    rng = np.random.default_rng(0)
    T, B, C = 6, 4, 5
    logits = (3 * rng.standard_normal((T, B, C))).astype(dtype)
    target = rng.integers(0, C, size=(T, B))
    loss, dlogits = cross_entropy(logits, target, ignore_index=ignore_index,
                                  reduction=reduction)
    lt_in = torch.tensor(logits.reshape(-1, C).astype(np.float64), requires_grad=True)
    kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}
    lt = torch.nn.functional.cross_entropy(lt_in, torch.from_numpy(target.ravel()),
                                           reduction=reduction, **kwargs)
    lt.backward()
    assert isinstance(loss, float) and dlogits.dtype == dtype
    assert_allclose(loss, lt.item(), **tolerances(dtype))
    assert_allclose(dlogits.reshape(-1, C), lt_in.grad.numpy(), **tolerances(dtype))


@pytest.mark.parametrize("masked", [False, True])
def test_cross_entropy_gradient_finite_differences(masked):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((4, 3, 6))
    target = rng.integers(0, 6, size=(4, 3))
    mask = rng.random((4, 3)) < 0.6 if masked else None
    _, dlogits = cross_entropy(logits, target, mask=mask)
    check_fd(lambda z: cross_entropy(z, target, mask=mask)[0], logits, dlogits, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    # exp(1e4) overflows in either dtype; filterwarnings=error turns an overflow into a failure.
    logits = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, -1e4]], dtype=dtype)
    loss, dlogits = cross_entropy(logits, np.array([1, 0]), reduction="sum")
    assert_allclose(loss, 1e4 + np.log(2), rtol=tolerances(dtype)["rtol"])
    assert_allclose(dlogits, [[1, -1, 0], [-0.5, 0.5, 0]], atol=tolerances(dtype)["atol"])


def test_cross_entropy_of_uniform_logits_is_log_classes():
    loss, dlogits = cross_entropy(np.zeros((7, 10)), np.arange(7))
    assert_allclose(loss, np.log(10), rtol=1e-15)
    assert_allclose(dlogits.sum(axis=-1), 0, atol=1e-16)


def test_cross_entropy_mask_equals_ignore_index_and_dropping_items():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 4, 3))
    target = rng.integers(0, 3, size=(5, 4))
    lengths = np.array([5, 2, 4, 1])
    mask = np.arange(5)[:, None] < lengths  # steps within each sequence
    padded = np.where(mask, target, -100)
    by_mask = cross_entropy(logits, padded, mask=mask)
    by_ignore = cross_entropy(logits, padded, ignore_index=-100)
    kept = cross_entropy(logits[mask], target[mask])
    assert by_mask[0] == by_ignore[0]
    assert_array_equal(by_mask[1], by_ignore[1])
    assert_allclose(by_mask[0], kept[0], rtol=1e-15)
    assert_allclose(by_mask[1][mask], kept[1], rtol=1e-15)
    assert_array_equal(by_mask[1][~mask], 0)


def test_cross_entropy_nothing_counted_is_zero():
    loss, dlogits = cross_entropy(np.ones((3, 4)), np.zeros(3, int), mask=np.zeros(3, bool))
    assert loss == 0.0
    assert_array_equal(dlogits, 0)


def test_cross_entropy_does_not_modify_logits():
    logits = np.arange(12.0).reshape(3, 4)
    saved = logits.copy()
    cross_entropy(logits, np.array([0, 1, 2]))
    assert_array_equal(logits, saved)


def test_cross_entropy_bad_inputs():
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"target must be in \[0, 4\)"):
        cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target must be in \[0, 4\)"):
        cross_entropy(logits, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
        cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(TypeError, match="target must be an integer array"):
        cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="mask must be a bool array"):
        cross_entropy(logits, np.array([0, 1, 2]), mask=np.ones(3))
    with pytest.raises(ValueError, match=r"mask must have shape \(3,\)"):
        cross_entropy(logits, np.array([0, 1, 2]), mask=np.ones(2, bool))
    with pytest.raises(ValueError, match="logits must have a class axis"):
        cross_entropy(np.float64(1.0), np.array(0))
    with pytest.raises(TypeError, match="logits must be a float32 or float64 array"):
        cross_entropy(np.zeros((3, 4), int), np.array([0, 1, 2]))
