"""Side-by-side timing of lstmx and torch at given shapes (one thread), for the shape-cliff table of docs/performance.md."""
import sys, time, json, os
import numpy as np
import torch
from threadpoolctl import threadpool_limits
import lstmx
from lstmx._dispatch import variant

def timeit(f, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return ts

def bench(T, B, I, H, threads, train, rounds=7):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    m = lstmx.LSTM(I, H, seed=0)
    tm = torch.nn.LSTM(I, H)
    xt = torch.from_numpy(x)
    dy = np.ones((T, B, H), np.float32)
    if train:
        def fl():
            y, _, cache = m.forward_train(x); m.backward(cache, dy)
        xt.requires_grad_(False)
        def ft():
            tm.zero_grad(); y, _ = tm(xt); y.backward(torch.from_numpy(dy))
    else:
        fl = lambda: m(x)
        def ft():
            with torch.no_grad(): tm(xt)
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        fl(); ft()
        # calibrate reps to ~50 ms per sample
        t = min(timeit(fl, 2)); reps = max(1, int(0.05 / max(t, 1e-7)))
        rl, rt, ratios = [], [], []
        for _ in range(rounds):
            a = min(timeit(fl, reps)); b = min(timeit(ft, reps))
            rl.append(a); rt.append(b); ratios.append(b / a)
    return np.median(rl), np.median(rt), np.median(ratios)

if __name__ == "__main__":
    shapes = json.loads(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    train = len(sys.argv) > 3 and sys.argv[3] == "train"
    print(f"variant={variant} threads={threads} train={train}")
    out = os.environ.get("CLIFF_JSON")
    rows = []
    for T, B, I, H in shapes:
        a, b, r = bench(T, B, I, H, threads, train)
        rows.append(dict(T=T, B=B, I=I, H=H, lstmx_s=a, torch_s=b, torch_over_lstmx=r))
        print(f"T={T:4d} B={B:3d} I={I:4d} H={H:4d}  lstmx {a*1e3:8.3f} ms  torch {b*1e3:8.3f} ms  torch/lstmx {r:5.2f}", flush=True)
    if out:
        import platform, subprocess
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
        prev = json.load(open(out)) if os.path.exists(out) else []
        prev.append(dict(lstmx=os.path.dirname(lstmx.__file__), variant=variant, threads=threads,
                         train=train, cpu=cpu, rounds=7, rows=rows))
        json.dump(prev, open(out, "w"), indent=1)
