"""The quantised models' rational sigmoid and tanh: error, range, saturation, and the reference."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy.special import expit

from lstmx import _dispatch
from lstmx import reference_quantized as ref

# Every compiled variant this CPU runs (baseline, AVX2, AVX-512) is held to the same bounds.
pytestmark = pytest.mark.parametrize("variant", _dispatch.available())

# The functions' largest errors over every float32 in [-20, 20] (a check of all of them takes
# minutes: tools/rational_tanh.py --check); here on a grid.
SIGMOID_ERROR, TANH_ERROR = ref.SIGMOID_ERROR, ref.TANH_ERROR


def run(x, variant):
    sig, th = np.empty_like(x), np.empty_like(x)
    _dispatch.quantized(variant).activations(x, sig, th)
    return sig, th


def grid():
    x = np.concatenate([np.linspace(-30, 30, 1_000_001), np.geomspace(1e-30, 30, 20_000),
                        -np.geomspace(1e-30, 30, 20_000)])
    return x.astype(np.float32)


def test_within_the_documented_absolute_error(variant):
    x = grid()
    sig, th = run(x, variant)
    x64 = x.astype(np.float64)
    assert np.abs(sig - expit(x64)).max() <= SIGMOID_ERROR
    assert np.abs(th - np.tanh(x64)).max() <= TANH_ERROR
    # tanh is odd and sigmoid(-x) = 1 - sigmoid(x), to the rounding of the 1/2 added
    assert_array_equal(run(-x, variant)[1], -th)
    assert np.abs(run(-x, variant)[0] - (1 - sig)).max() <= np.spacing(np.float32(1))


def test_in_range_and_saturated(variant):
    x = np.float32([np.inf, -np.inf, 1e30, -1e30, 100, -100, 18, -18, 9, -9, 0, -0.0])
    sig, th = run(x, variant)
    assert_array_equal(sig[:8], [1, 0] * 4)
    assert_array_equal(th[:10], [1, -1] * 5)
    assert_array_equal(sig[10:], 0.5)
    assert_array_equal(np.signbit(th[10:]), [False, True])
    sig, th = run(grid(), variant)
    assert sig.min() >= 0 and sig.max() <= 1 and np.abs(th).max() <= 1


def test_nan_propagates(variant):
    sig, th = run(np.float32([np.nan]), variant)
    assert np.isnan(sig[0]) and np.isnan(th[0])


def test_reference_is_the_kernels_function(variant):
    # The reference rounds each multiply-add once (as the optimised AVX2 and AVX-512 builds
    # contract them into FMA) or the product and the sum apart (the baseline build, and any
    # build at -O0, as the reliability checks' debug build): the kernels give the bits of one.
    x = np.concatenate([grid(), np.float32([np.nan, np.inf, -np.inf])])
    sig, th = run(x, variant)
    matches = [fused for fused in (True, False)
               if np.array_equal(sig, ref.sigmoid(x, fused), equal_nan=True)
               and np.array_equal(th, ref.tanh(x, fused), equal_nan=True)]
    assert matches, "the kernels' functions are neither rounding of the reference"
