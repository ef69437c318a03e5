"""Reduced-precision implementations of the bench: lstmx int8 and bfloat16, onnxruntime int8.

``onnxruntime-int8`` is onnxruntime's own answer to int8 inference: the graph of
``lstmx.to_onnx`` quantised by ``onnxruntime.quantization.quantize_dynamic(...,
op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)``, which turns each ``LSTM``
node into a ``com.microsoft`` ``DynamicQuantizeLSTM`` (int8 weights, per-tensor scale; the
activations quantised to uint8 at run time). ``onnxruntime-int8r`` is the same with
``reduce_range=True`` (7-bit weights), which onnxruntime advises on CPUs without VNNI: there
its u8 x s8 products go through ``vpmaddubsw``, whose int16 pair sums saturate with 8-bit
weights. ``lstmx-int8`` and ``lstmx-bf16`` are ``LSTM.quantize("int8")`` and
``quantize("bfloat16")`` of the same float32 model. All are inference only and report the
max abs error of their output against lstmx's float32 output (``max_abs_error``).
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from lstmx._bench_impls import UnavailableError, _Impl, onnx_model, ort_session

__all__ = ["QUANTIZED_IMPLS", "DOT_KIND", "QUANTIZED_CONFIGS", "IMPL_CLASSES",
           "quantize_with_onnxruntime", "onnxruntime_int8", "max_abs_error", "cpu_flags", "CPU_FLAGS"]

QUANTIZED_IMPLS = ("lstmx-int8", "lstmx-bf16", "onnxruntime-int8", "onnxruntime-int8r")
# The dot-product peak (lstmx._bench_machine.dot_peak) each one's products are held to.
DOT_KIND = {"lstmx-int8": "int8", "onnxruntime-int8": "int8", "onnxruntime-int8r": "int8",
            "lstmx-bf16": "bfloat16"}
# The configurations of the table: M, L and the wide layer T20/B128/I256/H1024.
QUANTIZED_CONFIGS = ("M", "L", "H1024")
# The CPU features that decide which int8 and bf16 code a library can run.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
          "amx_int8", "amx_bf16")


def cpu_flags() -> dict:
    """Which of the int8/bf16-relevant CPU features this CPU has (``/proc/cpuinfo``), or
    None where the OS does not say."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return {flag: flag in have for flag in CPU_FLAGS}
    except OSError:
        pass
    return None


def max_abs_error(got, want) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))


def quantize_with_onnxruntime(model, *, reduce_range=False, initial_state=False):
    """The ONNX graph of the float32 ``model`` (``lstmx.to_onnx``) quantised by
    onnxruntime's ``quantize_dynamic``: serialised bytes of a graph whose every ``LSTM``
    node became a ``DynamicQuantizeLSTM``.

    Raises
    ------
    UnavailableError
        If onnx, onnxruntime or its quantisation tool is missing, or the quantised graph
        still holds a float ``LSTM`` node (the tool skipped it).
    """
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise UnavailableError(f"onnxruntime's quantisation does not import: {err}") from err
    proto = onnx_model(model, initial_state=initial_state)
    with tempfile.TemporaryDirectory(prefix="lstmx-ort-int8-") as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(proto, src)
        # Its advice to pre-process the graph (shape inference for the operators it
        # quantises by shape; an LSTM's are in its attributes) goes to the root logger.
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(src, dst, op_types_to_quantize=["LSTM"],
                             weight_type=QuantType.QInt8, reduce_range=reduce_range)
        finally:
            logging.disable(previous)
        quantized = onnx.load(dst)
    ops = [(n.domain, n.op_type) for n in quantized.graph.node]
    if ("", "LSTM") in ops or ("com.microsoft", "DynamicQuantizeLSTM") not in ops:
        raise UnavailableError(f"quantize_dynamic did not make DynamicQuantizeLSTM nodes of "
                               f"the LSTM nodes; the graph has {sorted(set(ops))}")
    return quantized.SerializeToString()


def onnxruntime_int8(model, x, *, threads=2, repeat=5, reduce_range=False) -> dict:
    """onnxruntime's ``DynamicQuantizeLSTM`` on a float32 lstmx ``LSTM``: its time and its
    max abs error against the float32 model.

    Parameters
    ----------
    model : LSTM
        float32, no projection (what ``lstmx.to_onnx`` exports).
    x : ndarray
        The input as the model takes it ((T, B, I), or (B, T, I) with ``batch_first``).
    threads : int
        onnxruntime's intra-op threads (one inter-op thread, sequential execution), as the
        bench's onnxruntime peer.
    repeat : int
        Timed calls after one warm-up call; the median is reported.
    reduce_range : bool
        quantize_dynamic's 7-bit weights.

    Returns
    -------
    dict
        ``median_s``, ``max_abs_error`` (of y against ``model(x)``'s), ``y`` (lstmx's
        layout, (T, B, D*H) or (B, T, D*H)).
    """
    import time

    import onnxruntime as ort

    session = ort_session(ort, quantize_with_onnxruntime(model, reduce_range=reduce_range),
                          threads)
    feed = {"X": np.ascontiguousarray(x, np.float32)}
    y = _lstmx_layout(session.run(None, feed)[0], model.config.batch_first)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "y": y,
            "max_abs_error": max_abs_error(y, model(x)[0])}


def _lstmx_layout(y, batch_first):
    """The ONNX ``Y`` ((T, D, B, H), or (B, T, D, H) with batch_first) as lstmx's y."""
    if batch_first:
        B, T, D, H = y.shape
        return y.reshape(B, T, D * H)
    T, D, B, H = y.shape
    return y.transpose(0, 2, 1, 3).reshape(T, B, D * H)


class LstmxQuantizedImpl(_Impl):
    """``LSTM.quantize(mode)`` (``LSTMCell.quantize`` for the cell) of the float32 model."""

    trainable = False
    mode = ""

    def __init__(self, config, dtype, seed, threads):
        if np.dtype(dtype) != np.float32:
            raise UnavailableError(f"{self.name} runs float32 models (in and out)")
        super().__init__(config, dtype, seed, threads)
        if not hasattr(self.model, "quantize"):
            raise UnavailableError("this lstmx has no LSTM.quantize")
        self.quantized = self.model.quantize(self.mode)
        if config.cell:
            zeros = np.zeros((config.B, config.H), self.dtype)
            self.state = (zeros, zeros.copy())

    def forward(self):
        if self.config.cell:
            return self.quantized(self.x, self.state)
        return self.quantized(self.x)

    def output(self):
        return np.asarray(self.forward()[0])


class LstmxInt8Impl(LstmxQuantizedImpl):
    name, mode = "lstmx-int8", "int8"


class LstmxBf16Impl(LstmxQuantizedImpl):
    name, mode = "lstmx-bf16", "bfloat16"


class OnnxruntimeInt8Impl(_Impl):
    """onnxruntime's ``DynamicQuantizeLSTM`` from ``quantize_dynamic`` of lstmx's graph,
    with the threads of the float onnxruntime peer. The cell step is a T = 1 graph fed the
    (zero) state."""

    name = "onnxruntime-int8"
    trainable = False
    reduce_range = False

    def __init__(self, config, dtype, seed, threads):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise UnavailableError(f"onnxruntime does not import: {err}") from err
        if np.dtype(dtype) != np.float32:
            raise UnavailableError(f"{self.name} quantises float32 models")
        super().__init__(config, dtype, seed, threads)
        data = quantize_with_onnxruntime(self.model, reduce_range=self.reduce_range,
                                         initial_state=config.cell)
        self.feed = {"X": self.x[None] if config.cell else self.x}
        if config.cell:
            zeros = np.zeros((1, config.B, config.H), self.dtype)
            self.feed.update(initial_h=zeros, initial_c=zeros)
        self.session = ort_session(ort, data, threads, self.feed)

    def forward(self):
        return self.session.run(None, self.feed)

    def output(self):
        y = _lstmx_layout(self.forward()[0], False)
        return y[0] if self.config.cell else y


class OnnxruntimeInt8ReducedImpl(OnnxruntimeInt8Impl):
    name, reduce_range = "onnxruntime-int8r", True


IMPL_CLASSES = {cls.name: cls for cls in (LstmxInt8Impl, LstmxBf16Impl, OnnxruntimeInt8Impl,
                                          OnnxruntimeInt8ReducedImpl)}
