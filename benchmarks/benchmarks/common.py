"""asv benchmark utilities, as SciPy's ``benchmarks/benchmarks/common.py``."""
from contextlib import contextmanager

# The bench's setting: every library gets 2 threads (the cores of a small CI machine).
THREADS = 2


class Benchmark:
    """Base class of the lstmx benchmarks: the options they share.

    A large configuration with the NumPy reference takes seconds per call; the default asv
    timeout (60 s) would cut its repeats short. torch's first calls compile oneDNN kernels
    (over a second on the first): the warm-up lets them finish before timing starts.
    """

    timeout = 600.0
    warmup_time = 1.0


@contextmanager
def safe_import():
    """Import optional things; when one is missing the benchmarks that need it are skipped.

    Use as ``with safe_import(): from lstmx import _bench_impls`` after binding the name to None:
    a commit without the module (or an environment without a library) then leaves None, and
    the benchmark's ``setup`` raises ``NotImplementedError``, which asv reports as skipped.
    """
    try:
        yield
    except ImportError:
        pass
