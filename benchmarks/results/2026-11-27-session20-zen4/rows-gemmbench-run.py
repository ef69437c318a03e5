"""The packed GEMM alone, builds side by side: python rows-gemmbench-run.py ROUNDS MOD1,MOD2 MxKxN,...

Each MOD is rows-gemmbench.pyx built against a tree (rows-gemmbench-setup.py NAME ROOT);
rounds alternate the builds' order; prints GFLOP/s of each build's fastest call."""
import sys, statistics, importlib; sys.path.insert(0,'.')
from threadpoolctl import threadpool_limits
threadpool_limits(1)
names=sys.argv[2].split(","); mods=[importlib.import_module(n) for n in names]
shapes=[tuple(map(int,s.split("x"))) for s in sys.argv[3].split(",")]
res={s:[[] for _ in mods] for s in shapes}
for rnd in range(int(sys.argv[1])):
    for s in shapes:
        m,k,n=s; reps=max(2,int(3e7/(m*k*n)))
        order=list(range(len(mods)))
        if rnd%2: order.reverse()
        for i in order:
            t,err=mods[i].bench(m,k,n,reps,0)
            assert err<1e-2
            res[s][i].append(t)
for s,ts in res.items():
    m,k,n=s; f=2*m*k*n/1e9
    print(f"{s}: " + "  ".join(f"{nm} {f/min(t):5.1f}" for nm,t in zip(names,ts)), flush=True)
