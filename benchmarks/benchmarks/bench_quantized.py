"""Reduced-precision inference: lstmx int8 and bfloat16 against float32 and onnxruntime's int8.

The configurations of ``python -m lstmx bench --quantized`` (M, L and H1024: T20 B128 I256
H1024), float32 in and out, every library on ``common.THREADS`` threads. The implementations
(``lstmx._bench_quantized``): ``lstmx`` (float32), ``lstmx-int8`` and ``lstmx-bf16``
(``LSTM.quantize``), ``onnxruntime-int8`` (``quantize_dynamic`` of lstmx's ONNX graph:
``DynamicQuantizeLSTM``) and ``onnxruntime-int8r`` (the same with ``reduce_range=True``).
``track_max_abs_error`` is each one's error against lstmx's float32 output.
"""
import numpy as np

from .common import THREADS, Benchmark, safe_import

_bench = _machine = _quantized = None
_import_error = "lstmx._bench_quantized is not in this commit"
with safe_import():
    try:
        from lstmx import _bench_impls as _bench
        from lstmx import _bench_machine as _machine
        from lstmx import _bench_quantized as _quantized
    except ImportError as err:
        _import_error = f"cannot import lstmx._bench_quantized: {err}"
        raise

CONFIGS = ["M", "L", "H1024"]
IMPLS = ["lstmx", "lstmx-int8", "lstmx-bf16", "onnxruntime-int8", "onnxruntime-int8r"]


def build(config, impl):
    """The float32 implementation, threads limited; NotImplementedError (asv: skipped) if
    it cannot run here."""
    if _quantized is None:
        raise NotImplementedError(_import_error)
    obj = _bench.build_impl(impl, config, np.float32, seed=0, threads=THREADS)
    _machine.limit_threads(THREADS)
    return obj


class QuantizedForward(Benchmark):
    """Inference over a batch of sequences from a zero state."""

    params = [CONFIGS, IMPLS]
    param_names = ["config", "impl"]

    def setup(self, config, impl):
        self.impl = build(config, impl)

    def time_forward(self, config, impl):
        self.impl.forward()

    def peakmem_forward(self, config, impl):
        self.impl.forward()


class QuantizedError(Benchmark):
    """Max abs error of the forward output against lstmx's float32 output."""

    params = [CONFIGS, IMPLS[1:]]
    param_names = ["config", "impl"]
    unit = "max abs error"

    def setup(self, config, impl):
        self.impl = build(config, impl)
        self.want = build(config, "lstmx").output()

    def track_max_abs_error(self, config, impl):
        return _quantized.max_abs_error(self.impl.output(), self.want)
