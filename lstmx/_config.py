"""The configuration of an LSTM and the names and shapes of its parameters.

One place says what a model with given options contains; the layers, the reference, the
engine, saving and the docs all read it from here.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
import typing

import numpy as np

__all__ = ["LSTMConfig", "OUTPUT_ACTIVATIONS", "INITIALISERS", "check_dtype"]

OUTPUT_ACTIVATIONS = ("tanh", "identity")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype) -> np.dtype:
    """The compute dtype named by ``dtype``: float32 or float64, else a TypeError."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"dtype must be float32 or float64; got {dtype!r}") from err
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64; got {dt}")
    return dt


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    try:
        value = operator.index(value)
    except TypeError as err:
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}") from err
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def _check_probability(name: str, value) -> float:
    """A probability in [0, 1): 1 would drop (or freeze) everything."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"{name} must be a float in [0, 1); got {type(value).__name__} "
                        f"{value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:  # (also rejects NaN)
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return value


def _check_zoneout(value) -> tuple[float, float]:
    """``zoneout`` as the pair (p_c, p_h): a float sets both."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"zoneout must be a float or a pair (p_c, p_h); got {value!r}")
        return (_check_probability("zoneout[0] (p_c)", value[0]),
                _check_probability("zoneout[1] (p_h)", value[1]))
    p = _check_probability("zoneout", value)
    return (p, p)


def _check_clip(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"cell_clip must be None or a positive float; got "
                        f"{type(value).__name__} {value!r}")
    value = float(value)
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"cell_clip must be a positive finite float; got {value!r}")
    return value


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__} {value!r}")
    return bool(value)


class ParameterNames(typing.NamedTuple):
    """The parameter names of one layer and direction; None where the options have none."""

    weight_ih: str
    weight_hh: str
    bias_ih: str | None
    bias_hh: str | None
    weight_hr: str | None
    peepholes: tuple | None  # (weight_ci, weight_cf, weight_co)
    # (ih_weight, ih_bias, hh_weight, hh_bias, c_weight, c_bias), with layer_norm
    layer_norm: tuple | None = None


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """Options of a (possibly stacked, bidirectional) LSTM; see ``lstmx.LSTM``."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    proj_size: int = 0
    peephole: bool = False
    output_activation: str = "tanh"
    dtype: np.dtype = np.dtype(np.float32)
    # Last, so that positional constructions written before it existed keep their meaning.
    reverse: bool = False
    # Regularisation and normalisation (docs/equations.md, "Regularisation and layer
    # normalisation"); the defaults are the plain LSTM.
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: tuple = (0.0, 0.0)  # (p_c, p_h); a float sets both
    layer_norm: bool = False
    cell_clip: float | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "input_size", _check_int("input_size", self.input_size, 1))
        set_(self, "hidden_size", _check_int("hidden_size", self.hidden_size, 1))
        set_(self, "num_layers", _check_int("num_layers", self.num_layers, 1))
        set_(self, "proj_size", _check_int("proj_size", self.proj_size, 0))
        for name in ("bias", "batch_first", "bidirectional", "peephole", "reverse",
                     "layer_norm"):
            set_(self, name, _check_bool(name, getattr(self, name)))
        if self.reverse and self.bidirectional:
            raise ValueError("reverse=True runs a one-direction layer backwards in time; it "
                             "cannot be combined with bidirectional=True (whose second "
                             "direction already does); got reverse=True, bidirectional=True")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}); "
                             f"got {self.proj_size}")
        if (not isinstance(self.output_activation, str)
                or self.output_activation not in OUTPUT_ACTIVATIONS):
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}; "
                             f"got {self.output_activation!r}")
        set_(self, "dtype", check_dtype(self.dtype))
        set_(self, "dropout", _check_probability("dropout", self.dropout))
        set_(self, "recurrent_dropout",
             _check_probability("recurrent_dropout", self.recurrent_dropout))
        set_(self, "zoneout", _check_zoneout(self.zoneout))
        set_(self, "cell_clip", _check_clip(self.cell_clip))

    # Cached: the engine and LSTMCell ask at every call.
    @functools.cached_property
    def regularised(self) -> bool:
        """Whether a layer's steps differ from the plain cell's in training (any of
        recurrent dropout, zoneout, layer norm, cell clipping; between-layer dropout is
        applied outside the layers)."""
        return (self.recurrent_dropout > 0 or self.zoneout != (0.0, 0.0) or self.layer_norm
                or self.cell_clip is not None)

    @functools.cached_property
    def draws_masks(self) -> bool:
        """Whether training draws random masks (dropout between layers, recurrent dropout,
        zoneout)."""
        return (self.recurrent_dropout > 0 or self.zoneout != (0.0, 0.0)
                or (self.dropout > 0 and self.num_layers > 1))

    @functools.cached_property
    def regularised_inference(self) -> bool:
        """As ``regularised``, at inference (where recurrent dropout does nothing)."""
        return self.zoneout != (0.0, 0.0) or self.layer_norm or self.cell_clip is not None

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """H_out: the size of h (the projection size when projecting)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def is_reversed(self, direction: int) -> bool:
        """Whether ``direction`` (0 or 1) of every layer runs from each sequence's last
        valid step back to its first: the second of a bidirectional layer, or the only one
        of a ``reverse`` layer."""
        return (direction == 1) != self.reverse

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of every parameter, in ``torch.nn.LSTM.state_dict()`` order."""
        return dict(self._shapes)

    def names(self, layer: int, direction: int) -> ParameterNames:
        """The parameter names of one layer and direction (those the options leave out
        are None)."""
        return self._names[layer * self.num_directions + direction]

    # Computed once per configuration: a training step of a small cell spends microseconds
    # in Python, and formatting names was a measurable part of it.
    @functools.cached_property
    def _names(self) -> tuple:
        names = []
        for k in range(self.num_layers):
            for d in range(self.num_directions):
                s = self.suffix(k, d)
                names.append(ParameterNames(
                    "weight_ih" + s, "weight_hh" + s,
                    "bias_ih" + s if self.bias else None,
                    "bias_hh" + s if self.bias else None,
                    "weight_hr" + s if self.proj_size else None,
                    tuple(f"weight_c{gate}" + s for gate in "ifo") if self.peephole else None,
                    tuple(f"layer_norm_{part}_{kind}" + s for part in ("ih", "hh", "c")
                          for kind in ("weight", "bias")) if self.layer_norm else None))
        return tuple(names)

    @functools.cached_property
    def parameter_names(self) -> tuple:
        """The keys of ``parameter_shapes()``, in its order."""
        return tuple(self._shapes)

    @functools.cached_property
    def cell_names(self) -> tuple:
        """``parameter_names`` as an ``LSTMCell`` shows them (without the layer suffix)."""
        return tuple(name.removesuffix("_l0") for name in self.parameter_names)

    @functools.cached_property
    def _shapes(self) -> dict:
        H, P = self.hidden_size, self.proj_size
        shapes = {}
        for k in range(self.num_layers):
            for d in range(self.num_directions):
                n = self.names(k, d)
                shapes[n.weight_ih] = (4 * H, self.layer_input_size(k))
                shapes[n.weight_hh] = (4 * H, self.output_size)
                if self.bias:
                    shapes[n.bias_ih] = (4 * H,)
                    shapes[n.bias_hh] = (4 * H,)
                if P > 0:
                    shapes[n.weight_hr] = (P, H)
                for name in n.peepholes or ():
                    shapes[name] = (H,)
                for j, name in enumerate(n.layer_norm or ()):
                    shapes[name] = (4 * H,) if j < 4 else (H,)
        return shapes

    def init_parameters(self, seed=None, init: str = "pytorch") -> dict[str, np.ndarray]:
        """Fresh parameters, reproducible with ``seed``.

        ``init="pytorch"``: every parameter uniform in (-1/sqrt(H), 1/sqrt(H)), as PyTorch.
        ``init="keras"``: Keras' LSTM defaults: Glorot-uniform input (and projection) weights,
        orthogonal recurrent weights, zero biases but for a forget-gate bias of 1
        (``unit_forget_bias``, held in ``bias_ih``), and zero peepholes.
        Either way, layer-norm gains are 1 and their biases 0 (drawing nothing, so the other
        parameters are those of the model without layer norm).
        """
        if not isinstance(init, str) or init not in INITIALISERS:
            raise ValueError(f"init must be one of {INITIALISERS}; got {init!r}")
        try:
            rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as err:
            raise type(err)(f"seed must be None, a non-negative integer or a NumPy "
                            f"Generator/SeedSequence; got {seed!r} ({err})") from err
        H = self.hidden_size
        params = {}
        for name, shape in self.parameter_shapes().items():
            if name.startswith("layer_norm_"):
                value = np.full(shape, 1.0 if "_weight" in name else 0.0)
            elif init == "pytorch":
                bound = 1.0 / np.sqrt(H)
                value = rng.uniform(-bound, bound, size=shape)
            elif name.startswith(("weight_ih", "weight_hr")):
                value = _glorot_uniform(rng, shape)
            elif name.startswith("weight_hh"):
                # Keras' recurrent_kernel (H_out, 4H) is orthogonal; ours is its transpose.
                value = _orthogonal(rng, shape[::-1]).T
            elif name.startswith("bias_ih"):
                value = np.zeros(shape)
                value[H:2 * H] = 1.0
            else:  # bias_hh, peepholes
                value = np.zeros(shape)
            params[name] = np.ascontiguousarray(value, dtype=self.dtype)
        return params


INITIALISERS = ("pytorch", "keras")


def _glorot_uniform(rng, shape):
    """Glorot (Xavier) uniform for a torch-layout (fan_out, fan_in) weight."""
    fan_out, fan_in = shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _orthogonal(rng, shape):
    """A (rows, cols) matrix with orthonormal rows or columns, as Keras' Orthogonal."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # a unique, uniformly distributed factor
    return q if rows >= cols else q.T
