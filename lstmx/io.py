"""Saving and loading models as ``.npz`` archives, without pickle.

An archive holds one array per parameter, named as in ``state_dict()``, and a header
``__lstmx__``: a 0-d string array of JSON ``{"format": "lstmx", "version": 1, "class":
"LSTM" or "LSTMCell", "config": {...}}`` with every ``LSTMConfig`` field (the dtype by name).
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

__all__ = ["save", "load"]

HEADER = "__lstmx__"
FORMAT, VERSION = "lstmx", 1
_CLASSES = {"LSTM": LSTM, "LSTMCell": LSTMCell}
_CONFIG_FIELDS = [f.name for f in dataclasses.fields(LSTMConfig)]
# The options of an LSTMCell; its other config fields keep LSTMConfig's defaults.
_CELL_FIELDS = ("input_size", "hidden_size", "bias", "peephole", "output_activation", "dtype")
# Fields added after version 1 was first written, with the value that archives without them
# mean.
_LATER_FIELDS = {"reverse": False}
KIND = "lstmx archive"  # what messages call the file
MAX_HEADER_BYTES = 1 << 16  # the JSON of a configuration is a few hundred bytes


def save(model, file) -> None:
    """Save ``model`` and its configuration to an ``.npz`` archive.

    Parameters
    ----------
    model : LSTM or LSTMCell
    file : str, path or writable binary file
        Written exactly at this path (no ``.npz`` is appended). A path is written through a
        temporary file in the same directory and renamed, so a failed save leaves any
        previous file untouched.
    """
    if not isinstance(model, (LSTM, LSTMCell)):
        raise TypeError(f"model must be an lstmx.LSTM or lstmx.LSTMCell; "
                        f"got {type(model).__name__}")
    _archive.check_file(file, "write")
    problem = model._changed_parameter()
    if problem is not None:  # the file would not load
        raise ValueError(f"cannot save the model: {problem}")
    config = dataclasses.asdict(model.config)
    config["dtype"] = model.config.dtype.name
    header = json.dumps({"format": FORMAT, "version": VERSION,
                         "class": type(model).__name__, "config": config})
    _archive.write(file, {HEADER: np.array(header), **model.state_dict()})


def load(file, *, into=None):
    """Load a model saved by ``save``.

    Parameters
    ----------
    file : str, path or readable binary file
    into : LSTM or LSTMCell, optional
        Copy the parameters into this model instead of building a new one; its class and
        configuration must be the saved ones.

    Returns
    -------
    LSTM or LSTMCell
        A new model, or ``into``.

    Raises
    ------
    ValueError
        If the file is not an lstmx archive, is corrupt or truncated, or does not match
        ``into``; the message names the file and the problem. Nothing is changed then.

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
        cls, config = _read_header(archive)
        try:
            cfg = LSTMConfig(**config)
            if cls is LSTMCell and cfg != LSTMConfig(**{k: config[k] for k in _CELL_FIELDS}):
                raise ValueError(f"an LSTMCell has only the options {list(_CELL_FIELDS)}")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} has an invalid {cls.__name__} configuration: "
                             f"{err}") from err

        # Counted before any name is built: a header claiming a million layers must cost
        # no more than one claiming one.
        per_layer = 2 + 2 * cfg.bias + (cfg.proj_size > 0) + 3 * cfg.peephole
        want = cfg.num_layers * cfg.num_directions * per_layer
        got = len(archive.members) - 1
        if want > got + 16:  # (a few missing ones are named below)
            raise ValueError(f"{name} does not hold the parameters of its configuration: "
                             f"it needs {want} parameter arrays; the archive has {got}")
        expected = cfg.parameter_shapes()
        if cls is LSTMCell:
            expected = {k[:-3]: v for k, v in expected.items()}  # the cell drops "_l0"
        keys = [k for k in archive.members if k != HEADER]
        missing = [k for k in expected if k not in archive.members]
        unexpected = [k for k in keys if k not in expected]
        if missing or unexpected:
            raise ValueError(f"{name} does not hold the parameters of its configuration: "
                             f"missing {missing}, unexpected {unexpected}")
        arrays = {key: archive.read(key, label=f"parameter {key!r}", dtype=cfg.dtype,
                                    shape=shape)
                  for key, shape in expected.items()}

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
    """The class and configuration options that the archive's header records."""
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
    return cls, config
