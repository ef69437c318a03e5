"""Benchmark problems and the implementations compared on them, all built from lstmx's weights.

For a configuration (``BenchConfig``) and an implementation name, ``build_impl`` makes the
model and its inputs with the *same* seeded weights: ``lstmx`` (the compiled layers),
``reference`` (the NumPy reference, in the compute dtype), ``torch`` (``torch.nn.LSTM`` /
``LSTMCell``), ``onnxruntime`` (the graph of ``lstmx.interop.to_onnx``) and
``lstmx-peephole``; the regularised and layer-normalised ones and torch's layer-norm
composition are in ``_bench_regularised`` (``REGULARISED_IMPLS``), the reduced-precision ones
(``lstmx-int8``, ``lstmx-bf16``, onnxruntime's ``DynamicQuantizeLSTM``) in
``_bench_quantized``. Each object has the same methods (``forward``, ``forward_train``,
``backward``, ``train``), so that timing code never needs to know which one it holds. Shared
by ``python -m lstmx bench`` and the asv suite (``benchmarks/``).
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from lstmx._check import rel_err

__all__ = ["BenchConfig", "CONFIGS", "CELL", "ALL_CONFIGS", "DEFAULT_CONFIGS",
           "REGULARISED_CONFIGS", "IMPLEMENTATIONS", "DEFAULT_IMPLS", "REGULARISED_IMPLS",
           "UnavailableError", "build_impl", "onnx_model", "ort_session", "float64_reference",
           "max_rel_error"]

DEFAULT_IMPLS = ("lstmx", "reference", "torch", "onnxruntime", "lstmx-peephole")
# Timed on request (``python -m lstmx bench --regularised``): each costs about as much as
# lstmx itself, and they answer another question (what an option costs).
REGULARISED_IMPLS = ("lstmx-layernorm", "lstmx-dropout", "lstmx-recurrent-dropout",
                     "lstmx-zoneout", "torch-layernorm")
IMPLEMENTATIONS = DEFAULT_IMPLS + REGULARISED_IMPLS


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
        direction (docs/equations.md); the transcendental functions are not counted."""
        T = 1 if self.cell else self.T
        flops = 0
        for k in range(self.num_layers):
            inputs = self.I if k == 0 else self.directions * self.H
            flops += self.directions * 2 * T * self.B * 4 * self.H * (inputs + self.H)
        return flops

    def train_flops(self) -> int:
        """Flops of a forward and a backward pass: backward's four products (dx, dh, dW,
        dU; dx included, as every implementation here computes it) are each the size of
        one of the forward's two, so three times the forward."""
        return 3 * self.forward_flops()

    def describe(self) -> str:
        if self.cell:
            return f"LSTMCell step B={self.B} I={self.I} H={self.H}"
        extra = ""
        if self.num_layers > 1:
            extra += f" layers={self.num_layers}"
        if self.bidirectional:
            extra += " bidirectional"
        return f"T={self.T} B={self.B} I={self.I} H={self.H}{extra}"


# The configurations of the bench (float32, 2 threads, zero initial state): streaming (S),
# medium and large batches, a stacked bidirectional model, one univariate series per batch
# row (I1), a wide layer (H1024) and a long sequence with a small batch (T400).
CONFIGS = {
    "S": BenchConfig("S", T=100, B=1, I=32, H=32),
    "M": BenchConfig("M", T=50, B=32, I=128, H=256),
    "L": BenchConfig("L", T=100, B=64, I=512, H=512),
    "M-bi2": BenchConfig("M-bi2", T=50, B=32, I=128, H=256, num_layers=2, bidirectional=True),
    "I1": BenchConfig("I1", T=200, B=32, I=1, H=64),
    "H1024": BenchConfig("H1024", T=20, B=128, I=256, H=1024),
    "T400": BenchConfig("T400", T=400, B=8, I=64, H=128),
}
CELL = BenchConfig("cell", T=1, B=1, I=32, H=32, cell=True)
DEFAULT_CONFIGS = {**CONFIGS, CELL.name: CELL}
# Dropout acts between stacked layers: L with two of them, for its cost at L (M-bi2 is M's).
L2 = BenchConfig("L2", T=100, B=64, I=512, H=512, num_layers=2)
ALL_CONFIGS = {**DEFAULT_CONFIGS, L2.name: L2}
# Where --regularised times the options: M and L, and their stacked versions for dropout.
REGULARISED_CONFIGS = ("M", "L", "M-bi2", "L2")


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
    # The implementation whose forward output this one's equals (the run reports their
    # difference), or None for another function.
    same_output_as = "lstmx"

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


@contextlib.contextmanager
def _kernels_of(variant):
    """Run lstmx on the kernel variant ``variant`` (``_dispatch.load``) inside the block."""
    from lstmx import _dispatch, _engine

    kernels = _dispatch.load(variant)
    saved, _engine._kernels = _engine._kernels, kernels
    try:
        yield
    finally:
        _engine._kernels = saved


class LstmxBaselineImpl(LstmxImpl):
    """lstmx on its baseline kernel variant (BLAS products, no tiles), in this process: each
    timed sample runs with the engine's kernels swapped, so that it is interleaved with the
    others and timed under the same conditions (their threads spinning after their calls,
    the machine's drift)."""

    name = "lstmx-baseline"

    def context(self, mode):
        return _kernels_of("baseline")

    def prepare_backward(self):
        with self.context("train"):
            super().prepare_backward()


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
        self.feed = {"X": self.x[None] if config.cell else self.x}
        if config.cell:
            zeros = np.zeros((1, config.B, config.H), self.dtype)
            self.feed.update(initial_h=zeros, initial_c=zeros)
        # e.g. float64: "LSTM operator does not support double yet" (onnxruntime 1.31)
        self.session = ort_session(ort, proto.SerializeToString(), threads, self.feed)

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
    """The largest ``rel_err`` over the arrays of ``want`` (keyed alike in ``got``)."""
    return max(rel_err(got[k], want[k]) for k in want)


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
                                           OnnxruntimeImpl, LstmxPeepholeImpl,
                                           LstmxBaselineImpl)}


def build_impl(impl: str, config, dtype=np.float32, seed=0, threads=2) -> _Impl:
    """The implementation ``impl`` of ``config`` (a ``BenchConfig`` or a name in
    ``ALL_CONFIGS``), with lstmx's seeded weights. Raises ``UnavailableError`` when it cannot
    run here."""
    if isinstance(config, str):
        if config not in ALL_CONFIGS:
            raise ValueError(f"config must be one of {list(ALL_CONFIGS)}; got {config!r}")
        config = ALL_CONFIGS[config]
    if impl in REGULARISED_IMPLS:
        from lstmx._bench_regularised import REGULARISED_CLASSES

        return REGULARISED_CLASSES[impl](config, dtype, seed, threads)
    from lstmx._bench_quantized import IMPL_CLASSES as quantized

    classes = {**_IMPL_CLASSES, **quantized}
    if impl not in classes:
        raise ValueError(f"impl must be one of {[*classes, *REGULARISED_IMPLS]}; "
                         f"got {impl!r}")
    return classes[impl](config, dtype, seed, threads)


def ort_session(ort, model_bytes, threads, probe_feed=None):
    """An onnxruntime CPU session of a serialised graph, with the bench's threads:
    ``threads`` intra-op, one inter-op, sequential execution. With ``probe_feed``, run once
    on it: UnavailableError (with onnxruntime's reason) when the session cannot build or
    run the graph."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if probe_feed is None:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    try:
        session = ort.InferenceSession(model_bytes, options,
                                       providers=["CPUExecutionProvider"])
        probe = ort.RunOptions()
        probe.log_severity_level = 4  # the failure is reported below, not logged
        session.run(None, probe_feed, probe)
    except Exception as err:  # onnxruntime's errors have no common public base class
        msg = str(err).strip().splitlines()[-1]
        raise UnavailableError(f"onnxruntime cannot run it: {msg}") from err
    return session


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


