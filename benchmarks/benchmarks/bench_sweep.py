"""The shape sweep of ``python -m lstmx bench --sweep`` in small: lstmx, torch and lstmx on its
baseline kernel variant, forward and training, one axis at a time around the sweep's base
shape (``lstmx._bench_sweep.ASV_AXES``).

asv tracks each shape over commits, so a cliff that a change brings shows as a step.
"""
from .common import THREADS, Benchmark, safe_import

_sweep = _bench = _machine = None
_import_error = "lstmx._bench_sweep is not in this commit"
with safe_import():
    try:
        from lstmx import _bench_impls as _bench
        from lstmx import _bench_machine as _machine
        from lstmx import _bench_sweep as _sweep
    except ImportError as err:
        _import_error = f"cannot import lstmx._bench_sweep: {err}"
        raise

SHAPES = ({c.name: c for _, _, c in _sweep.sweep_configs(axes=_sweep.ASV_AXES)}
          if _sweep is not None else {})
IMPLS = ["lstmx", "torch", "lstmx-baseline"]


class Sweep(Benchmark):
    """float32, zero initial state; the shape is T<T>-B<B>-I<I>-H<H>."""

    params = [list(SHAPES) or ["n/a"], IMPLS]
    param_names = ["shape", "impl"]

    def setup(self, shape, impl):
        if _sweep is None:
            raise NotImplementedError(_import_error)
        self.impl = _bench.build_impl(impl, SHAPES[shape], "float32", seed=0, threads=THREADS)
        _machine.limit_threads(THREADS)

    def time_forward(self, shape, impl):
        with self.impl.context("forward"):
            self.impl.forward()

    def time_train(self, shape, impl):
        """Forward and backward of sum(y * dy)."""
        with self.impl.context("train"):
            self.impl.train()
