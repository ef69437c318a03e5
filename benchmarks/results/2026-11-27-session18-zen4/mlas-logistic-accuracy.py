"""The relative accuracy of MLAS's logistic (onnxruntime's sigmoid: an odd rational function
of x plus 0.5 on [-18, 18], constants from onnxruntime/core/mlas/lib/logistic.cpp), evaluated
in float32 as its kernels do, against the exact sigmoid: python mlas-logistic-accuracy.py"""
import numpy as np
from scipy.special import expit

f = np.float32
ALPHA = [4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05,
         8.51377133304701e-03, 2.48287947061529e-01]
BETA = [6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06,
        1.70198817374094e-03, 1.16817656904453e-01, 9.93151921023180e-01]


def mlas_logistic(x):
    x = np.clip(x, f(-18), f(18)).astype(f)
    x2 = (x * x).astype(f)
    p = f(ALPHA[0])
    for c in ALPHA[1:]:
        p = (p * x2 + f(c)).astype(f)
    p = (p * x).astype(f)
    q = f(BETA[0])
    for c in BETA[1:]:
        q = (q * x2 + f(c)).astype(f)
    return np.clip((p / q + f(0.5)).astype(f), 0, 1)


x = np.linspace(-20, 20, 2_000_001).astype(f)
exact = expit(x.astype(np.float64))
got = mlas_logistic(x).astype(np.float64)
ulp = np.spacing(exact.astype(f)).astype(np.float64)
for lo, hi in [(-20, -10), (-10, -5), (-5, -1), (-1, 1), (1, 20)]:
    m = (x >= lo) & (x < hi)
    print(f"x in [{lo}, {hi}): max {np.max(np.abs(got[m] - exact[m]) / ulp[m]):.3g} ulp, "
          f"max relative {np.max(np.abs(got[m] - exact[m]) / exact[m]):.2e}, "
          f"max absolute {np.max(np.abs(got[m] - exact[m])):.2e}")
