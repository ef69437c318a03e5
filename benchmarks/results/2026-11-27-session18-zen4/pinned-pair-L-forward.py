"""L forward (T=100 B=64 I=512 H=512) on one thread for SECONDS: python pinned-pair-L-forward.py SECONDS LABEL; run under taskset alone and two side by side."""
import sys, time; sys.path.insert(0,'/work/main')
from lstmx._bench_machine import limit_threads
limit_threads(1)
import numpy as np, lstmx
m=lstmx.LSTM(512,512,seed=0); x=np.random.default_rng(1).standard_normal((100,64,512)).astype(np.float32)
m(x); ts=[]
t_end=time.time()+float(sys.argv[1])
while time.time()<t_end:
    t=time.perf_counter(); m(x); ts.append(time.perf_counter()-t)
print(f"{sys.argv[2]}: n={len(ts)} min {min(ts)*1e3:.0f} med {np.median(ts)*1e3:.0f} ms")
