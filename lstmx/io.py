"""Saving and loading models as ``.npz`` archives, without pickle.

An archive holds one array per parameter, named as in ``state_dict()``, and a header
``__lstmx__``: a 0-d string array of JSON ``{"format": "lstmx", "version": 1, "class":
"LSTM" or "LSTMCell", "config": {...}}`` with every ``LSTMConfig`` field (the dtype by name).
A quantised model (class ``"QuantizedLSTM"`` or ``"QuantizedLSTMCell"``) has ``"mode":
"int8"`` or ``"bfloat16"`` too, and its ``state_dict()``'s arrays: int8 weight matrices with
their float32 per-row scales, or bfloat16 bits as uint16; biases and peepholes float32.
Loading never unpickles (``allow_pickle=False``) and checks the whole file before building
or changing any model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json

import numpy as np

from lstmx import _archive
from lstmx._config import LSTMConfig
from lstmx.layers import LSTM, LSTMCell
from lstmx.quantized import QuantizedLSTM, QuantizedLSTMCell

__all__ = ["save", "load"]

HEADER = "__lstmx__"
FORMAT, VERSION = "lstmx", 1
_CLASSES = {"LSTM": LSTM, "LSTMCell": LSTMCell, "QuantizedLSTM": QuantizedLSTM,
            "QuantizedLSTMCell": QuantizedLSTMCell}
_QUANTIZED = (QuantizedLSTM, QuantizedLSTMCell)
_CELLS = (LSTMCell, QuantizedLSTMCell)
MODES = ("int8", "bfloat16")
# The weight matrices a quantised model stores in reduced precision (int8 ones with a scale
# per row); its biases and peepholes stay float32.
_MATRICES = ("weight_ih", "weight_hh", "weight_hr")
_CONFIG_FIELDS = [f.name for f in dataclasses.fields(LSTMConfig)]
# The options of an LSTMCell; its other config fields keep LSTMConfig's defaults.
_CELL_FIELDS = ("input_size", "hidden_size", "bias", "peephole", "output_activation", "dtype",
                "zoneout", "layer_norm", "cell_clip")
# Fields added after version 1 was first written, with the value that archives without them
# mean.
_LATER_FIELDS = {"reverse": False, "dropout": 0.0, "recurrent_dropout": 0.0,
                 "zoneout": (0.0, 0.0), "layer_norm": False, "cell_clip": None}
KIND = "lstmx archive"  # what messages call the file
MAX_HEADER_BYTES = 1 << 16  # the JSON of a configuration is a few hundred bytes


def save(model, file) -> None:
    """Save ``model`` and its configuration to an ``.npz`` archive.

    Parameters
    ----------
    model : LSTM, LSTMCell, QuantizedLSTM or QuantizedLSTMCell
    file : str, path or writable binary file
        Written exactly at this path (no ``.npz`` is appended). A path is written through a
        temporary file in the same directory and renamed, so a failed save leaves any
        previous file untouched.
    """
    if not isinstance(model, (LSTM, LSTMCell) + _QUANTIZED):
        raise TypeError(f"model must be an lstmx.LSTM or lstmx.LSTMCell, or a QuantizedLSTM "
                        f"or QuantizedLSTMCell; got {type(model).__name__}")
    _archive.check_file(file, "write")
    meta = {"format": FORMAT, "version": VERSION, "class": type(model).__name__}
    if isinstance(model, _QUANTIZED):
        meta["mode"] = model.mode
        state = model.state_dict()
        # What load will demand: a model changed in place since it was made would not load.
        expected = quantized_layout(model.config, model.mode,
                                    isinstance(model, QuantizedLSTMCell))
        wrong = {k: (v.dtype, v.shape) for k, v in state.items()
                 if k not in expected or (v.dtype, v.shape) != expected[k]}
        if wrong or len(state) != len(expected):
            raise ValueError(f"cannot save the model: its arrays {wrong or sorted(state)} do "
                             f"not have the layout of a {model.mode} "
                             f"{type(model).__name__} with its config")
    else:
        problem = model._changed_parameter()
        if problem is not None:  # the file would not load
            raise ValueError(f"cannot save the model: {problem}")
        state = model.state_dict()
    config = dataclasses.asdict(model.config)
    config["dtype"] = model.config.dtype.name
    meta["config"] = config
    _archive.write(file, {HEADER: np.array(json.dumps(meta)), **state})


def scale_name(name: str) -> str:
    """The scale of an int8 matrix: ``weight_ih_l0_reverse`` -> ``weight_ih_scale_l0_reverse``,
    ``weight_ih`` (a cell's) -> ``weight_ih_scale``."""
    base, sep, rest = name.partition("_l")
    return f"{base}_scale{sep}{rest}"


def quantized_layout(cfg, mode, cell) -> dict:
    """Name -> (dtype, shape) of every array of a quantised model of ``cfg`` and ``mode``."""
    shapes = cfg.parameter_shapes()
    if cell:
        shapes = {k.removesuffix("_l0"): v for k, v in shapes.items()}
    f32, out = np.dtype(np.float32), {}
    for name, shape in shapes.items():
        if not name.startswith(_MATRICES):
            out[name] = (f32, shape)
        elif mode == "int8":
            out[name] = (np.dtype(np.int8), shape)
            out[scale_name(name)] = (f32, shape[:1])
        else:
            out[name] = (np.dtype(np.uint16), shape)  # bfloat16 bits
    return out


def load(file, *, into=None):
    """Load a model saved by ``save``.

    Parameters
    ----------
    file : str, path or readable binary file
    into : LSTM or LSTMCell, optional
        Copy the parameters into this model instead of building a new one; its class and
        configuration must be the saved ones. (A quantised model is always loaded as a new
        one: it has no parameters to copy into.)

    Returns
    -------
    LSTM, LSTMCell, QuantizedLSTM or QuantizedLSTMCell
        A new model, or ``into``.

    Raises
    ------
    ValueError
        If the file is not an lstmx archive, is corrupt or truncated, holds arrays that
        ``QuantizedLSTM.from_state_dict`` refuses (scales that are not finite and positive,
        say), or does not match ``into``; the message names the file and the problem.
        Nothing is changed then.

    Notes
    -----
    What the file claims is checked before it is believed: the header's configuration
    against the number of members, each member's declared dtype and shape against the
    configuration and against the bytes the archive holds for it, all before any array
    is allocated. So the work and memory of a load are bounded by the file's size (by 1032
    times it, deflate's largest ratio, for a compressed archive). Members must have distinct
    names; arrays of either byte order are read.
    """
    with contextlib.ExitStack() as stack:
        archive = _archive.open_archive(stack, file, KIND)
        name = archive.name
        cls, config, mode = _read_header(archive)
        try:
            cfg = LSTMConfig(**config)
            if cls in _CELLS and cfg != LSTMConfig(**{k: config[k] for k in _CELL_FIELDS}):
                raise ValueError(f"an LSTMCell has only the options {list(_CELL_FIELDS)}")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} has an invalid {cls.__name__} configuration: "
                             f"{err}") from err

        # Counted before any name is built: a header claiming a million layers must cost
        # no more than one claiming one.
        matrices = 2 + (cfg.proj_size > 0)
        per_layer = (matrices + 2 * cfg.bias + 3 * cfg.peephole + matrices * (mode == "int8")
                     + 6 * cfg.layer_norm)
        want = cfg.num_layers * cfg.num_directions * per_layer
        got = len(archive.members) - 1
        if want > got + 16:  # (a few missing ones are named below)
            raise ValueError(f"{name} does not hold the parameters of its configuration: "
                             f"it needs {want} parameter arrays; the archive has {got}")
        if mode is not None:
            expected = quantized_layout(cfg, mode, cls is QuantizedLSTMCell)
        else:
            expected = cfg.parameter_shapes()
            if cls is LSTMCell:
                expected = {k[:-3]: v for k, v in expected.items()}  # the cell drops "_l0"
            expected = {k: (cfg.dtype, shape) for k, shape in expected.items()}
        keys = [k for k in archive.members if k != HEADER]
        missing = [k for k in expected if k not in archive.members]
        unexpected = [k for k in keys if k not in expected]
        if missing or unexpected:
            raise ValueError(f"{name} does not hold the parameters of its configuration: "
                             f"missing {missing}, unexpected {unexpected}")
        arrays = {key: archive.read(key, label=f"parameter {key!r}", dtype=dtype,
                                    shape=shape)
                  for key, (dtype, shape) in expected.items()}

    if mode is not None:
        if into is not None:
            raise ValueError(f"{name} holds a {mode} {cls.__name__}, which load builds anew; "
                             f"into= takes an LSTM or LSTMCell (got {type(into).__name__})")
        try:
            return cls.from_state_dict(cfg, mode, arrays)
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{name} does not hold a valid {mode} {cls.__name__}: "
                             f"{err}") from err

    if into is None:
        model = (LSTMCell(**{k: config[k] for k in _CELL_FIELDS}) if cls is LSTMCell
                 else LSTM(**config))
        model.load_state_dict(arrays)
        return model
    if type(into) is not cls or into.config != cfg:
        got = into.config if isinstance(into, (LSTM, LSTMCell)) else None
        raise ValueError(f"{name} holds a {cls.__name__} with {cfg}; it cannot be loaded "
                         f"into a {type(into).__name__} with {got}")
    into.load_state_dict(arrays)
    return into


def _read_header(archive):
    """The class, configuration options and quantisation mode (None for a float model) that
    the archive's header records."""
    name = archive.name
    info = archive.members.get(HEADER)
    if info is not None and info.file_size > MAX_HEADER_BYTES:
        raise ValueError(f"{name}: member {info.filename!r}: the header is {info.file_size} "
                         f"bytes; an lstmx header is at most {MAX_HEADER_BYTES}")
    meta = _archive.read_json(archive, HEADER, FORMAT, VERSION)
    cls = _CLASSES.get(meta.get("class")) if isinstance(meta.get("class"), str) else None
    config = meta.get("config")
    if cls is None:
        raise ValueError(f"{name}: class must be one of {list(_CLASSES)}; got "
                         f"{meta.get('class')!r}")
    if isinstance(config, dict):
        config = {**{k: v for k, v in _LATER_FIELDS.items() if k not in config}, **config}
    if not isinstance(config, dict) or sorted(config) != sorted(_CONFIG_FIELDS):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{name}: config must have the fields {_CONFIG_FIELDS}; got {got}")
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{name}: dtype must be 'float32' or 'float64'; got "
                         f"{config['dtype']!r}")
    mode = meta.get("mode")
    if cls in _QUANTIZED and (not isinstance(mode, str) or mode not in MODES):
        raise ValueError(f"{name}: a {cls.__name__} needs a mode of {list(MODES)}; got "
                         f"{mode!r}")
    if cls in _QUANTIZED and config["dtype"] != "float32":
        raise ValueError(f"{name}: a {cls.__name__} computes in float32; its config's dtype "
                         f"must be 'float32', got {config['dtype']!r}")
    if cls not in _QUANTIZED and "mode" in meta:
        raise ValueError(f"{name}: a float {cls.__name__} has no quantisation mode; got "
                         f"mode={mode!r}")
    return cls, config, mode if cls in _QUANTIZED else None
