"""In one process, interleaved: the AVX2 variant against the baseline variant (BLAS) at short
sequences. TS=1,2 python short-seq-vs-baseline.py THREADS ROUNDS OUT.json (TS: the lengths)"""
import json, sys, time
import numpy as np
from lstmx._bench_machine import limit_threads
import lstmx
from lstmx import _dispatch, _engine

threads, rounds, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
limit_threads(threads)
shapes = [(T, B, I, H) for (B, I, H) in [(8, 32, 100), (32, 128, 256), (4, 64, 512), (64, 256, 1024)]
          for T in [int(t) for t in __import__("os").environ.get("TS", "1,2,3,4,6,8,16").split(",")]]
variants = {v: _dispatch.load(v) for v in ("avx2", "baseline")}
res = {}
for T, B, I, H in shapes:
    m = lstmx.LSTM(I, H, seed=0)
    x = np.random.default_rng(1).standard_normal((T, B, I), dtype=np.float32)
    dy = None
    best = {}
    for r in range(rounds):
        for v, k in variants.items():
            _engine._kernels = k
            for mode in ("fwd", "train"):
                if mode == "fwd":
                    fn = lambda: m(x)
                else:
                    def fn():
                        y, _, cache = m.forward_train(x)
                        m.backward(cache, np.ones_like(y))
                fn()
                ts = []
                t_end = time.perf_counter() + 0.05
                while time.perf_counter() < t_end or len(ts) < 3:
                    t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
                key = (v, mode)
                best.setdefault(key, []).append(min(ts))
    row = {}
    for mode in ("fwd", "train"):
        a = np.array(best[("avx2", mode)]); b = np.array(best[("baseline", mode)])
        row[mode] = {"avx2_min": a.min(), "baseline_min": b.min(),
                     "ratio_min": b.min() / a.min(), "ratio_median": float(np.median(b / a))}
    res[f"T{T} B{B} I{I} H{H}"] = row
    print(f"T{T:3d} B{B:3d} I{I:4d} H{H:5d}  " + "  ".join(
        f"{mode} base/avx2 {row[mode]['ratio_min']:.2f} ({row[mode]['ratio_median']:.2f}) "
        f"{row[mode]['avx2_min']*1e6:8.0f}us" for mode in row), flush=True)
json.dump({"threads": threads, "rounds": rounds, "results": res}, open(out, "w"), indent=1)
