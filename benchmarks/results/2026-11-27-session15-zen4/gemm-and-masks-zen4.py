"""The tile GEMM's marginal rate against OpenBLAS, and the Philox mask fill, on one machine.

    python benchmarks/results/2026-11-27-session15-zen4/gemm-and-masks-zen4.py OUT.json

GEMM: lstmx._kernels_avx2.packed_product (B packed at each call) and numpy.matmul (SciPy's
or NumPy's OpenBLAS) on one thread, fastest of 1.5 s each, at 96, 192 and 384 rows; the
marginal rate is the extra multiply-adds from 96 to 384 rows over the extra time, which
leaves B's packing out. Masks: lstmx._random.bernoulli on 1 and 2 threads, fastest of 40.
"""
import json
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import lstmx._kernels_avx2 as K
from lstmx import _random
from lstmx._bench_machine import cpu_model, limit_threads


def best(fn, secs=1.5, at_least=5):
    fn()
    ts, end = [], time.perf_counter() + secs
    while time.perf_counter() < end or len(ts) < at_least:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(out_path):
    out = {"cpu": cpu_model(), "machine": platform.machine(), "gemm": [], "masks": []}
    limit_threads(1)
    rng = np.random.default_rng(0)
    for k, n in [(128, 1024), (256, 1024), (512, 2048), (1024, 4096)]:
        B = rng.standard_normal((k, n), dtype=np.float32)
        t = {}
        for m in (96, 192, 384):
            A = rng.standard_normal((m, k), dtype=np.float32)
            C = np.empty((m, n), np.float32)
            ours = best(lambda: K.packed_product(A, B, C, None, False, False, 1, 1))
            with threadpool_limits(1):
                blas = best(lambda: np.matmul(A, B, out=C))
            t[m] = (ours, blas)
        marg = [2 * 288 * k * n / (t[384][i] - t[96][i]) / 1e9 for i in (0, 1)]
        row = {"k": k, "n": n, "marginal_gflops_ours": marg[0], "marginal_gflops_openblas": marg[1],
               "gflops_at_384_ours": 2 * 384 * k * n / t[384][0] / 1e9,
               "gflops_at_384_openblas": 2 * 384 * k * n / t[384][1] / 1e9}
        out["gemm"].append(row)
        print(row, flush=True)
    for threads in (1, 2):
        limit_threads(threads)
        for size in (409600, 3276800):
            mask = np.empty(size, np.float32)
            s = best(lambda: _random.bernoulli(mask, 1, 2, 0.1, 1.0, True), secs=0.5, at_least=40)
            row = {"threads": threads, "elements": size, "ms": s * 1e3, "ns_per_element": s / size * 1e9}
            out["masks"].append(row)
            print(row, flush=True)
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
