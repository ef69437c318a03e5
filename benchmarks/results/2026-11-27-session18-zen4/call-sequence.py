"""Per-call forward times in one process, back to back: python call-sequence.py THREADS T,B,I,H IMPL CALLS"""
import sys, time
sys.path.insert(0, '/work/main')
from lstmx._bench_machine import limit_threads
th = int(sys.argv[1]); limit_threads(th)
from lstmx._bench_impls import build_impl, BenchConfig
T, B, I, H = map(int, sys.argv[2].split(","))
o = build_impl(sys.argv[3], BenchConfig("x", T, B, I, H), threads=th)
for _ in range(5): o.forward()
ts = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter(); o.forward(); ts.append((time.perf_counter() - t0) * 1e3)
print(sys.argv[3], " ".join(f"{t:.1f}" for t in ts))
