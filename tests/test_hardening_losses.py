"""cross_entropy: items that a mask or ignore_index leaves out have exactly zero gradient,
whatever their logits hold (NaN and infinities included), and change nothing else."""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
from lstmx.losses import cross_entropy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("how", ["mask", "ignore_index"])
def test_left_out_items_with_non_finite_logits_get_zero_gradient(dtype, bad, how):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 5)).astype(dtype)
    target = rng.integers(0, 5, (4, 3))
    out = np.zeros((4, 3), bool)
    out[1, 2] = out[3, 0] = True
    kwargs = dict(mask=~out) if how == "mask" else dict(ignore_index=-100)
    if how == "ignore_index":
        target[out] = -100
    clean_loss, clean_grad = cross_entropy(logits, target, **kwargs)
    dirty = logits.copy()
    dirty[1, 2, 0] = bad
    dirty[3, 0] = bad
    loss, grad = cross_entropy(dirty, target, **kwargs)
    assert loss == clean_loss
    assert_array_equal(grad, clean_grad)
    assert np.all(grad[out] == 0)
    # the readout's weight gradient dz^T h stays finite
    head = lstmx.Linear(2, 5, dtype=dtype, seed=0)
    _, cache = head.forward_train(rng.standard_normal((4, 3, 2)).astype(dtype))
    _, grads = head.backward(cache, grad)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_counted_non_finite_logits_still_propagate():
    logits = np.zeros((2, 3))
    logits[0, 1] = np.nan
    loss, grad = cross_entropy(logits, np.array([0, 1]))
    assert np.isnan(loss) and np.isnan(grad[0]).all() and np.isfinite(grad[1]).all()
