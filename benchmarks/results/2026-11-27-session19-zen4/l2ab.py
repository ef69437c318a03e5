"""Alternating processes, forward and training fastest-of, with l2_cache_bytes patched:
python l2ab.py THREADS ROUNDS 'L2a,L2b,...' '[[T,B,I,H],...]' [out.json]"""
import json, subprocess, sys, statistics
CHILD = r'''
import sys, json, time
sys.path.insert(0, "/work/main")
import lstmx._cpu as cpu
l2 = int(sys.argv[2])
if l2 > 0:
    cpu.l2_cache_bytes = lambda: l2
from lstmx._bench_machine import limit_threads
limit_threads(int(sys.argv[1]))
import numpy as np, lstmx
out = {}
for T, B, I, H in json.loads(sys.argv[3]):
    m = lstmx.LSTM(I, H, seed=0)
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    for mode in ("fwd", "train"):
        if mode == "fwd":
            fn = lambda: m(x)
        else:
            def fn():
                y, st, c = m.forward_train(x)
                m.backward(c, np.ones_like(y))
        fn()
        best, t_end = 1e9, time.perf_counter() + 0.7
        while time.perf_counter() < t_end:
            t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
        out[f"{T},{B},{I},{H}/{mode}"] = best
print(json.dumps(out))
'''
th, rounds, l2s, shapes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
res = {l2: [] for l2 in l2s}
for r in range(rounds):
    order = l2s if r % 2 == 0 else l2s[::-1]
    for l2 in order:
        res[l2].append(json.loads(subprocess.run([sys.executable, "-c", CHILD, th, l2, shapes],
                        capture_output=True, text=True, check=True, cwd="/work/main").stdout))
keys = list(res[l2s[0]][0])
summary = {}
for k in keys:
    base = [d[k] for d in res[l2s[0]]]
    line = f"{k:22} {l2s[0]}: {min(base)*1e3:8.3f} ms"
    for l2 in l2s[1:]:
        v = [d[k] for d in res[l2]]
        ratio = min(base) / min(v); med = statistics.median([a / b for a, b in zip(base, v)])
        line += f" | {l2}: {min(v)*1e3:8.3f} ms min-ratio {ratio:.3f} med {med:.3f}"
        summary[f"{k} {l2}"] = {"min_ratio": ratio, "median_ratio": med}
    print(line)
if len(sys.argv) > 5:
    json.dump({"argv": sys.argv, "rounds": res, "summary": summary}, open(sys.argv[5], "w"), indent=1)
