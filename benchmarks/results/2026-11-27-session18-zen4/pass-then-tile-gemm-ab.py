import sys, statistics; sys.path.insert(0,'.')
import gb2, gb2b
from threadpoolctl import threadpool_limits
threadpool_limits(1)
shapes=[(96,256,1024),(32,256,1024),(128,512,2048),(96,1024,4096),(64,128,512),(8,128,512),(1600,128,1024)]
res={s:([],[]) for s in shapes}
for rnd in range(int(sys.argv[1])):
    for s in shapes:
        m,k,n=s; reps=max(2,int(3e7/(m*k*n)))
        mods=(gb2,gb2b) if rnd%2==0 else (gb2b,gb2)
        for mod in mods:
            res[s][0 if mod is gb2 else 1].append(mod.bench(m,k,n,reps,0))
for s,(a,b) in res.items():
    m,k,n=s; f=2*m*k*n/1e9
    print(f"{s}: tile-pass {f/min(a):5.1f} GF/s  pass-tile {f/min(b):5.1f}  old/new min {min(a)/min(b):.3f} median {statistics.median([x/y for x,y in zip(a,b)]):.3f}", flush=True)
