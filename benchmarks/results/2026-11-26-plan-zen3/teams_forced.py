"""Each shape timed with the threaded drivers forced to a team of two and to one thread
(plan costs pinned), on 2 OpenMP threads, 7 interleaved rounds; then the plan measured.
Usage: python teams_forced.py OUT.json (from a build of lstmx at the commit that added it)."""
import time, json, sys, numpy as np
import lstmx
from lstmx._dispatch import kernels
from threadpoolctl import threadpool_limits
cfgs = {"T400": (400, 8, 64, 128), "I1": (200, 32, 1, 64), "M": (50, 32, 128, 256), "H100B8": (100, 8, 64, 100), "L": (100, 64, 512, 512)}
def costs(b): return {n: {"barrier_s": 0.0 if n == 1 else b, "fma_s": 1e-11} for n in (1, 2)}
out = {}
for name, (T, B, I, H) in cfgs.items():
    m = lstmx.LSTM(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
    fns = {"fwd": lambda: m(x), "train": lambda: m.backward(m.forward_train(x)[2], np.ones((T, B, H), np.float32))}
    res = {}
    with threadpool_limits(2):
        for mode, f in fns.items():
            ts = {0: [], 1: []}
            for r in range(7):
                for b in (0, 1):
                    kernels.set_plan_costs(costs(0.0 if b == 0 else 1.0)); f()
                    t = time.perf_counter(); f(); ts[b].append(time.perf_counter() - t)
            res[mode] = {"team2_s": float(np.median(ts[0])), "team1_s": float(np.median(ts[1])),
                         "ratio_team1_over_team2": float(np.median(np.array(ts[1]) / np.array(ts[0])))}
        kernels.forget_plan_costs(); m(x)
        res["measured"] = kernels.plan_costs()
        res["planned_team"] = kernels.plan_team(B * 4 * H * (I + H), 2)
    out[name] = res
    print(name, json.dumps(res), flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
