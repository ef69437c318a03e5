"""Per-call forward times after a pause (GAP seconds) or back to back (0), first three calls of each round: python pause-vs-back-to-back.py THREADS T,B,I,H IMPL GAP ROUNDS"""
"""Per-call times after a pause vs back to back: python gap.py THREADS 'T,B,I,H' impl GAP N"""
import sys, time, statistics
sys.path.insert(0, '/work/main')
from lstmx._bench_machine import limit_threads
th = int(sys.argv[1]); limit_threads(th)
from lstmx._bench_impls import build_impl, BenchConfig
T, B, I, H = map(int, sys.argv[2].split(","))
o = build_impl(sys.argv[3], BenchConfig("x", T, B, I, H), threads=th)
import os
BUSY = os.environ.get("BUSY")
def busy(s):
    e = time.perf_counter() + s
    while time.perf_counter() < e: pass
gap = float(sys.argv[4]); n = int(sys.argv[5])
for _ in range(5): o.forward()
first, second, third = [], [], []
for r in range(n):
    (time.sleep(gap) if not BUSY else busy(gap))
    for lst in (first, second, third):
        t0 = time.perf_counter(); o.forward(); lst.append(time.perf_counter() - t0)
f = lambda l: f"{min(l)*1e3:.2f}/{statistics.median(l)*1e3:.2f}"
print(f"{sys.argv[3]:12} gap {gap}: 1st {f(first)}  2nd {f(second)}  3rd {f(third)} ms (min/med)")
