"""The kernels' own small GEMM (recurrent products of a batch of one, packed-GEMM edges)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_allclose

from lstmx import _dispatch

pytestmark = pytest.mark.parametrize("variant", _dispatch.available())


def check(variant, m, n, k, beta, dtype, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    C = C0.copy()
    if beta == 0:
        C[...] = np.nan  # beta = 0 must not read C (BLAS semantics)
    _dispatch.load(variant).small_product(A, B, dtype(beta), C)
    want = A.astype(np.float64) @ B.astype(np.float64) + (beta * C0 if beta else 0)
    # Summation error grows like sqrt(k) * eps * |A||B| entries.
    scale = np.abs(A).astype(np.float64) @ np.abs(B) + abs(beta) * np.abs(C0)
    tol = 4 * np.finfo(dtype).eps * np.sqrt(max(k, 1))
    assert np.all(np.abs(C - want) <= tol * scale + np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("m,n,k", [
    (1, 128, 32), (1, 256, 64), (1, 129, 7), (3, 300, 33), (1, 64, 1),
    (2, 128, 1100),  # k past DEPTH_BLOCK: blocks summed apart, beta applied once
    (1, 31, 5), (5, 32, 600), (1, 0, 3), (2, 130, 0)])
def test_matches_float64_product(variant, m, n, k, beta, dtype):
    check(variant, m, n, k, beta, dtype)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 4), n=st.integers(1, 300), k=st.integers(0, 80),
       beta=st.sampled_from([0.0, 1.0, -2.0]), double=st.booleans(), seed=st.integers(0, 99))
def test_any_shape(variant, m, n, k, beta, double, seed):
    check(variant, m, n, k, beta, np.float64 if double else np.float32, seed)


def test_rejects_mismatched_shapes(variant):
    A = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        _dispatch.load(variant).small_product(A, np.zeros((4, 5), np.float32), np.float32(0),
                                              np.zeros((2, 5), np.float32))
