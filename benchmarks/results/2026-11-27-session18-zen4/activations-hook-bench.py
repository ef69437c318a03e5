"""ns an element of the kernels' own sigmoid and tanh (the activations test hook), float32 then float64; run from a checkout: PYTHONPATH=. python activations-hook-bench.py"""
import sys, time
import numpy as np
from lstmx._dispatch import kernels
x = np.random.default_rng(0).standard_normal(4096).astype(np.float32) * 4
s = np.empty_like(x); t = np.empty_like(x)
xd = x.astype(np.float64); sd = np.empty_like(xd); td = np.empty_like(xd)
def best(f):
    b = 1e9
    for _ in range(3000):
        t0 = time.perf_counter(); f(); b = min(b, time.perf_counter() - t0)
    return b / len(x) * 1e9
print(f"{best(lambda: kernels.activations(x, s, t)):.3f} {best(lambda: kernels.activations(xd, sd, td)):.3f}")
