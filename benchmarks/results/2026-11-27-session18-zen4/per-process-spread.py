"""Per-process spread of back-to-back forward calls, lstmx and onnxruntime alternating in
fresh processes: python per-process-spread.py THREADS 'T,B,I,H' PROCESSES CALLS OUT.json"""
import json, subprocess, sys

CHILD = r'''
import json, sys, time, statistics
sys.path.insert(0, ".")
from lstmx._bench_machine import limit_threads
th = int(sys.argv[1]); limit_threads(th)
from lstmx._bench_impls import build_impl, BenchConfig
T, B, I, H = map(int, sys.argv[2].split(","))
o = build_impl(sys.argv[3], BenchConfig("x", T, B, I, H), threads=th)
for _ in range(5):
    o.forward()
ts = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter(); o.forward(); ts.append(time.perf_counter() - t0)
print(json.dumps({"min": min(ts), "median": statistics.median(ts)}))
'''
threads, shape, procs, calls, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
res = {"threads": int(threads), "shape": shape, "calls": int(calls), "lstmx": [], "onnxruntime": []}
for p in range(procs):
    for impl in (("lstmx", "onnxruntime") if p % 2 == 0 else ("onnxruntime", "lstmx")):
        r = json.loads(subprocess.run([sys.executable, "-c", CHILD, threads, shape, impl, calls],
                                      capture_output=True, text=True, check=True).stdout)
        res[impl].append(r)
        print(f"{impl:12} min {r['min']*1e3:6.2f} ms  median {r['median']*1e3:6.2f} ms", flush=True)
json.dump(res, open(out, "w"), indent=1)
