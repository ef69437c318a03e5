"""Gate orders and the moves between them; building a model from converted parameters.

Every framework stacks the four gate blocks of an LSTM along one axis of its weights, each in
its own order. lstmx (as PyTorch) uses i, f, g, o; the letters below name the same four
gates in each framework's order, with ``g`` for the candidate (Keras' c, TF1's j, ONNX's c).
"""
from __future__ import annotations

import importlib

import numpy as np

from lstmx._config import check_dtype
from lstmx.layers import LSTM, LSTMCell

LSTMX = "ifgo"
KERAS = "ifgo"
TF1 = "igfo"
ONNX = "iofg"


def reorder(a, src: str, dst: str, axis: int = 0):
    """``a`` with its four gate blocks along ``axis`` moved from order ``src`` to ``dst``."""
    a = np.asarray(a)
    blocks = np.split(a, 4, axis=axis)
    return np.concatenate([blocks[src.index(gate)] for gate in dst], axis=axis)


def optional_import(module: str, purpose: str, how: str):
    """Import an optional dependency, or an ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{purpose} needs the optional package {module!r}; {how}") from err


def resolve_dtype(dtype, found) -> np.dtype:
    """The dtype asked for, else float64 if the source is float64, else float32."""
    if dtype is not None:
        return check_dtype(dtype)
    return np.dtype(np.float64) if np.dtype(found) == np.float64 else np.dtype(np.float32)


def check_flag(name: str, value) -> bool:
    """A bool option of a converter (``"no"`` is not False, nor True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__} {value!r}")
    return bool(value)


def build_lstm(params, **options) -> LSTM:
    """An ``LSTM`` with ``options`` holding ``params`` (checked by ``load_state_dict``)."""
    model = LSTM(**options)
    _load(model, params)
    return model


def build_cell(params, **options) -> LSTMCell:
    """An ``LSTMCell`` with ``options`` holding ``params`` (layer names, ``_l0`` suffixed)."""
    model = LSTMCell(**options)
    _load(model, {name[:-3]: value for name, value in params.items()})
    return model


def _load(model, params):
    try:
        model.load_state_dict(params)
    except KeyError as err:  # a converter's input is a value, not a mapping to match
        raise ValueError(f"the converted parameters do not make a {model!r}: "
                         f"{err.args[0]}") from err


def layer_params(model):
    """``(config, params)`` of an ``LSTM`` or ``LSTMCell``, parameters keyed by layer names."""
    if isinstance(model, LSTM):
        return model.config, model.state_dict()
    if isinstance(model, LSTMCell):
        return model.config, {name + "_l0": v for name, v in model.state_dict().items()}
    raise TypeError(f"model must be an lstmx.LSTM or lstmx.LSTMCell; got {type(model).__name__}")
