import numpy as np, sys, traceback
sys.path.insert(0, ".")
import lstmx
from lstmx import _workspace
from lstmx._bench_machine import limit_threads
limit_threads(2)
from lstmx._bench_impls import ALL_CONFIGS, LstmxImpl
o = LstmxImpl(ALL_CONFIGS["L"], np.float32, 0, 2)
orig = np.empty
sites = {}
real_empty = _workspace.np.empty
class NP:
    def __getattr__(self, k): return getattr(np, k)
    def empty(self, shape, dtype=float, *a, **kw):
        out = real_empty(shape, dtype, *a, **kw)
        if dtype == np.uint8 and isinstance(shape, int) and shape >= (1<<20):
            st = [f"{f.filename.split('/')[-1]}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-1] if "lstmx" in f.filename and "_workspace" not in f.filename]
            print("%.3f MiB" % (shape/2**20), " <- ".join(reversed(st[-4:])))
        return out
_workspace.np = NP()
o.train()
