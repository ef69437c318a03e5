"""The masks' generator (lstmx._random): NumPy's Philox float32 stream, element for element.

``bernoulli`` fills a mask from Philox4x64-10, counter-based, on the OpenMP threads; NumPy's
own ``Generator(Philox(key))`` is the oracle, bit for bit, at every size (whole groups of
its blocks, a short last one), probability (0, 1 and the edges of its 24-bit resolution),
dtype and thread count.
"""
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from threadpoolctl import threadpool_limits

from lstmx import _masks, _random

KEY = (0x243F6A8885A308D3, 0x13198A2E03707344)


def oracle(n, p, value, below, dtype, key=KEY):
    u = np.random.Generator(np.random.Philox(key=np.array(key, np.uint64))).random(
        n, dtype=np.float32).astype(np.float64)
    hit = u < p if below else u >= p
    return np.where(hit, value, 0).astype(dtype)


@pytest.mark.parametrize("n", [0, 1, 5, 15, 16, 17, 33, 1000, 70001])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0, 2.0**-24, 1 - 2.0**-24, 2.0**-25])
@pytest.mark.parametrize("below", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_is_numpys_philox_float32_stream(n, p, below, dtype):
    value = 1.0 if below else 1 / (1 - p) if p < 1 else 0.0
    out = np.full(n, np.nan, dtype)
    _random.bernoulli(out, *KEY, p, value, below)
    assert_array_equal(out, oracle(n, p, value, below, dtype))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bernoulli_bits_do_not_depend_on_the_threads(threads):
    n = 3 * (1 << 16) + 7  # past the size from which the threads share a mask
    out = np.empty(n, np.float32)
    with threadpool_limits(threads):
        _random.bernoulli(out, *KEY, 0.37, 1.0, True)
    assert_array_equal(out, oracle(n, 0.37, 1.0, True, np.float32))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_bernoulli_refuses_a_probability_outside_0_1(p):
    with pytest.raises(ValueError, match="p must be in"):
        _random.bernoulli(np.empty(4), *KEY, p, 1.0, True)


def test_bernoulli_refuses_what_it_cannot_fill():
    with pytest.raises((TypeError, ValueError)):
        _random.bernoulli(np.empty(4, np.int32), *KEY, 0.5, 1.0, True)
    with pytest.raises((TypeError, ValueError)):
        _random.bernoulli(np.empty((4, 2))[:, 0], *KEY, 0.5, 1.0, True)
    with pytest.raises((TypeError, ValueError)):
        frozen = np.empty(4)
        frozen.flags.writeable = False
        _random.bernoulli(frozen, *KEY, 0.5, 1.0, True)


def test_masks_take_their_keys_from_rng():
    # Each mask takes two 64-bit draws of rng as its key, in draw()'s fixed order.
    rng = np.random.default_rng(11)
    kept = _masks._kept(rng, (7, 3, 5), 0.25, np.float32)
    scaled = _masks._scaled(rng, (3, 5), 0.4, np.float64)
    keys = np.random.default_rng(11).integers(0, 2**64, size=(2, 2), dtype=np.uint64)
    assert_array_equal(kept.ravel(), oracle(105, 0.25, 1.0, True, np.float32, keys[0]))
    assert_array_equal(scaled.ravel(), oracle(15, 0.4, 1 / 0.6, False, np.float64, keys[1]))
