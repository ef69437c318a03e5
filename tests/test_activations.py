"""The kernels' own exp-based sigmoid and tanh (float32 and float64): accuracy and saturation."""
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy.special import expit

from lstmx import _dispatch

# Every compiled variant this CPU runs (baseline, AVX2, AVX-512) is held to the same bounds.
pytestmark = pytest.mark.parametrize("variant", _dispatch.available())


def run(x, variant):
    sig, th = np.empty_like(x), np.empty_like(x)
    _dispatch.load(variant).activations(x, sig, th)
    return sig, th


def ulp_error(got, exact):
    wide = exact.dtype
    return np.abs(got.astype(wide) - exact) / np.spacing(exact.astype(got.dtype)).astype(wide)


def test_float32_within_a_few_ulp_of_exact(variant):
    # Bounds: exp is within ~1.3 ulp (Cephes); sigmoid adds the rounding of 1 + e and of the
    # division. NumPy's own float32 1 / (1 + exp(-x)) reaches 3.4 ulp on this grid.
    x = np.concatenate([np.linspace(-80, 80, 1_000_001),
                        np.geomspace(1e-30, 10, 20_000), -np.geomspace(1e-30, 10, 20_000)])
    x = x.astype(np.float32)
    sig, th = run(x, variant)
    x64 = x.astype(np.float64)
    assert ulp_error(sig, expit(x64)).max() <= 2.5
    assert ulp_error(th, np.tanh(x64)).max() <= 1.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturation_is_finite_and_bounded(dtype, variant):
    x = np.array([np.inf, -np.inf, 1e30, -1e30, 100, -100, 0], dtype)
    sig, th = run(x, variant)
    assert np.all(np.isfinite(sig)) and np.all(np.isfinite(th))
    assert_array_equal(sig[[0, 2, 4]], 1)
    assert np.all((sig[[1, 3, 5]] >= 0) & (sig[[1, 3, 5]] < 1e-37))
    assert_array_equal(th[[0, 2, 4]], 1)
    assert_array_equal(th[[1, 3, 5]], -1)
    assert sig[6] == 0.5 and th[6] == 0
    # Small results stay normal floats (denormals are slow on many CPUs).
    assert np.all((sig == 0) | (sig >= np.finfo(dtype).tiny))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_propagates(dtype, variant):
    sig, th = run(np.array([np.nan], dtype), variant)
    assert np.isnan(sig[0]) and np.isnan(th[0])


def test_float64_within_a_few_ulp_of_exact(variant):
    # The float64 functions are the float32 ones' scheme (exp's Taylor series to r**13 where
    # Cephes' expf stops at r**7; Cephes' rational tanh below 0.625), so the same bounds.
    # "Exact" is computed in long double (x86-64: 64-bit significand, 11 bits past float64). Past -708 sigmoid is clamped to a normal double (test_saturation_...).
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("the exact values need a long double wider than float64")
    x = np.concatenate([np.linspace(-708, 708, 1_000_001), np.linspace(-20, 20, 1_000_001),
                        np.geomspace(1e-300, 20, 20_000), -np.geomspace(1e-300, 20, 20_000)])
    sig, th = run(x, variant)
    xl = x.astype(np.longdouble)
    assert ulp_error(sig, 1 / (1 + np.exp(-xl))).max() <= 2.5
    assert ulp_error(th, np.tanh(xl)).max() <= 1.5
