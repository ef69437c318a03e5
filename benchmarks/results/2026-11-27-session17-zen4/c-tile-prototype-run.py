import sys; sys.path.insert(0,'.'); sys.path.insert(1,'/work/main')
import mt
from threadpoolctl import threadpool_limits
threadpool_limits(1)
for m,k,n in [(6,128,512),(12,128,512),(6,100,416),(6,300,1216),(6,64,512),(30,128,512),(6,512,512)]:
    reps = max(3, int(3e7/(m*k*n)))
    a=[];b=[]
    for i in range(6):
        a.append(mt.bench(m,k,n,reps,False)); b.append(mt.bench(m,k,n,reps,True))
    f=2*m*k*n/1e9
    print(f"{m:4d} {k:4d} {n:5d} packed {f/min(a):5.1f} GF/s   tile6 {f/min(b):5.1f}   gain {min(a)/min(b):.2f}")
