import sys, statistics, importlib; sys.path.insert(0,'.')
from threadpoolctl import threadpool_limits
threadpool_limits(1)
names=sys.argv[2].split(","); mods=[importlib.import_module(n) for n in names]
shapes=[(3,300,1200),(2,256,1024),(3,64,512),(32,256,1024),(8,100,400),(7,200,800),(2,128,512)]
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
