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
import os
import tempfile
import zipfile
import zlib

import numpy as np

from lstmx._config import LSTMConfig
from lstmx.layers import LSTM, LSTMCell

__all__ = ["save", "load"]

HEADER = "__lstmx__"
FORMAT, VERSION = "lstmx", 1
_CLASSES = {"LSTM": LSTM, "LSTMCell": LSTMCell}
_CONFIG_FIELDS = [f.name for f in dataclasses.fields(LSTMConfig)]
# The options of an LSTMCell; its other config fields keep LSTMConfig's defaults.
_CELL_FIELDS = ("input_size", "hidden_size", "bias", "peephole", "output_activation", "dtype")
# What a damaged archive raises while it is opened or read (MemoryError: a forged .npy header
# that claims more data than any file holds).
# NotImplementedError and RuntimeError: zip entries zipfile refuses (an unknown compression
# method, an encrypted entry).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
                MemoryError, NotImplementedError, RuntimeError)


def _name(file) -> str:
    if isinstance(file, (str, os.PathLike)):
        return repr(os.fspath(file))
    return repr(getattr(file, "name", file))


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
    config = dataclasses.asdict(model.config)
    config["dtype"] = model.config.dtype.name
    header = json.dumps({"format": FORMAT, "version": VERSION,
                         "class": type(model).__name__, "config": config})
    arrays = {HEADER: np.array(header), **model.state_dict()}
    if not isinstance(file, (str, os.PathLike)):
        np.savez(file, **arrays)
        return
    path = os.fspath(file)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=".lstmx-", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
    """
    name = _name(file)
    with contextlib.ExitStack() as stack:
        if isinstance(file, (str, os.PathLike)):
            # Opened here, not by np.load, which leaves the file open when it is not a zip.
            file = stack.enter_context(open(file, "rb"))
        arrays = _read_arrays(file, name)

    cls, config = _read_header(name, arrays.pop(HEADER, None))
    try:
        cfg = LSTMConfig(**config)
        if cls is LSTMCell and cfg != LSTMConfig(**{k: config[k] for k in _CELL_FIELDS}):
            raise ValueError(f"an LSTMCell has only the options {list(_CELL_FIELDS)}")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} has an invalid {cls.__name__} configuration: {err}") from err

    # Checked against the configuration before any model is built: a damaged header must
    # not make us allocate what it claims.
    expected = cfg.parameter_shapes()
    if cls is LSTMCell:
        expected = {k[:-3]: v for k, v in expected.items()}  # the cell drops "_l0"
    missing = [k for k in expected if k not in arrays]
    unexpected = [k for k in arrays if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{name} does not hold the parameters of its configuration: missing "
                         f"{missing}, unexpected {unexpected}")
    for key, shape in expected.items():
        arr = arrays[key]
        if arr.dtype != cfg.dtype or arr.shape != shape:
            raise ValueError(f"{name}: parameter {key!r} must be {cfg.dtype} with shape "
                             f"{shape}; got {arr.dtype} with shape {arr.shape}")

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


def _read_arrays(file, name):
    """Every array of the archive, read (and so checked) in full."""
    try:
        npz = np.load(file, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single .npy array")
        with npz:  # reading each member checks its CRC and its .npy header
            return {key: npz[key] for key in npz.files}
    except _READ_ERRORS as err:
        raise ValueError(f"{name} is not a readable lstmx archive (corrupt, truncated or "
                         f"another format): {err}") from err


def _read_header(name, header):
    """The class and configuration options that the archive's header records."""
    if header is None:
        raise ValueError(f"{name} is not an lstmx archive: it has no {HEADER!r} header")
    if header.shape != () or header.dtype.kind != "U":
        raise ValueError(f"{name}: the {HEADER!r} header must be a 0-d string array; got "
                         f"dtype {header.dtype}, shape {header.shape}")
    try:
        meta = json.loads(str(header))
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly nested JSON
        raise ValueError(f"{name}: the {HEADER!r} header is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{name} is not an lstmx archive: its header has no "
                         f"format={FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"{name} has lstmx archive version {meta.get('version')!r}; this "
                         f"lstmx reads version {VERSION}")
    cls = _CLASSES.get(meta.get("class")) if isinstance(meta.get("class"), str) else None
    config = meta.get("config")
    if cls is None:
        raise ValueError(f"{name}: class must be one of {list(_CLASSES)}; got "
                         f"{meta.get('class')!r}")
    if not isinstance(config, dict) or sorted(config) != sorted(_CONFIG_FIELDS):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{name}: config must have the fields {_CONFIG_FIELDS}; got {got}")
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{name}: dtype must be 'float32' or 'float64'; got "
                         f"{config['dtype']!r}")
    return cls, config
