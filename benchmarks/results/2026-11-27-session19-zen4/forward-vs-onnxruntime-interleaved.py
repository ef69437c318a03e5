"""lstmx vs onnxruntime (and torch) forward, interleaved in one process: fastest and median of N rounds."""
import sys, time, numpy as np
sys.path.insert(0, ".")
from lstmx._bench_machine import limit_threads
threads = int(sys.argv[1]); names = sys.argv[2].split(","); rounds = int(sys.argv[3])
limit_threads(threads)
from lstmx._bench_impls import ALL_CONFIGS, build_impl
for name in names:
    cfg = ALL_CONFIGS[name]
    impls = {n: build_impl(n, cfg, np.float32, 0, threads) for n in ("lstmx", "onnxruntime", "torch")}
    limit_threads(threads)
    ts = {n: [] for n in impls}
    for n, o in impls.items():
        with o.context("forward"):
            o.forward()
    for r in range(rounds):
        for n, o in (impls.items() if r % 2 == 0 else reversed(impls.items())):
            with o.context("forward"):
                t0 = time.perf_counter(); o.forward(); ts[n].append(time.perf_counter() - t0)
    line = f"{name}: " + "  ".join(f"{n} min {min(v)*1e3:.3f} med {np.median(v)*1e3:.3f} ms" for n, v in ts.items())
    a = np.array(ts["lstmx"]); print(line + f"  | ort/lstmx min {min(ts['onnxruntime'])/a.min():.3f} med {np.median(np.array(ts['onnxruntime'])/a):.3f}  torch/lstmx min {min(ts['torch'])/a.min():.3f} med {np.median(np.array(ts['torch'])/a):.3f}", flush=True)
