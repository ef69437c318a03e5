import json, sys, time, os
import numpy as np
import lstmx
shapes = json.loads(sys.argv[1]); secs = float(sys.argv[2]); dtype = np.float32 if len(sys.argv) < 4 else np.dtype(sys.argv[3]).type
out = {}
for name, (T, B, I, H) in shapes.items():
    m = lstmx.LSTM(I, H, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    def fwd():
        m(x)
    def train():
        y, _, cache = m.forward_train(x)
        m.backward(cache, np.ones_like(y))
    for mode, fn in (("forward", fwd), ("train", train))[int(os.environ.get("AB_FIRST", "0")):int(os.environ.get("AB_MODES", "2"))]:
        fn()
        best = []
        t_end = time.perf_counter() + secs
        while time.perf_counter() < t_end or len(best) < 3:
            t0 = time.perf_counter(); fn(); best.append(time.perf_counter() - t0)
        out[f"{name} {mode}"] = float(np.min(best) if os.environ.get("AB_STAT") == "min" else np.median(best))
print(json.dumps(out))
