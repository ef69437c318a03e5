"""Alternating-process A/B: python ab.py OLD_DIR NEW_DIR SHAPES_JSON ROUNDS SECS

SHAPES_JSON: list of [T,B,I,H]. Env: AB_THREADS (2), AB_MODES ("fwd,train"), AB_STAT (min|median),
AB_KW (JSON kwargs for LSTM), AB_JSON (output path), AB_NUM_LAYERS.
Each round runs OLD then NEW (order alternates per round) in fresh processes; each process times
every shape for SECS seconds per mode and reports its best (or median) time.
"""
import json, os, subprocess, sys, statistics

CHILD = r'''
import json, os, sys, time
import numpy as np
from lstmx._bench_machine import limit_threads
import lstmx
threads = int(os.environ.get("AB_THREADS", "2"))
limit_threads(threads)
shapes = json.loads(sys.argv[1]); secs = float(sys.argv[2])
modes = os.environ.get("AB_MODES", "fwd,train").split(",")
kw = json.loads(os.environ.get("AB_KW", "{}"))
stat = os.environ.get("AB_STAT", "min")
out = {}
for T, B, I, H in shapes:
    lstm = lstmx.LSTM(I, H, seed=0, **kw)
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(kw.get("dtype", "float32"))
    for mode in modes:
        if mode == "fwd":
            fn = lambda: lstm(x)
        elif mode == "ftrain":
            fn = lambda: lstm.forward_train(x, rng=0)
        else:
            y, _, cache = lstm.forward_train(x, rng=0)
            dy = np.ones_like(y)
            def fn():
                y, _, cache = lstm.forward_train(x, rng=0)
                lstm.backward(cache, dy)
        fn()
        ts = []
        t_end = time.perf_counter() + secs
        while time.perf_counter() < t_end or len(ts) < 3:
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        ts.sort()
        out[f"{T},{B},{I},{H}/{mode}"] = ts[0] if stat == "min" else ts[len(ts) // 2]
print(json.dumps(out))
'''


def run(d, shapes, secs, kw=None):
    env = dict(os.environ, PYTHONPATH=d)
    if kw is not None:
        env["AB_KW"] = kw
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(shapes), str(secs)], env=env,
                       capture_output=True, text=True, cwd="/tmp")
    if r.returncode:
        sys.exit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    old, new, shapes, rounds, secs = sys.argv[1:6]
    shapes = json.loads(shapes) if shapes.startswith("[") else json.load(open(shapes))
    rounds, secs = int(rounds), float(secs)
    res = {"old": [], "new": []}
    for r in range(rounds):
        order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
        for name, d in order:
            res[name].append(run(d, shapes, secs, os.environ.get(f"AB_KW_{name.upper()}")))
        ratios = {k: res["old"][-1][k] / res["new"][-1][k] for k in res["old"][-1]}
        print(f"round {r}: " + " ".join(f"{k}={v:.3f}" for k, v in ratios.items()), flush=True)
    print("summary (old/new of the per-process best; >1 means new is faster):")
    summ = {}
    for k in res["old"][0]:
        o = min(x[k] for x in res["old"]); n = min(x[k] for x in res["new"])
        om = statistics.median(x[k] for x in res["old"]); nm = statistics.median(x[k] for x in res["new"])
        summ[k] = {"old_min": o, "new_min": n, "ratio_min": o / n, "ratio_median": om / nm}
        print(f"  {k:28s} old {o*1e3:8.3f} ms new {n*1e3:8.3f} ms  min-ratio {o/n:.3f}  median-ratio {om/nm:.3f}")
    if os.environ.get("AB_JSON"):
        json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("AB_") or k == "LSTMX_KERNELS"},
                   "rounds": res, "summary": summ}, open(os.environ["AB_JSON"], "w"), indent=1)


main()
