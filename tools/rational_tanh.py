"""Fit the quantised models' rational tanh, or check the compiled one against exact values.

``python tools/rational_tanh.py`` fits tanh(x) ~ x P(x**2) / Q(x**2) on [0, 9], P and Q of
degree 4 in x**2, minimising the largest absolute error (linearised least squares with
Lawson's reweighting), and prints P and Q, and sigmoid's scaled copies, as float32 literals
for lstmx/_activations_rational.pxd and lstmx/reference_quantized.py.

``python tools/rational_tanh.py --check`` evaluates every compiled variant's sigmoid and tanh
(and the NumPy reference's) at every float32 in [-20, 20] and prints their largest errors
against float64's, the bounds docs/quantization.md states.
"""
import argparse
import importlib

import numpy as np
from scipy.special import expit

EDGE, DEGREE = 9.0, 4


def fit(edge=EDGE, degree=DEGREE, iterations=200):
    x = np.unique(np.concatenate([np.linspace(0, edge, 20_000),
                                  edge * (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, 20_000)))]))
    t = np.tanh(x)
    u = (x / edge) ** 2  # scaled to [0, 1] for a well-conditioned system
    w, Q = np.ones_like(x), np.ones_like(x)
    for _ in range(iterations):
        # x P(u) - t Q(u) = 0 with Q's constant term 1, weighted towards the largest errors
        A = np.column_stack([x * u ** k for k in range(degree + 1)]
                            + [-t * u ** k for k in range(1, degree + 1)])
        scale = np.sqrt(w) / Q
        coef = np.linalg.lstsq(A * scale[:, None], t * scale, rcond=None)[0]
        p, q = coef[:degree + 1], np.r_[1.0, coef[degree + 1:]]
        P = np.polyval(p[::-1], u)
        Q = np.polyval(q[::-1], u)
        err = np.abs(x * P / Q - t)
        w = np.maximum(w * err / (w * err).sum(), 1e-12)
    powers = edge ** (2.0 * np.arange(degree + 1))
    return p / powers, q / powers, err.max()


def check():
    from lstmx import _dispatch
    from lstmx import reference_quantized as ref
    funcs = {"reference": lambda x: (ref.sigmoid(x), ref.tanh(x))}
    for variant in _dispatch.available():
        module = importlib.import_module(
            _dispatch.load(variant).__name__.replace("_kernels", "_quantized"))

        def run(x, module=module):
            sig, th = np.empty_like(x), np.empty_like(x)
            module.activations(x, sig, th)
            return sig, th
        funcs[variant] = run
    lo, hi = np.float32(0).view(np.int32), np.float32(20).view(np.int32)
    for name, run in funcs.items():
        es = et = 0.0
        for start in range(lo, hi, 1 << 22):
            a = np.arange(start, min(start + (1 << 22), hi), dtype=np.int32).view(np.float32)
            for x in (a, -a):
                sig, th = run(x)
                x64 = x.astype(np.float64)
                es = max(es, np.abs(sig - expit(x64)).max())
                et = max(et, np.abs(th - np.tanh(x64)).max())
        print(f"{name}: sigmoid {es:.3g}, tanh {et:.3g}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    if parser.parse_args().check:
        check()
    else:
        p, q, err = fit()
        print(f"largest error in float64: {err:.3g}")
        scale = 4.0 ** np.arange(DEGREE + 1)
        for name, c in [("tanh P", p), ("tanh Q", q), ("sigmoid P", p / (4 * scale)),
                        ("sigmoid Q", q / scale)]:
            print(f"{name}:", ", ".join(str(np.float32(v)) for v in c))
