"""Interleaved in-process forward: python vs.py THREADS ROUNDS 'T,B,I,H;...' [impls]"""
import sys, time, json, statistics
sys.path.insert(0, '/work/main')
import numpy as np
from lstmx._bench_machine import limit_threads
th = int(sys.argv[1]); rounds = int(sys.argv[2])
limit_threads(th)
from lstmx._bench_impls import build_impl, BenchConfig
impls = sys.argv[4].split(",") if len(sys.argv) > 4 else ["lstmx", "onnxruntime", "torch"]
res = {}
for spec in sys.argv[3].split(";"):
    T, B, I, H = map(int, spec.split(","))
    cfg = BenchConfig("x", T, B, I, H)
    objs = {n: build_impl(n, cfg, threads=th) for n in impls}
    for o in objs.values(): o.forward(); o.forward()
    per = max(1, int(0.05 / max(1e-5, min(_t for _t in [0.01]))))
    times = {n: [] for n in impls}
    for r in range(rounds):
        for n, o in objs.items():
            with o.context("forward"):
                t0 = time.perf_counter(); o.forward(); times[n].append(time.perf_counter() - t0)
    line = f"{spec:>16}"
    for n in impls:
        line += f"  {n} {min(times[n])*1e3:8.3f}/{statistics.median(times[n])*1e3:8.3f}"
    for n in impls[1:]:
        ratios = [b / a for a, b in zip(times[impls[0]], times[n])]
        line += f"  {n}/{impls[0]} min {min(times[n])/min(times[impls[0]]):.2f} med {statistics.median(ratios):.2f}"
    print(line, flush=True)
    res[spec] = times
if len(sys.argv) > 5:
    json.dump(res, open(sys.argv[5], "w"))
