"""lstmx against the NumPy reference, torch and onnxruntime on the bench's configurations.

Each class is parameterised by configuration (``lstmx._bench_impls.CONFIGS``: S, M, L, the
two-layer bidirectional M-bi2, I1, H1024 and T400), dtype and implementation;
``lstmx._bench_impls`` builds every implementation from the same seeded weights and inputs,
as ``python -m lstmx bench`` does. An implementation that cannot run (not installed,
onnxruntime in float64 or training) is skipped. Every library runs on ``common.THREADS``
threads. The shape sweep is in ``bench_sweep.py``.
"""
from .common import THREADS, Benchmark, safe_import

_bench = _machine = None
_import_error = "lstmx._bench_impls is not in this commit"
with safe_import():
    try:
        from lstmx import _bench_impls as _bench
        from lstmx import _bench_machine as _machine
    except ImportError as err:
        _import_error = f"cannot import lstmx._bench_impls: {err}"
        raise

CONFIGS = ["S", "M", "L", "M-bi2", "I1", "H1024", "T400"]
DTYPES = ["float32", "float64"]
ALL_IMPLS = ["lstmx", "reference", "torch", "onnxruntime"]
TRAINABLE_IMPLS = ["lstmx", "reference", "torch"]


def build(config, dtype, impl, training=False):
    """The implementation, threads limited; NotImplementedError (asv: skipped) if it cannot
    run here."""
    if _bench is None:
        raise NotImplementedError(_import_error)
    obj = _bench.build_impl(impl, config, dtype, seed=0, threads=THREADS)
    _machine.limit_threads(THREADS)
    if training and not obj.trainable:
        raise NotImplementedError(f"{impl} has no training")
    return obj


class Forward(Benchmark):
    """Inference over a batch of sequences from a zero state."""

    params = [CONFIGS, DTYPES, ALL_IMPLS]
    param_names = ["config", "dtype", "impl"]

    def setup(self, config, dtype, impl):
        self.impl = build(config, dtype, impl)

    def time_forward(self, config, dtype, impl):
        with self.impl.context("forward"):  # torch.no_grad() for torch
            self.impl.forward()

    def peakmem_forward(self, config, dtype, impl):
        with self.impl.context("forward"):
            self.impl.forward()


class Training(Benchmark):
    """The training forward pass (keeping what backward needs), and a whole step."""

    params = [CONFIGS, DTYPES, TRAINABLE_IMPLS]
    param_names = ["config", "dtype", "impl"]

    def setup(self, config, dtype, impl):
        self.impl = build(config, dtype, impl, training=True)

    def time_forward_train(self, config, dtype, impl):
        self.impl.forward_train()

    def time_train(self, config, dtype, impl):
        """Forward and backward of sum(y * dy)."""
        self.impl.train()

    def peakmem_train(self, config, dtype, impl):
        self.impl.train()


class Backward(Benchmark):
    """Backpropagation through time alone: the forward cache is made in setup."""

    params = [CONFIGS, DTYPES, TRAINABLE_IMPLS]
    param_names = ["config", "dtype", "impl"]

    def setup(self, config, dtype, impl):
        self.impl = build(config, dtype, impl, training=True)
        self.impl.prepare_backward()

    def time_backward(self, config, dtype, impl):
        self.impl.backward()


class CellStep(Benchmark):
    """One LSTMCell step at B=1, I=H=32 from a given (zero) state: per-call latency, Python
    overhead included."""

    params = [DTYPES, ALL_IMPLS]
    param_names = ["dtype", "impl"]

    def setup(self, dtype, impl):
        self.impl = build("cell", dtype, impl)

    def time_step(self, dtype, impl):
        with self.impl.context("forward"):
            self.impl.forward()


class CellTrainingStep(Benchmark):
    """One LSTMCell step forward and backward."""

    params = [DTYPES, TRAINABLE_IMPLS]
    param_names = ["dtype", "impl"]

    def setup(self, dtype, impl):
        self.impl = build("cell", dtype, impl, training=True)

    def time_step_train(self, dtype, impl):
        self.impl.train()


class ForwardError(Benchmark):
    """Relative max error of the forward output against the float64 reference."""

    params = [CONFIGS + ["cell"], DTYPES, ALL_IMPLS]
    param_names = ["config", "dtype", "impl"]
    unit = "relative error"

    def setup(self, config, dtype, impl):
        self.impl = build(config, dtype, impl)
        self.want, _ = _bench.float64_reference(self.impl, gradients=False)

    def track_forward_error(self, config, dtype, impl):
        return _bench.max_rel_error({"y": self.impl.output()}, {"y": self.want})


class GradientError(Benchmark):
    """Relative max error of dx and every parameter gradient against the float64
    reference."""

    params = [CONFIGS + ["cell"], DTYPES, TRAINABLE_IMPLS]
    param_names = ["config", "dtype", "impl"]
    unit = "relative error"

    def setup(self, config, dtype, impl):
        self.impl = build(config, dtype, impl, training=True)
        _, self.want = _bench.float64_reference(self.impl)

    def track_gradient_error(self, config, dtype, impl):
        return _bench.max_rel_error(self.impl.gradients(), self.want)


class FmaPeak(Benchmark):
    """This CPU's fused multiply-add peak (``lstmx._peak``), GFLOP/s, on one thread and on
    ``THREADS``: the yardstick of the flop rates of ``python -m lstmx bench``."""

    params = [DTYPES, sorted({1, THREADS})]
    param_names = ["dtype", "threads"]
    unit = "GFLOP/s"

    def setup(self, dtype, threads):
        if _machine is None:
            raise NotImplementedError(_import_error)
        self.peak = _machine.fma_peak(threads)
        if "error" in self.peak:
            raise NotImplementedError(self.peak["error"])

    def track_fma_peak(self, dtype, threads):
        return self.peak["gflops"][dtype][str(threads)]
