"""Reduced-precision inference models: ``QuantizedLSTM`` and ``QuantizedLSTMCell`` (int8, bfloat16).

Built from a float model by ``LSTM.quantize(mode)`` / ``LSTMCell.quantize(mode)``, or from a
quantised state dict by ``from_state_dict``. They take and return float32 exactly as the
float model's ``__call__`` does (the same checks, by the float model's own code); the products
run in the compiled kernels of ``lstmx._quantized``. What is rounded, and how, is
``docs/quantization.md``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lstmx import _dispatch
from lstmx._config import LSTMConfig
from lstmx._workspace import line_aligned
from lstmx.layers import LSTM, LSTMCell

__all__ = ["QuantizedLSTM", "QuantizedLSTMCell", "MODES"]

MODES = ("int8", "bfloat16")
# The weight matrices that are quantised; biases and peepholes stay float32.
_MATRICES = ("weight_ih", "weight_hh", "weight_hr")
_F32 = np.dtype(np.float32)


def _check_mode(mode) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    return mode


def quantize_int8(W):
    """W (rows, K) float32 quantised per row (output channel), symmetric: (q int8, scale
    float32 (rows,)) with W ~ q * scale[:, None], scale = max|row| / 127 and
    q = rint(W / scale) in [-127, 127]. A row of zeros gets scale 1 (any positive scale
    represents it exactly)."""
    scale = np.abs(W).max(axis=1) / np.float32(127)
    scale[scale == 0] = 1
    q = np.rint(np.clip(W / scale[:, None], -127, 127)).astype(np.int8)
    return q, scale.astype(_F32)


def to_bfloat16(W):
    """The bits of W float32 rounded to bfloat16 (to nearest, ties to even), as uint16."""
    bits = np.ascontiguousarray(W, _F32).view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


def from_bfloat16(bits):
    """bfloat16 bits (uint16) as the float32 values they stand for."""
    return (bits.astype(np.uint32) << 16).view(_F32)


class _Quantized:
    """What ``QuantizedLSTM`` and ``QuantizedLSTMCell`` share: the quantised arrays keyed by
    name, the kernels' packed copies of them, and the loop over layers and directions."""

    _cell = False

    def __init__(self, config, mode, state):
        # Private: build with the float model's quantize() or with from_state_dict().
        self.config, self.mode = config, mode
        self._state = state
        self._pack()

    # -------------------------------------------------------------------- names and shapes

    @classmethod
    def _expected(cls, config: LSTMConfig, mode: str) -> dict:
        """Name -> (dtype, shape) of every array of the state dict, in its order."""
        out = {}
        for name, shape in config.parameter_shapes().items():
            key = name.removesuffix("_l0") if cls._cell else name
            base, _, suffix = key.partition("_l") if not cls._cell else (key, "", "")
            suffix = "_l" + suffix if suffix else ""
            if base in _MATRICES:
                out[key] = (np.dtype(np.int8) if mode == "int8" else np.dtype(np.uint16), shape)
                if mode == "int8":
                    out[f"{base}_scale{suffix}"] = (_F32, shape[:1])
            else:
                out[key] = (_F32, shape)
        return out

    def _key(self, name: str) -> str:
        return name.removesuffix("_l0") if self._cell else name

    # -------------------------------------------------------------------- construction

    @classmethod
    def _from_float(cls, model, mode):
        mode = _check_mode(mode)
        cfg = model.config
        config = dataclasses.replace(cfg, dtype=_F32)
        state = {}
        for name, value in model.state_dict().items():
            value = np.ascontiguousarray(value, dtype=_F32)
            base = name.split("_l")[0] if not cls._cell else name
            if not np.isfinite(value).all():
                raise ValueError(f"parameter {name!r} has non-finite values; a model with NaN "
                                 "or infinite parameters cannot be quantised")
            if base not in _MATRICES:
                state[name] = value
            elif mode == "int8":
                q, scale = quantize_int8(value)
                suffix = name[len(base):]
                state[name], state[f"{base}_scale{suffix}"] = q, scale
            else:
                bits = to_bfloat16(value)
                if not np.isfinite(from_bfloat16(bits)).all():
                    raise ValueError(f"parameter {name!r} has values beyond bfloat16's range "
                                     f"(about 3.39e38)")
                state[name] = bits
        # Through the checks of a loaded state: a parameter reshaped in place is named there.
        return cls.from_state_dict(config, mode, state)

    @classmethod
    def from_state_dict(cls, config, mode, state):
        """The model whose ``state_dict()`` is ``state`` (the inverse of ``state_dict``).

        ``state`` must have exactly the names, dtypes and shapes that ``config`` and ``mode``
        give: int8 weight matrices with float32 per-row scales (finite and positive) for
        "int8", uint16 bfloat16 bits for "bfloat16", float32 biases and peepholes. The arrays
        are copied.
        """
        if not isinstance(config, LSTMConfig):
            raise TypeError(f"config must be an LSTMConfig; got {type(config).__name__}")
        mode = _check_mode(mode)
        if cls._cell and (config.num_layers != 1 or config.bidirectional or config.proj_size
                          or config.reverse or config.batch_first):
            raise ValueError(f"config is not a cell's (one layer, one direction, no "
                             f"projection): {config}")
        unsupported = [f"{name}={getattr(config, name)!r}" for name, plain in
                       (("layer_norm", False), ("zoneout", (0.0, 0.0)), ("cell_clip", None))
                       if getattr(config, name) != plain]
        if unsupported:
            raise ValueError(f"a model with {', '.join(unsupported)} cannot be quantised: the "
                             f"quantised kernels compute the plain cell (dropout and "
                             f"recurrent_dropout, which inference does not apply, can be)")
        config = dataclasses.replace(config, dtype=_F32)
        if not hasattr(state, "keys"):
            raise TypeError(f"state must be a mapping; got {type(state).__name__}")
        expected = cls._expected(config, mode)
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise KeyError(f"state keys do not match a {mode} {cls.__name__} of {config}: "
                           f"missing {missing}, unexpected {unexpected}")
        checked = {}
        for name, (dtype, shape) in expected.items():
            value = state[name]
            if not isinstance(value, np.ndarray):
                raise TypeError(f"state[{name!r}] must be a NumPy array; got "
                                f"{type(value).__name__}")
            if value.dtype.newbyteorder("=") != dtype or value.shape != shape:
                raise ValueError(f"state[{name!r}] must be {dtype} with shape {shape}; got "
                                 f"{value.dtype} with shape {value.shape}")
            value = np.array(value, dtype=dtype.newbyteorder("="), order="C", copy=True)
            if "_scale" in name and not (np.isfinite(value).all() and (value > 0).all()):
                raise ValueError(f"state[{name!r}] must hold finite positive scales; got "
                                 f"values from {value.min()} to {value.max()}")
            checked[name] = value
        return cls(config, mode, checked)

    def _pack(self):
        """The arrays the kernels take, per layer and direction (see lstmx._quantized.forward):
        int8 matrices in the integer products' layout (``pack_weights``: zero-padded to whole
        vectors and tiles, tiles interleaved) with their row sums (which correct for the
        activations' zero point) and scales, bfloat16 matrices as the bfloat16 products take
        them (``pack_bfloat16``: packed bits for vdpbf16ps, float32 values for BLAS)."""
        kernels = _dispatch.quantized()
        cfg, s = self.config, self._state
        depth = max(cfg.input_size, cfg.num_directions * cfg.output_size, cfg.hidden_size)
        if self.mode == "int8" and depth > kernels.MAX_INT_DEPTH:
            # 127 * 127 * depth must fit the int32 sums.
            raise ValueError(f"int8 products are summed exactly in int32, which holds sums "
                             f"over at most {kernels.MAX_INT_DEPTH} inputs; this model's "
                             f"largest product sums over {depth}")
        self._layers = []
        for k in range(cfg.num_layers):
            for d in range(cfg.num_directions):
                n = cfg.names(k, d)
                mats = []
                for name in (n.weight_ih, n.weight_hh, n.weight_hr):
                    if name is None:
                        mats += [None, None, None] if self.mode == "int8" else [None]
                        continue
                    key = self._key(name)
                    if self.mode == "int8":
                        q = s[key]
                        base, _, suffix = key.partition("_l") if not self._cell else \
                            (key, "", "")
                        scale = s[f"{base}_scale" + ("_l" + suffix if suffix else "")]
                        packed, sums = kernels.pack_weights(q)
                        scales = np.zeros(packed.shape[0], _F32)
                        scales[:q.shape[0]] = scale
                        mats += [packed, line_aligned(scales), sums]
                    else:
                        mats.append(kernels.pack_bfloat16(np.ascontiguousarray(s[key])))
                G = 4 * cfg.hidden_size
                bias = (s[self._key(n.bias_ih)] + s[self._key(n.bias_hh)] if cfg.bias
                        else np.zeros(G, _F32))
                peep = (np.stack([s[self._key(p)] for p in n.peepholes]) if cfg.peephole
                        else None)
                self._layers.append((tuple(mats), bias, peep))
        self._kernels = kernels

    # -------------------------------------------------------------------- state and display

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the quantised arrays: for "int8" each weight matrix as int8 with its
        per-row float32 scales under ``<name>_scale`` (``weight_ih_scale_l0``); for
        "bfloat16" each weight matrix as uint16 bfloat16 bits; biases and peepholes float32."""
        return {name: value.copy() for name, value in self._state.items()}

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the kernels compute with (int8 weights as int8 with a float32
        scale and an int32 sum per row, bfloat16 ones as bfloat16 where vdpbf16ps runs and as
        float32 for BLAS elsewhere: see docs/quantization.md)."""
        return sum(a.nbytes for mats, bias, peep in self._layers
                   for a in (*mats, bias, peep) if a is not None)

    def __reduce__(self):
        return type(self).from_state_dict, (self.config, self.mode, self._state)

    def _run(self, x, h_n, c_n, lengths):
        """The layers over x (T, B, I) time-major; h_n, c_n (L*D, B, .) receive the final
        state. Returns y (T, B, D*H_out)."""
        cfg = self.config
        T, B = x.shape[:2]
        D, Hout = cfg.num_directions, cfg.output_size
        identity = cfg.output_activation == "identity"
        layer_input = x
        for k in range(cfg.num_layers):
            y = np.empty((T, B, D * Hout), _F32)
            I = cfg.input_size if k == 0 else D * Hout
            x2 = layer_input.reshape(T * B, I)
            for d in range(D):
                idx = k * D + d
                mats, bias, peep = self._layers[idx]
                self._kernels.forward(mode=self.mode, x=x2, input_size=I, weights=mats,
                                      bias=bias, peep=peep, lengths=lengths, h=h_n[idx],
                                      c=c_n[idx], y=y, y_col=d * Hout,
                                      reverse=cfg.is_reversed(d), identity=identity)
            layer_input = y
        return layer_input


class QuantizedLSTM(_Quantized):
    """An ``LSTM`` for inference with int8 or bfloat16 products; build it with
    ``lstm.quantize(mode)``.

    ``y, (h_n, c_n) = q(x, state=None, lengths=None)`` as ``LSTM.__call__``: float32 in and
    out, every option of the float model (layers, directions, ``reverse``, projection,
    peepholes, identity output, ``batch_first``, ``lengths``, unbatched input).

    "int8": weight matrices quantised once per output channel (symmetric, scale
    max|row| / 127); x, h and (with a projection) m quantised per row at every step to int8
    (symmetric, scale max|row| / 127); integer products summed exactly in int32, then scaled
    back; gates, cell state and all element-wise work in float32 (sigmoid and tanh as rational
    functions, within 4e-7). "bfloat16": weights and the same activations rounded to bfloat16,
    products and sums in float32. The error this makes is bounded in ``docs/quantization.md``.

    Attributes
    ----------
    config : LSTMConfig
        The float model's configuration (with dtype float32).
    mode : {"int8", "bfloat16"}
    nbytes : int
        Memory of the weights as the kernels hold them.

    Examples
    --------
    >>> import numpy as np, lstmx
    >>> lstm = lstmx.LSTM(8, 16, seed=0)
    >>> q = lstm.quantize("int8")
    >>> x = np.random.default_rng(0).standard_normal((5, 3, 8)).astype(np.float32)
    >>> y, (h_n, c_n) = q(x)
    >>> y.shape, y.dtype
    ((5, 3, 16), dtype('float32'))
    >>> bool(np.abs(y - lstm(x)[0]).max() < 0.02)
    True
    """

    @classmethod
    def from_float(cls, lstm, mode) -> QuantizedLSTM:
        """``lstm`` (an ``LSTM``) quantised; ``lstm.quantize(mode)`` calls this."""
        if not isinstance(lstm, LSTM):
            raise TypeError(f"lstm must be an lstmx.LSTM; got {type(lstm).__name__}")
        return cls._from_float(lstm, mode)

    # The float model's input handling, reused as it is: it reads only self.config.
    _inputs = LSTM._inputs
    _output = LSTM._output
    _is_unbatched = staticmethod(LSTM._is_unbatched)
    _batch_one = LSTM._batch_one
    _unbatch = LSTM._unbatch

    def __repr__(self):
        c = self.config
        opts = [f"{c.input_size}", f"{c.hidden_size}"]
        defaults = LSTMConfig(1, 2)
        for name in ("num_layers", "bias", "batch_first", "bidirectional", "proj_size",
                     "peephole", "output_activation", "reverse"):
            if getattr(c, name) != getattr(defaults, name):
                opts.append(f"{name}={getattr(c, name)!r}")
        return f"QuantizedLSTM({', '.join(opts)}, mode={self.mode!r}, nbytes={self.nbytes})"

    def __call__(self, x, state=None, lengths=None):
        """Inference over a batch of sequences, as ``LSTM.__call__`` (same arguments and
        shapes; float32 in and out)."""
        if self._is_unbatched(x):
            y, (h_n, c_n) = self(*self._batch_one(x, state), lengths)
            return self._unbatch(y), (h_n[:, 0], c_n[:, 0])
        x, h_n, c_n, lengths = self._inputs(x, state, lengths, training=False)
        y = self._run(x, h_n, c_n, lengths)
        return self._output(y), (h_n, c_n)


class QuantizedLSTMCell(_Quantized):
    """An ``LSTMCell`` for inference with int8 or bfloat16 products; build it with
    ``cell.quantize(mode)``.

    ``h, c = q(x, state=None)`` as ``LSTMCell.__call__``: x (B, I), state (h (B, H),
    c (B, H)), float32. The quantisation is ``QuantizedLSTM``'s; the state dict has the
    cell's names (``weight_ih``, ``weight_ih_scale``, ...).

    Examples
    --------
    >>> import numpy as np, lstmx
    >>> q = lstmx.LSTMCell(4, 6, seed=0).quantize("bfloat16")
    >>> h, c = q(np.ones((2, 4), np.float32))
    >>> h.shape
    (2, 6)
    """

    _cell = True
    _inputs = LSTMCell._inputs

    @classmethod
    def from_float(cls, cell, mode) -> QuantizedLSTMCell:
        """``cell`` (an ``LSTMCell``) quantised; ``cell.quantize(mode)`` calls this."""
        if not isinstance(cell, LSTMCell):
            raise TypeError(f"cell must be an lstmx.LSTMCell; got {type(cell).__name__}")
        return cls._from_float(cell, mode)

    def __repr__(self):
        c = self.config
        return (f"QuantizedLSTMCell({c.input_size}, {c.hidden_size}, bias={c.bias}, "
                f"peephole={c.peephole}, output_activation={c.output_activation!r}, "
                f"mode={self.mode!r}, nbytes={self.nbytes})")

    def __call__(self, x, state=None):
        """One step. x (B, I); state (h (B, H), c (B, H)) or None for zeros.
        Returns the new (h, c)."""
        x, h, c, _ = self._inputs(x, state, training=False)
        self._run(x, h, c, None)
        return h[0], c[0]
