"""Benchmark harness shared by ``python -m lstmx bench`` and the asv suite (``benchmarks/``).

One place builds, for a benchmark configuration and an implementation, the model and its
inputs with the *same* weights: ``lstmx`` (the compiled layers), ``reference`` (the NumPy
reference, in the compute dtype), ``torch`` (``torch.nn.LSTM`` / ``LSTMCell``) and
``onnxruntime`` (the graph of ``lstmx.interop.to_onnx``). Each implementation object has
the same methods (``forward``, ``forward_train``, ``backward``, ``train``) so that timing code
never needs to know which one it holds.

The bench command times them side by side in one process: round-robin over the
implementations at each repetition, after warm-up, with 2 threads for every library, and
reports medians and the ratios ``time(other) / time(lstmx)`` (within each round, median over
the rounds; above 1: lstmx is faster). Peak memory of a training step is measured in a fresh
subprocess per implementation. What each number means, and the targets they are held to:
``docs/performance.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

__all__ = ["BenchConfig", "CONFIGS", "CELL", "ALL_CONFIGS", "IMPLEMENTATIONS",
           "UnavailableError", "Timing", "build_impl", "limit_threads", "float64_reference",
           "max_rel_error", "gemm_op", "measure", "measure_settled", "ratios",
           "ratios_of_medians", "measure_memory", "run_benchmarks", "evaluate_targets",
           "format_report", "main"]

IMPLEMENTATIONS = ("lstmx", "reference", "torch", "onnxruntime", "lstmx-peephole")
SCHEMA = "lstmx-bench/2"  # 2: ratios pair the samples of each round
# A timing whose interquartile range passes this fraction of its median is noisy.
NOISY = 0.25


class UnavailableError(NotImplementedError):
    """An implementation cannot run here (not installed, or lacks the operation).

    A ``NotImplementedError`` so that asv reports the benchmark as skipped.
    """


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark problem: sequence length T, batch B, input size I, hidden size H.

    ``cell=True`` is a single ``LSTMCell`` step (T is ignored).
    """

    name: str
    T: int
    B: int
    I: int
    H: int
    num_layers: int = 1
    bidirectional: bool = False
    cell: bool = False

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def forward_flops(self) -> int:
        """Flops of the forward matrix products, ``2 T B 4H (I_k + H)`` per layer and
        direction (``LSTM.md``, Cost); the transcendental functions are not counted."""
        T = 1 if self.cell else self.T
        flops = 0
        for k in range(self.num_layers):
            inputs = self.I if k == 0 else self.directions * self.H
            flops += self.directions * 2 * T * self.B * 4 * self.H * (inputs + self.H)
        return flops

    def describe(self) -> str:
        if self.cell:
            return f"LSTMCell step B={self.B} I={self.I} H={self.H}"
        extra = ""
        if self.num_layers > 1:
            extra += f" layers={self.num_layers}"
        if self.bidirectional:
            extra += " bidirectional"
        return f"T={self.T} B={self.B} I={self.I} H={self.H}{extra}"


# The configurations of the performance issue (float32, 2 threads, zero initial state).
CONFIGS = {
    "S": BenchConfig("S", T=100, B=1, I=32, H=32),
    "M": BenchConfig("M", T=50, B=32, I=128, H=256),
    "L": BenchConfig("L", T=100, B=64, I=512, H=512),
    "M-bi2": BenchConfig("M-bi2", T=50, B=32, I=128, H=256, num_layers=2, bidirectional=True),
}
CELL = BenchConfig("cell", T=1, B=1, I=32, H=32, cell=True)
ALL_CONFIGS = {**CONFIGS, CELL.name: CELL}


# --------------------------------------------------------------------------------------------
# Threads

def limit_threads(threads: int) -> dict:
    """Limit every BLAS/OpenMP pool in the process (threadpoolctl) and torch to ``threads``.

    The limit stays in force for the rest of the process (asv runs each benchmark in its own).
    Returns threadpoolctl's view of the pools, for the report.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    return threadpool_info()


# --------------------------------------------------------------------------------------------
# Implementations

def _problem(config: BenchConfig, dtype, seed):
    """The lstmx model (the source of every implementation's weights), x and the output
    gradient dy, all seeded. x is (T, B, I), or (B, I) for the cell."""
    import lstmx

    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype).type
    if config.cell:
        model = lstmx.LSTMCell(config.I, config.H, dtype=dtype, seed=seed)
        x = rng.standard_normal((config.B, config.I), dtype=dtype)
        dy = rng.standard_normal((config.B, config.H), dtype=dtype)
    else:
        model = lstmx.LSTM(config.I, config.H, num_layers=config.num_layers,
                           bidirectional=config.bidirectional, dtype=dtype, seed=seed)
        # Drawn in the dtype: no float64 temporary to inflate the memory measurements.
        x = rng.standard_normal((config.T, config.B, config.I), dtype=dtype)
        dy = rng.standard_normal((config.T, config.B, config.directions * config.H),
                                 dtype=dtype)
    return model, x, dy


class _Impl:
    """An implementation of one configuration, ready to be called.

    ``forward`` is inference; ``forward_train`` the forward pass that keeps what backward needs;
    ``backward`` back-propagates ``dy`` through the pass that ``prepare_backward`` made;
    ``train`` is one of each. ``output`` returns y (T, B, D*H) (the new h for the cell) as a
    NumPy array, ``gradients`` dx and the parameter gradients keyed like ``state_dict()``.
    ``context`` is entered around a timed sample (``torch.no_grad`` for torch inference).
    """

    name = ""
    trainable = True

    def __init__(self, config, dtype, seed, threads):
        self.config, self.dtype, self.threads = config, np.dtype(dtype), threads
        self.model, self.x, self.dy = _problem(config, dtype, seed)
        self.state_dict = self.model.state_dict()
        self._cache = None

    def context(self, mode):
        return contextlib.nullcontext()

    def _unavailable(self, what):
        raise UnavailableError(f"{self.name} has no {what}")

    def forward(self):
        self._unavailable("forward")

    def forward_train(self):
        self._unavailable("training")

    def _backward(self, cache):
        self._unavailable("training")

    def prepare_backward(self):
        self._cache = self.forward_train()

    def backward(self):
        return self._backward(self._cache)

    def train(self):
        return self._backward(self.forward_train())


class LstmxImpl(_Impl):
    name = "lstmx"

    def __init__(self, config, dtype, seed, threads):
        super().__init__(config, dtype, seed, threads)
        if config.cell:
            zeros = np.zeros((config.B, config.H), self.dtype)
            self.state, self.dstate = (zeros, zeros.copy()), (self.dy, zeros.copy())

    def forward(self):
        if self.config.cell:
            return self.model(self.x, self.state)
        return self.model(self.x)

    def forward_train(self):
        if self.config.cell:
            return self.model.forward_train(self.x, self.state)[1]
        return self.model.forward_train(self.x)[2]

    def _backward(self, cache):
        if self.config.cell:
            return self.model.backward(cache, self.dstate)
        return self.model.backward(cache, self.dy)

    def output(self):
        return np.asarray(self.forward()[0])

    def gradients(self):
        dx, _, grads = self.train()
        return {"x": dx, **grads}


class ReferenceImpl(_Impl):
    """``lstmx.reference`` with the parameters in the compute dtype: the NumPy baseline."""

    name = "reference"

    def __init__(self, config, dtype, seed, threads):
        super().__init__(config, dtype, seed, threads)
        from lstmx import reference

        self.ref = reference
        sd = self.state_dict
        if config.cell:
            self.W, self.U = sd["weight_ih"], sd["weight_hh"]
            self.b = sd["bias_ih"] + sd["bias_hh"]
            self.h0 = np.zeros((config.B, config.H), self.dtype)
            self.dc = np.zeros_like(self.h0)
        else:
            self.cfg = self.model.config

    def forward(self):
        if self.config.cell:
            return self.ref.cell_forward(self.x, self.h0, self.h0, self.W, self.U, self.b)
        return self.ref.lstm_forward(self.state_dict, self.cfg, self.x)

    forward_train = forward

    def _backward(self, cache):
        if self.config.cell:
            return self.ref.cell_backward(self.dy, self.dc, cache[2], self.W, self.U)
        return self.ref.lstm_backward(self.state_dict, self.cfg, cache[2], self.dy)

    def output(self):
        return np.asarray(self.forward()[0])

    def gradients(self):
        if self.config.cell:
            dx, _, _, (dW, dU, db, _, _) = self.train()
            return {"x": dx, "weight_ih": dW, "weight_hh": dU, "bias_ih": db, "bias_hh": db}
        dx, _, grads = self.train()
        return {"x": dx, **grads}


class TorchImpl(_Impl):
    """``torch.nn.LSTM`` / ``LSTMCell`` holding our weights; training is forward and backward
    of ``sum(y * dy)`` with ``x.requires_grad`` so that, like lstmx, it computes dx too."""

    name = "torch"

    def __init__(self, config, dtype, seed, threads):
        try:
            import torch
        except ImportError as err:
            raise UnavailableError(f"torch does not import: {err}") from err
        super().__init__(config, dtype, seed, threads)
        self.torch = torch
        torch.set_num_threads(threads)
        tdtype = {np.dtype(np.float32): torch.float32,
                  np.dtype(np.float64): torch.float64}[self.dtype]
        if config.cell:
            self.module = torch.nn.LSTMCell(config.I, config.H, dtype=tdtype)
            zeros = torch.zeros((config.B, config.H), dtype=tdtype)
            self.state = (zeros, zeros.clone())
        else:
            self.module = torch.nn.LSTM(config.I, config.H, num_layers=config.num_layers,
                                        bidirectional=config.bidirectional, dtype=tdtype)
        self.module.load_state_dict({k: torch.from_numpy(v) for k, v in
                                     self.state_dict.items()})
        self.x_t = torch.from_numpy(self.x)
        self.x_train = self.x_t.clone().requires_grad_(True)
        self.dy_t = torch.from_numpy(self.dy)

    def context(self, mode):
        return self.torch.no_grad() if mode == "forward" else contextlib.nullcontext()

    def _call(self, x):
        if self.config.cell:
            return self.module(x, self.state)[0]
        return self.module(x)[0]

    def forward(self):
        return self._call(self.x_t)

    def forward_train(self):
        return self._call(self.x_train)

    def _backward(self, y, retain_graph=False):
        # A training step starts from fresh gradients, as after optimizer.zero_grad().
        self.module.zero_grad(set_to_none=True)
        self.x_train.grad = None
        (y * self.dy_t).sum().backward(retain_graph=retain_graph)

    def backward(self):
        # Timed repeatedly on the graph that prepare_backward built, so it must stay alive.
        return self._backward(self._cache, retain_graph=True)

    def output(self):
        with self.torch.no_grad():
            return self.forward().numpy().copy()

    def gradients(self):
        self.train()
        grads = {k: p.grad.numpy().copy() for k, p in self.module.named_parameters()}
        return {"x": self.x_train.grad.numpy().copy(), **grads}


class OnnxruntimeImpl(_Impl):
    """onnxruntime's ``LSTM`` operator on the graph of ``lstmx.interop.to_onnx``; inference
    only. The cell step is a T = 1 graph fed the (zero) state, as a streaming caller would."""

    name = "onnxruntime"
    trainable = False

    def __init__(self, config, dtype, seed, threads):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise UnavailableError(f"onnxruntime does not import: {err}") from err
        super().__init__(config, dtype, seed, threads)
        proto = onnx_model(self.model, initial_state=config.cell)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.feed = {"X": self.x[None] if config.cell else self.x}
        if config.cell:
            zeros = np.zeros((1, config.B, config.H), self.dtype)
            self.feed.update(initial_h=zeros, initial_c=zeros)
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
            probe = ort.RunOptions()
            probe.log_severity_level = 4  # the failure is reported below, not logged
            self.session.run(None, self.feed, probe)
        except Exception as err:  # onnxruntime's errors have no common public base class
            # e.g. float64: "LSTM operator does not support double yet" (onnxruntime 1.31)
            msg = str(err).strip().splitlines()[-1]
            raise UnavailableError(f"onnxruntime cannot run it: {msg}") from err

    def forward(self):
        return self.session.run(None, self.feed)

    def output(self):
        y = self.forward()[0]  # (T, D, B, H)
        T, D, B, H = y.shape
        y = y.transpose(0, 2, 1, 3).reshape(T, B, D * H)
        return y[0] if self.config.cell else y


def float64_reference(obj: _Impl, gradients=True):
    """The float64 reference on ``obj``'s weights, x and dy (upcast): y (the new h for the
    cell) and, if asked, dx and the parameter gradients keyed like ``obj.gradients()``."""
    from lstmx import reference

    f64 = {k: v.astype(np.float64) for k, v in obj.state_dict.items()}
    x, dy = obj.x.astype(np.float64), obj.dy.astype(np.float64)
    if obj.config.cell:
        b = f64["bias_ih"] + f64["bias_hh"]
        zeros = np.zeros_like(dy)
        h, _, saved = reference.cell_forward(x, zeros, zeros, f64["weight_ih"],
                                             f64["weight_hh"], b)
        if not gradients:
            return h, None
        dx, _, _, (dW, dU, db, _, _) = reference.cell_backward(
            dy, zeros, saved, f64["weight_ih"], f64["weight_hh"])
        return h, {"x": dx, "weight_ih": dW, "weight_hh": dU, "bias_ih": db, "bias_hh": db}
    y, _, saved = reference.lstm_forward(f64, obj.model.config, x)
    if not gradients:
        return y, None
    dx, _, grads = reference.lstm_backward(f64, obj.model.config, saved, dy)
    return y, {"x": dx, **grads}


def max_rel_error(got: dict, want: dict) -> float:
    """The largest ``_rel_err`` over the arrays of ``want`` (keyed alike in ``got``)."""
    return max(_rel_err(got[k], want[k]) for k in want)


class LstmxPeepholeImpl(LstmxImpl):
    """lstmx with peephole connections, for the cost of peepholes against the plain cell.

    The peephole weights are zero, so that its outputs equal the others' (the kernels do the
    same work whatever the weights hold)."""

    name = "lstmx-peephole"

    def __init__(self, config, dtype, seed, threads):
        super().__init__(config, dtype, seed, threads)
        import lstmx

        plain, dt = self.model, np.dtype(dtype).type
        if config.cell:
            self.model = lstmx.LSTMCell(config.I, config.H, peephole=True, dtype=dt)
        else:
            self.model = lstmx.LSTM(config.I, config.H, num_layers=config.num_layers,
                                    bidirectional=config.bidirectional, peephole=True,
                                    dtype=dt)
        weights = {k: np.zeros_like(v) for k, v in self.model.state_dict().items()}
        weights.update(plain.state_dict())
        self.model.load_state_dict(weights)


_IMPL_CLASSES = {cls.name: cls for cls in (LstmxImpl, ReferenceImpl, TorchImpl,
                                           OnnxruntimeImpl, LstmxPeepholeImpl)}


def build_impl(impl: str, config, dtype=np.float32, seed=0, threads=2) -> _Impl:
    """The implementation ``impl`` of ``config`` (a ``BenchConfig`` or a name in
    ``ALL_CONFIGS``), with lstmx's seeded weights. Raises ``UnavailableError`` when it cannot
    run here."""
    if isinstance(config, str):
        if config not in ALL_CONFIGS:
            raise ValueError(f"config must be one of {list(ALL_CONFIGS)}; got {config!r}")
        config = ALL_CONFIGS[config]
    if impl not in _IMPL_CLASSES:
        raise ValueError(f"impl must be one of {list(_IMPL_CLASSES)}; got {impl!r}")
    return _IMPL_CLASSES[impl](config, dtype, seed, threads)


# --------------------------------------------------------------------------------------------
# ONNX

def onnx_model(model, initial_state=False):
    """``lstmx.interop.to_onnx(model)``; UnavailableError when onnx or the exporter is
    missing or refuses the model."""
    try:
        import onnx  # noqa: F401

        from lstmx.interop import to_onnx
    except ImportError as err:
        raise UnavailableError(f"no ONNX export here: {err}") from err
    try:
        return to_onnx(model, initial_state=initial_state)
    except (NotImplementedError, ValueError, TypeError) as err:
        raise UnavailableError(f"lstmx.interop.to_onnx refuses the model: {err}") from err


# --------------------------------------------------------------------------------------------
# Timing

@dataclasses.dataclass
class Timing:
    """Per-call times (seconds) of one operation: one sample per repetition, each the mean
    over ``number`` back-to-back calls."""

    samples: list
    number: int

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def spread(self) -> float:
        """Interquartile range / median: the noise of the measurement."""
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float((q3 - q1) / self.median)


def _sample(fn, context, number) -> float:
    # Python's cyclic garbage collector is off while timing, as timeit does: a full
    # collection walks every object of the process (torch's thousands included) and would
    # land on whichever microsecond-scale call happened to trigger it (interquartile ranges
    # of 40-80% on the cell's training step with it on).
    enabled = gc.isenabled()
    gc.disable()
    try:
        with context:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            return (time.perf_counter() - t0) / number
    finally:
        if enabled:
            gc.enable()


def _warm_up(fn, context, warm_time) -> float:
    """Call ``fn`` at least twice and for at least ``warm_time`` seconds (oneDNN, say, compiles
    its kernels over the first calls); returns the median of the last calls' times."""
    times = []
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < warm_time:
        times.append(_sample(fn, context(), 1))
    return float(np.median(times[-5:]))


def measure(ops, repeat=11, warmup=1, min_time=0.02, warm_time=0.2, gap=0.2,
            max_time=None, min_repeat=5) -> dict:
    """Time several operations side by side.

    Parameters
    ----------
    ops : dict of name -> (callable, context factory)
        The operations; the context (``torch.no_grad`` say) is entered around each sample.
    repeat : int
        Samples kept per operation.
    warmup : int
        Interleaved rounds run and discarded after each operation's own warm-up.
    min_time : float
        Each sample repeats its call until it lasts about this long (seconds), so that
        microsecond calls are not lost in the timer's resolution.
    warm_time : float
        Each operation first runs alone for at least this long (and twice), which also
        calibrates how many calls a sample takes.
    gap : float
        Pause after each sample and warm-up (seconds). BLAS and OpenMP worker threads spin
        for a while after their work (OpenBLAS about 2**28 cycles, 0.1 s) before they sleep;
        on 2 cores, spinning threads of the library timed before would take a core from the
        next one, whose own threads then wait at every barrier. With a 2 ms gap, torch's S
        forward took a second per call and M's spreads passed 200%; with 0.2 s, 0.1 to 10%.
    max_time : float, optional
        Stop after the round in which the timed rounds pass this many seconds, but not
        before ``min(min_repeat, repeat)`` samples: a budget for the slow configurations.

    Returns
    -------
    dict of name -> Timing
        Round r runs the operations in the order rotated by r (interleaved round-robin), so
        that a slow drift of the shared machine falls on all of them alike.
    """
    names = list(ops)
    number = {}
    for name in names:
        one = _warm_up(*ops[name], warm_time)
        number[name] = max(1, math.ceil(min_time / max(one, 1e-9)))
        if gap:
            time.sleep(gap)
    samples = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(warmup + repeat):
        kept = r - warmup  # samples per operation so far
        if (max_time is not None and kept >= min(min_repeat, repeat)
                and time.perf_counter() - start > max_time):
            break
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, ctx = ops[name]
            t = _sample(fn, ctx(), number[name])
            if r >= warmup:
                samples[name].append(t)
            if gap:
                time.sleep(gap)
    return {name: Timing(samples[name], number[name]) for name in names}


def measure_settled(ops, retries=2, on_retry=None, watch=None, **kwargs):
    """``measure(ops, **kwargs)``, measured again (at most ``retries`` more times) while any
    of its timings is noisy (interquartile range above NOISY of the median); ``watch``
    names the timings that count (default: all).

    A burst of other work on a shared machine can land on the samples of one operation
    more than on the others' and swing a ratio by 20% (lstmx against itself, the same
    kernels, has read 0.76 in such a measurement). Whether to measure again depends only on
    the spreads, never on the times, and the same for every operation.

    Returns
    -------
    timings : dict of name -> Timing
        The first attempt without a noisy timing, or else the attempt whose noisiest timing
        is least noisy.
    discarded : list of dict of name -> Timing
        The other attempts, in order.
    """
    def worst(timings):
        return max(t.spread for name, t in timings.items() if watch is None or name in watch)

    attempts = []
    while True:
        attempts.append(measure(ops, **kwargs))
        if worst(attempts[-1]) <= NOISY or len(attempts) > retries:
            break
        if on_retry is not None:
            on_retry({name: t.spread for name, t in attempts[-1].items()
                      if t.spread > NOISY and (watch is None or name in watch)})
    best = min(range(len(attempts)), key=lambda a: worst(attempts[a]))
    return attempts[best], attempts[:best] + attempts[best + 1:]


def ratios(timings: dict, base="lstmx") -> dict:
    """For every other timing, the median over the rounds of ``time(other) / time(base)``
    within the round (above 1: base is faster).

    The two samples of a round were taken seconds apart, so a slowdown of the shared
    machine that lasts longer than that falls on both and cancels in their ratio, whereas
    it shifts one median more than the other when they are compared instead. Over the 385
    comparisons in eleven saved runs of the bench, the 90% bootstrap interval of this ratio
    was 9.4% of its value wide (median), that of the ratio of medians 13.8%, and the two
    differed by at most 0.4% in the median for each library, in both directions
    (``ratios_of_medians``; docs/performance.md).
    """
    if base not in timings:
        return {}
    t0 = np.asarray(timings[base].samples, dtype=float)
    out = {}
    for name, t in timings.items():
        if name == base:
            continue
        if len(t.samples) != len(t0):
            raise ValueError(f"ratios pair samples by round: {name} has {len(t.samples)}, "
                             f"{base} {len(t0)}")
        out[name] = float(np.median(np.asarray(t.samples, dtype=float) / t0))
    return out


def ratios_of_medians(timings: dict, base="lstmx") -> dict:
    """``median(other) / median(base)`` for every other timing: the ratio of the reported
    times, kept beside ``ratios`` in the results."""
    if base not in timings:
        return {}
    t0 = timings[base].median
    return {name: t.median / t0 for name, t in timings.items() if name != base}


def gemm_op(config, dtype):
    """scipy's gemm at the input-projection shape (T*B, I) x (I, 4H); Fortran-ordered
    operands so that f2py passes them to BLAS without a copy."""
    from scipy.linalg import blas

    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    rng = np.random.default_rng(0)
    M, K, N = config.T * config.B, config.I, 4 * config.H
    a = np.asfortranarray(rng.standard_normal((M, K)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((K, N)).astype(dtype))
    return (lambda: gemm(1.0, a, b)), 2 * M * K * N, (M, K, N)


def _rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), np.finfo(float).tiny))


# --------------------------------------------------------------------------------------------
# Memory (one subprocess per implementation)

def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(impl, config, dtype, threads, steps):
    """Peak RSS growth of ``steps`` training steps, in MiB, measured two ways.

    ``growth_mib``: above the RSS after the imports (the performance issue's baseline), so it
    includes the model, x and dy as this implementation holds them. ``step_growth_mib``:
    above the RSS once those exist, so only what the steps allocate (caches, gradients,
    workspaces).
    """
    import importlib
    import resource

    import lstmx.reference  # noqa: F401
    if impl == "torch":
        importlib.import_module("torch")
    limit_threads(threads)
    reset = _reset_peak()
    base = _rss_kib("VmRSS")
    obj = build_impl(impl, config, dtype, threads=threads)
    built_peak = _rss_kib("VmHWM") if reset else base
    reset = reset and _reset_peak()
    built = _rss_kib("VmRSS")
    for _ in range(steps):
        obj.train()
    if reset:
        peak, method = _rss_kib("VmHWM"), "VmHWM after clear_refs"
    else:  # ru_maxrss may include an earlier, higher peak: growth is then underestimated
        peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    return {"impl": impl, "growth_mib": max(built_peak, peak) / 1024 - base / 1024,
            "step_growth_mib": max(peak - built, 0) / 1024, "baseline_mib": base / 1024,
            "method": method, "steps": steps}


def measure_memory(impl, config, dtype=np.float32, threads=2, steps=2, timeout=600):
    """Run ``_memory_child`` in a fresh Python; returns its dict, or one with ``error``."""
    code = ("import json, sys; from lstmx import _bench; "
            "a = json.loads(sys.argv[1]); c = _bench.BenchConfig(**a.pop('config')); "
            "print(json.dumps(_bench._memory_child(config=c, **a)))")
    args = json.dumps({"impl": impl, "config": dataclasses.asdict(config),
                       "dtype": np.dtype(dtype).name, "threads": threads, "steps": steps})
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"impl": impl, "error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# The whole run

def machine_info(threads) -> dict:
    """CPU, versions and the BLAS/OpenMP pools (threadpoolctl) after limiting threads."""
    import scipy

    import lstmx

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "scipy": scipy.__version__, "lstmx": lstmx.__version__}
    for name in ("torch", "onnxruntime", "onnx"):
        mod = sys.modules.get(name)
        if mod is not None:  # imported, and not blocked (a None entry)
            versions[name] = mod.__version__
    pools = [{k: info.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                       "architecture", "prefix", "filepath")}
             for info in limit_threads(threads)]
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "versions": versions, "threadpools": pools, "threads": threads,
            "torch_threads": (sys.modules["torch"].get_num_threads()
                              if sys.modules.get("torch") is not None else None)}


def _loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _log(progress, msg):
    if progress is not None:
        progress(msg)


def run_benchmarks(configs=None, impls=IMPLEMENTATIONS, dtype=np.float32, threads=2,
                   repeat=11, warmup=1, min_time=0.02, warm_time=0.5, gap=0.2,
                   max_time=60.0, retries=2, memory_config="L",
                   memory_steps=2, gemm_config="L", seed=0, progress=None) -> dict:
    """Time every implementation on every configuration; see the module docstring.

    Parameters
    ----------
    configs : dict of name -> BenchConfig, optional
        Default: ``ALL_CONFIGS`` (S, M, L, M-bi2 and the cell step).
    impls : sequence of str
        Among ``IMPLEMENTATIONS``; those that cannot run here are reported as unavailable.
    retries : int
        How many times a measurement with a noisy timing is measured again (see
        ``measure_settled``).
    memory_config, gemm_config : str or None
        Names in ``configs`` on which to measure the training memory (subprocesses) and the
        GEMM ceiling; None (or a name not in ``configs``) skips that measurement.
    progress : callable(str), optional
        Receives a line before each measurement.

    Returns
    -------
    dict
        JSON-ready: ``machine``, ``settings``, ``configs``, ``results[config][mode][impl]``
        (``median_s``, ``spread``, ``samples_s``, ``number``), ``ratios[config][mode][impl]``
        (see ``ratios``) and ``ratios_of_medians`` likewise, ``discarded[config][mode]``
        (the noisy attempts measured again: a list of ``{impl: {median_s, spread}}``),
        ``agreement`` (relative max difference of each forward output from lstmx's),
        ``unavailable``, ``gemm``, ``memory`` and ``targets``.
    """
    configs = dict(ALL_CONFIGS if configs is None else configs)
    dtype = np.dtype(dtype)
    limit_threads(threads)
    load_before = _loadavg()
    t_start = time.perf_counter()
    out = {"schema": SCHEMA, "settings": {
        "dtype": dtype.name, "threads": threads, "repeat": repeat, "warmup": warmup,
        "min_time_s": min_time, "warm_time_s": warm_time, "gap_s": gap,
        "max_time_s": max_time, "retries": retries, "seed": seed,
        "impls": list(impls)},
        "configs": {n: dataclasses.asdict(c) for n, c in configs.items()},
        "results": {}, "ratios": {}, "ratios_of_medians": {}, "discarded": {},
        "agreement": {}, "unavailable": {},
        "gemm": None,
        "memory": None}
    available = set()
    for cname, config in configs.items():
        built, unavailable = {}, {}
        for impl in impls:
            try:
                built[impl] = build_impl(impl, config, dtype, seed, threads)
            except UnavailableError as err:
                unavailable[impl] = str(err)
        limit_threads(threads)  # torch may have been imported just now
        available.update(built)
        out["unavailable"][cname] = unavailable
        if "lstmx" in built:
            want = built["lstmx"].output()
            out["agreement"][cname] = {n: _rel_err(o.output(), want)
                                       for n, o in built.items() if n != "lstmx"}
        modes = {"forward": {n: (o.forward, lambda o=o: o.context("forward"))
                             for n, o in built.items()},
                 "train": {n: (o.train, lambda o=o: o.context("train"))
                           for n, o in built.items() if o.trainable}}
        gemm_meta = None
        if cname == gemm_config and not config.cell:
            fn, gemm_flops, shape = gemm_op(config, dtype)
            modes["forward"]["gemm"] = (fn, contextlib.nullcontext)
            gemm_meta = (gemm_flops, shape)
        for key in ("results", "ratios", "ratios_of_medians", "discarded"):
            out[key][cname] = {}
        for mode, ops in modes.items():
            if not ops:
                continue
            _log(progress, f"{time.perf_counter() - t_start:6.0f} s  {cname} {mode}: "
                           f"{', '.join(ops)}")
            # sgemm is the ceiling's yardstick, not a library compared: its noise (often
            # 50-75% here) does not send the others round again.
            timings, discarded = measure_settled(
                ops, retries, lambda noisy, cname=cname, mode=mode: _log(
                    progress, f"{time.perf_counter() - t_start:6.0f} s  {cname} {mode}: "
                              "noisy (" + ", ".join(f"{n} {v:.0%}" for n, v in noisy.items())
                              + "), measuring again"),
                watch=[n for n in ops if n != "gemm"], repeat=repeat, warmup=warmup,
                min_time=min_time, warm_time=warm_time, gap=gap, max_time=max_time)
            if discarded:
                out["discarded"][cname][mode] = [
                    {n: {"median_s": t.median, "spread": t.spread} for n, t in d.items()}
                    for d in discarded]
            out["results"][cname][mode] = {
                n: {"median_s": t.median, "spread": t.spread, "samples_s": t.samples,
                    "number": t.number}
                for n, t in timings.items() if n != "gemm"}
            for key, fn in (("ratios", ratios), ("ratios_of_medians", ratios_of_medians)):
                out[key][cname][mode] = {n: r for n, r in fn(timings).items() if n != "gemm"}
            if mode == "forward" and gemm_meta is not None:
                gemm_flops, shape = gemm_meta
                t_gemm = timings["gemm"].median
                out["gemm"] = {"config": cname, "shape_mkn": list(shape),
                               "routine": "sgemm" if dtype == np.float32 else "dgemm",
                               "median_s": t_gemm, "gflops": gemm_flops / t_gemm / 1e9,
                               "lstmx_forward_flops": config.forward_flops()}
                if "lstmx" in timings:
                    lx = config.forward_flops() / timings["lstmx"].median / 1e9
                    out["gemm"]["lstmx_gflops"] = lx
                    out["gemm"]["fraction"] = lx / out["gemm"]["gflops"]
        del built
    if memory_config in configs:
        mem = {"config": memory_config, "steps": memory_steps}
        for impl in impls:
            if impl in ("onnxruntime", "lstmx-peephole") or impl not in available:
                continue  # inference only, not a target, or n/a in this process
            _log(progress, f"{time.perf_counter() - t_start:6.0f} s  {memory_config} "
                           f"training memory: {impl} (subprocess)")
            mem[impl] = measure_memory(impl, configs[memory_config], dtype, threads,
                                       memory_steps)
        out["memory"] = mem
    out["machine"] = machine_info(threads)
    # Other work on a shared machine slows multi-threaded code most (OpenMP barriers).
    out["machine"]["loadavg_1min"] = {"before": load_before, "after": _loadavg()}
    out["targets"] = evaluate_targets(out)
    return out


# --------------------------------------------------------------------------------------------
# Targets of the performance issue

@dataclasses.dataclass(frozen=True)
class Target:
    """``measured >= threshold`` (``at_least``) or ``measured <= threshold``."""

    name: str
    threshold: float
    at_least: bool = True
    unit: str = "x"


def _ratio(res, config, mode, impl):
    return res.get("ratios", {}).get(config, {}).get(mode, {}).get(impl)


def evaluate_targets(res) -> list:
    """Each target of the performance issue with its measured value and status
    ("PASS", "FAIL", or "n/a" when not measured)."""
    rows = []

    def add(target, measured):
        if measured is None or not np.isfinite(measured):
            status, measured = "n/a", None
        elif target.at_least:
            status = "PASS" if measured >= target.threshold else "FAIL"
        else:
            status = "PASS" if measured <= target.threshold else "FAIL"
        rows.append({"name": target.name, "measured": measured, "threshold": target.threshold,
                     "comparison": ">=" if target.at_least else "<=", "unit": target.unit,
                     "status": status})

    for c in ("S", "M", "L"):
        add(Target(f"forward vs onnxruntime, {c}", 1.0), _ratio(res, c, "forward",
                                                                "onnxruntime"))
    for c in ("S", "M", "L", "M-bi2", "cell"):
        add(Target(f"forward vs torch, {c}", 1.0), _ratio(res, c, "forward", "torch"))
    for c, k in (("S", 3.0), ("M", 1.0), ("L", 1.0), ("M-bi2", 1.0)):
        add(Target(f"training vs torch, {c}", k), _ratio(res, c, "train", "torch"))
    add(Target("LSTMCell step vs torch.nn.LSTMCell", 5.0), _ratio(res, "cell", "forward",
                                                                  "torch"))
    cell = res.get("results", {}).get("cell", {}).get("forward", {}).get("lstmx")
    add(Target("LSTMCell step time", 4.0, at_least=False, unit="us"),
        None if cell is None else 1e6 * cell["median_s"])
    gemm = res.get("gemm") or {}
    add(Target(f"{gemm.get('config', 'L')} forward flop rate / sgemm rate", 0.9, unit=""),
        gemm.get("fraction"))
    for c in ("S", "M", "L", "cell"):  # the variants issue: peepholes within 10% of plain
        add(Target(f"peephole forward+backward / plain, {c}", 1.1, at_least=False, unit=""),
            _ratio(res, c, "train", "lstmx-peephole"))
    add(Target("training vs reference, S", 10.0), _ratio(res, "S", "train", "reference"))
    add(Target("training vs reference, L", 1.5), _ratio(res, "L", "train", "reference"))
    mem = res.get("memory") or {}
    frac = None
    lx, tc = mem.get("lstmx", {}), mem.get("torch", {})
    if "growth_mib" in lx and "growth_mib" in tc and tc["growth_mib"] > 0:
        frac = lx["growth_mib"] / tc["growth_mib"]
    add(Target(f"{mem.get('config', 'L')} training peak RSS growth, lstmx / torch", 0.5,
               at_least=False, unit=""), frac)
    return rows


# --------------------------------------------------------------------------------------------
# Report

def _fmt_time(seconds):
    if seconds is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def _owner(pool) -> str:
    """The package that ships a pool's library ("scipy: " for scipy.libs/, the BLAS that
    lstmx calls), or "" when it is not a wheel's bundled library."""
    parent = os.path.basename(os.path.dirname(pool.get("filepath") or ""))
    return parent[:-len(".libs")] + ": " if parent.endswith(".libs") else ""


def _load_line(machine) -> str:
    load = machine.get("loadavg_1min") or {}
    before, after = load.get("before"), load.get("after")
    if before is None or after is None:
        return "load average: n/a"
    line = f"load average (1 min) before/after: {before:.2f}/{after:.2f}"
    if max(before, after) > 0.5 * (machine["cpu_count"] or 1):
        line += " -- the machine was busy: times are noisy, threaded ones most"
    return line


def format_report(res) -> str:
    """The human-readable report of ``run_benchmarks``."""
    m, s = res["machine"], res["settings"]
    lines = ["lstmx bench: median time per call; ratio = time(other) / time(lstmx) within a "
             "round, median over the rounds; above 1 means lstmx is faster",
             f"machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['platform']}",
             "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             f"threads: {s['threads']} (torch: {m['torch_threads'] or 'n/a'}); pools: "
             + "; ".join(f"{_owner(p)}{p['internal_api']} {p['version']}"
                         + (f" {p['architecture']} kernels" if p.get("architecture") else "")
                         + f" ({p['user_api']}, {p['num_threads']} threads)"
                         for p in m["threadpools"]),
             f"dtype {s['dtype']}, up to {s['repeat']} interleaved repetitions (fewer past "
             f"{s['max_time_s']} s a measurement, at least {min(5, s['repeat'])}) after "
             f"{s['warmup']} warm-up round, zero initial state",
             _load_line(m), ""]
    impls = [i for i in IMPLEMENTATIONS if i in s["impls"]]
    others = [i for i in impls if i != "lstmx"]
    header = (f"{'config':7} {'mode':8} " + " ".join(f"{i:>11}" for i in impls) + "  "
              + " ".join(f"{i + '/lstmx':>17}" for i in others))
    lines += [header, "-" * len(header)]
    for cname in res["results"]:
        for mode, timings in res["results"][cname].items():
            times = " ".join(f"{_fmt_time(timings.get(i, {}).get('median_s')):>11}"
                             for i in impls)
            rs = " ".join(f"{_fmt_ratio(_ratio(res, cname, mode, i)):>17}" for i in others)
            lines.append(f"{cname:7} {mode:8} {times}  {rs}")
    again = [f"{c} {m} ({len(ds)} discarded)" for c, modes in res.get("discarded", {}).items()
             for m, ds in modes.items()]
    if again:
        lines.append("measured again after a noisy attempt (the first attempt without a "
                     "noisy timing is kept, else the least noisy): " + ", ".join(again))
    noisy = [f"{c} {m} {i} ({t['spread']:.0%})" for c, modes in res["results"].items()
             for m, ts in modes.items() for i, t in ts.items() if t["spread"] > NOISY]
    if noisy:
        lines.append(f"noisy (interquartile range above {NOISY:.0%} of the median): "
                     + ", ".join(noisy))
    lines.append("")
    lines.append("configurations: " + "; ".join(
        f"{n}: {BenchConfig(**c).describe()}" for n, c in res["configs"].items()))
    for cname, agree in res["agreement"].items():
        if agree:
            lines.append(f"forward outputs vs lstmx, {cname}: " + ", ".join(
                f"{k} {v:.1e}" for k, v in agree.items()) + " (relative max difference)")
    unavailable = {(i, why) for u in res["unavailable"].values() for i, why in u.items()}
    for impl, why in sorted(unavailable):
        lines.append(f"n/a: {impl}: {why}")
    g = res.get("gemm")
    if g:
        M, K, N = g["shape_mkn"]
        lines.append(f"GEMM ceiling ({g['config']}): {g['routine']} ({M}x{K}) @ ({K}x{N}) "
                     f"{g['gflops']:.1f} GFLOP/s; lstmx forward "
                     f"{g.get('lstmx_gflops', float('nan')):.1f} GFLOP/s "
                     f"({g.get('fraction', float('nan')):.0%} of it)")
    mem = res.get("memory")
    if mem:
        parts = []
        for impl in IMPLEMENTATIONS:
            r = mem.get(impl)
            if r is None:
                continue
            parts.append(f"{impl} error ({r['error']})" if "error" in r
                         else f"{impl} {r['growth_mib']:.0f} MiB "
                              f"({r['step_growth_mib']:.0f} MiB in the steps alone)")
        method = next((r["method"] for r in mem.values()
                       if isinstance(r, dict) and "method" in r), "")
        lines.append(f"training memory ({mem['config']}, {mem['steps']} steps in a fresh "
                     f"process, peak RSS above the post-import RSS, {method}): "
                     + ", ".join(parts))
    lines += ["", "targets:"]
    for t in res["targets"]:
        value = "n/a" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"
        lines.append(f"  {t['status']:4}  {t['name']:52} {value:>10}  "
                     f"(target {t['comparison']} {t['threshold']:g}{t['unit']})")
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m lstmx bench``."""
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and shorter samples (about a minute)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed repetitions per measurement (default 11, quick 5; "
                             "fewer when a measurement passes 60 s, quick 10 s)")
    parser.add_argument("--configs", default=",".join(ALL_CONFIGS),
                        help=f"comma-separated subset of {','.join(ALL_CONFIGS)}")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)}")
    parser.add_argument("--threads", type=int, default=2, help="threads for every library")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a measurement with a noisy timing (interquartile range "
                             f"above {NOISY:.0%}% of the median) is measured again "
                             "(default 2)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the training-memory subprocesses")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def main(args) -> int:
    """Run ``python -m lstmx bench`` with parsed ``args``; print the report."""
    names = [c for c in args.configs.split(",") if c]
    bad = [c for c in names if c not in ALL_CONFIGS]
    impls = [i for i in args.impls.split(",") if i]
    bad_impls = [i for i in impls if i not in IMPLEMENTATIONS]
    if bad or bad_impls or "lstmx" not in impls:
        raise SystemExit(f"--configs must name some of {list(ALL_CONFIGS)} (got {bad}), "
                         f"--impls some of {list(IMPLEMENTATIONS)} including lstmx "
                         f"(got {impls})")
    repeat = args.repeat if args.repeat is not None else (5 if args.quick else 11)
    res = run_benchmarks(
        {n: ALL_CONFIGS[n] for n in names}, impls=impls, threads=args.threads, repeat=repeat,
        min_time=0.005 if args.quick else 0.02, warm_time=0.1 if args.quick else 0.5,
        max_time=10.0 if args.quick else 60.0, retries=args.retries,
        memory_config=None if args.no_memory else "L",
        progress=lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_jsonable(res), f, indent=1)
        print(f"\nwrote {args.json}")
    return 0
