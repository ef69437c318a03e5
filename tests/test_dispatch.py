"""Run-time choice of the compiled kernel variant (baseline, AVX2, AVX-512)."""
import os
import subprocess
import sys

import pytest

import lstmx
from lstmx import _dispatch

CHECK = """
import numpy as np, lstmx
from lstmx import _dispatch
from _helpers import random_problem, reference_run, tolerances
from numpy.testing import assert_allclose
assert _dispatch.variant == {variant!r}, _dispatch.variant
# Small models (B = 1 and 9: gemm_small for the steps, BLAS for backward's chunks), then two
# big enough for the tiled kernels of the AVX2 and AVX-512 variants: the threaded ones, and
# a projection's packed per-step products.
models = [(dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True, peephole=True,
                proj_size=3), 7, B) for B in (1, 9)]
models += [(dict(input_size=50, hidden_size=200, bidirectional=True, peephole=True), 20, 37),
           (dict(input_size=20, hidden_size=70, proj_size=33), 9, 37)]
for dtype in (np.float32, np.float64):
    for options, T, B in models:
        lstm = lstmx.LSTM(**options, dtype=dtype, seed=0)
        x, st, lens, dy, dstate = random_problem(lstm, T, B, np.random.default_rng(0), True)
        y, (h, c), cache = lstm.forward_train(x, st, lens)
        dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
        ref = reference_run(lstm, x, st, lens, dy, dstate)
        for got, want in zip((y, h, c, dx, dh0, dc0), ref[:6]):
            assert_allclose(got, want, **tolerances(dtype))
        for k in grads:
            assert_allclose(grads[k], ref[6][k], **tolerances(dtype))
print("ok")
"""


@pytest.mark.parametrize("variant", _dispatch.available())
def test_each_available_variant_matches_reference(variant):
    package_root = os.path.dirname(os.path.dirname(lstmx.__file__))
    tests_dir = os.path.dirname(__file__)
    env = dict(os.environ, LSTMX_KERNELS=variant,
               PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", CHECK.format(variant=variant)], env=env,
                         cwd=tests_dir, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_auto_picks_the_fastest_available():
    assert _dispatch.load("auto") is _dispatch.load(_dispatch.available()[0])
    assert _dispatch.available()[-1] == "baseline"


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="LSTMX_KERNELS must be one of"):
        _dispatch.load("sse9")


def test_quantized_kernels_follow_the_variant():
    assert _dispatch.quantized().__name__ == _dispatch.kernels.__name__.replace(
        "_kernels", "_quantized")
    assert _dispatch.quantized("baseline").__name__ == "lstmx._quantized"
    with pytest.raises(ValueError, match="LSTMX_KERNELS must be one of"):
        _dispatch.quantized("sse9")
