"""A/B: old vs new lstmx package, interleaved rounds, median of per-round ratios old/new."""
import json, subprocess, sys, os, statistics
old, new = sys.argv[1], sys.argv[2]
shapes = json.loads(sys.argv[3]); rounds = int(sys.argv[4]); secs = sys.argv[5]
threads = os.environ.get("AB_THREADS", "1")
extra = sys.argv[6:]
env = dict(os.environ, OMP_NUM_THREADS=threads, LSTMX_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
res = {"old": [], "new": []}
for r in range(rounds):
    for tag, path in (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old)):
        p = subprocess.run([sys.executable, "/work/scratch/ab_worker.py", json.dumps(shapes), secs] + extra,
                           env=dict(env, PYTHONPATH=path), capture_output=True, text=True, cwd="/tmp")
        if p.returncode: print(p.stderr); sys.exit(1)
        res[tag].append(json.loads(p.stdout))
print(f"{'case':28s} {'old ms':>9s} {'new ms':>9s} {'old/new':>8s}")
for key in res["old"][0]:
    o = statistics.median(d[key] for d in res["old"]); n = statistics.median(d[key] for d in res["new"])
    ratios = [a[key] / b[key] for a, b in zip(res["old"], res["new"])]
    print(f"{key:28s} {o*1e3:9.3f} {n*1e3:9.3f} {statistics.median(ratios):8.3f}")
json.dump(res, open(os.environ.get("AB_JSON", "/tmp/ab_last.json"), "w"))
