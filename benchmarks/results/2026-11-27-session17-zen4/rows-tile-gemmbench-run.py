import sys; sys.path.insert(0,'.'); sys.path.insert(1,'/work/main')
import gemmbench
from threadpoolctl import threadpool_limits
threadpool_limits(1)
shapes = [(2,128,512),(3,128,512),(4,128,512),(5,128,512),(8,128,512),(3,100,400),(9,100,400),(33,100,400),(3,256,1024)]
for m,k,n in shapes:
    reps = max(3, int(5e7/(m*k*n)))
    a=[];b=[]
    for i in range(8):
        a.append(gemmbench.bench(m,k,n,reps))
        b.append(gemmbench.bench_few(m,k,n,reps, int(sys.argv[1]) if len(sys.argv)>1 else 3)[0])
    f=2*m*k*n/1e9
    print(f"{m:4d} {k:4d} {n:5d} packed {min(a)*1e6:7.2f} us {f/min(a):5.1f} GF/s   few {min(b)*1e6:7.2f} us {f/min(b):5.1f}   gain {min(a)/min(b):.2f}")
