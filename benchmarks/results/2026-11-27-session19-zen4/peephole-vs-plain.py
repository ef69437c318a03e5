"""Peephole vs plain training, interleaved, fastest of N, in one process."""
import sys, time, numpy as np
sys.path.insert(0, ".")
from threadpoolctl import threadpool_limits
import lstmx
from lstmx._bench_impls import ALL_CONFIGS, LstmxImpl, LstmxPeepholeImpl
threads = int(sys.argv[1]); names = sys.argv[2].split(","); rounds = int(sys.argv[3])
from lstmx._bench_machine import limit_threads; limit_threads(threads)
for name in names:
    cfg = ALL_CONFIGS[name]
    a = LstmxImpl(cfg, np.float32, 0, threads); b = LstmxPeepholeImpl(cfg, np.float32, 0, threads)
    ta, tb = [], []
    reps = max(1, int(0.05 / max(1e-6, (lambda t0: (a.train(), time.perf_counter() - t0)[1])(time.perf_counter()))))
    for r in range(rounds):
        for impl, ts in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            for _ in range(reps): impl.train()
            ts.append((time.perf_counter() - t0) / reps)
    print(f"{name}: plain {min(ta)*1e3:.4f} ms  peep {min(tb)*1e3:.4f} ms  ratio {min(tb)/min(ta):.3f}  (median {np.median(tb)/np.median(ta):.3f})", flush=True)
