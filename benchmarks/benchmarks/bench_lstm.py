"""lstmx against the NumPy reference, torch and onnxruntime on the issue's configurations.

Each class is parameterised by configuration (``lstmx._bench.CONFIGS``: S, M, L and the
two-layer bidirectional M-bi2), dtype and implementation; ``lstmx._bench`` builds every
implementation from the same seeded weights and inputs, as ``python -m lstmx bench`` does.
An implementation that cannot run (not installed, onnxruntime in float64 or training) is
skipped. Every library runs on ``common.THREADS`` threads.
"""
from .common import THREADS, Benchmark, safe_import

_bench = None
_import_error = "lstmx._bench is not in this commit"
with safe_import():
    try:
        from lstmx import _bench
    except ImportError as err:
        _import_error = f"cannot import lstmx._bench: {err}"
        raise

CONFIGS = ["S", "M", "L", "M-bi2"]
DTYPES = ["float32", "float64"]
ALL_IMPLS = ["lstmx", "reference", "torch", "onnxruntime"]
TRAINABLE_IMPLS = ["lstmx", "reference", "torch"]


def build(config, dtype, impl, training=False):
    """The implementation, threads limited; NotImplementedError (asv: skipped) if it cannot
    run here."""
    if _bench is None:
        raise NotImplementedError(_import_error)
    obj = _bench.build_impl(impl, config, dtype, seed=0, threads=THREADS)
    _bench.limit_threads(THREADS)
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
        self.impl.forward()

    def peakmem_forward(self, config, dtype, impl):
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


class GemmCeiling(Benchmark):
    """scipy's gemm at the input-projection shape (T*B, I) x (I, 4H): the rate that the
    forward pass's matrix products cannot beat."""

    params = [CONFIGS, DTYPES]
    param_names = ["config", "dtype"]

    def setup(self, config, dtype):
        if _bench is None:
            raise NotImplementedError(_import_error)
        _bench.limit_threads(THREADS)
        self.gemm, _, _ = _bench.gemm_op(_bench.CONFIGS[config], dtype)

    def time_gemm(self, config, dtype):
        self.gemm()
