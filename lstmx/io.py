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
import io
import json
import math
import os
import stat
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
# Fields added after version 1 was first written, with the value that archives without them
# mean.
_LATER_FIELDS = {"reverse": False}
# What a damaged archive raises while it is opened or read (MemoryError: a forged .npy header
# that claims more data than any file holds).
# NotImplementedError and RuntimeError: zip entries zipfile refuses (an unknown compression
# method, an encrypted entry).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
                MemoryError, NotImplementedError, RuntimeError)


def _check_file(file, need: str):
    """Refuse what is neither a path nor a binary file object with ``need`` (read or
    write) and seek."""
    if isinstance(file, (str, os.PathLike)):
        return
    if isinstance(file, io.TextIOBase):
        raise TypeError(f"file must be a path or a binary file object; got a file opened in "
                        f"text mode ({_name(file)}): open it with mode '{need[0]}b'")
    if not (callable(getattr(file, need, None)) and callable(getattr(file, "seek", None))):
        raise TypeError(f"file must be a path or a binary file object with {need}() and "
                        f"seek(); got {type(file).__name__}")


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
    _check_file(file, "write")
    problem = model._changed_parameter()
    if problem is not None:  # the file would not load
        raise ValueError(f"cannot save the model: {problem}")
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
            # mkstemp makes the file 0600: give it the mode that open(path, "wb") would
            # (an existing file's, else 0666 less the umask).
            os.chmod(fd, _mode_for(path))
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _mode_for(path) -> int:
    """The permission bits a file written at ``path`` gets from a plain ``open``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux shows it without changing it (os.umask would, for every thread)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
    _check_file(file, "read")
    name = _name(file)
    with contextlib.ExitStack() as stack:
        if isinstance(file, (str, os.PathLike)):
            file = stack.enter_context(open(file, "rb"))
        members = _open_members(stack, file, name)
        header = _read_member(members, HEADER, name, header=True)
        cls, config = _read_header(name, header)
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
        got = len(members[1]) - 1
        if want > got + 16:  # (a few missing ones are named below)
            raise ValueError(f"{name} does not hold the parameters of its configuration: "
                             f"it needs {want} parameter arrays; the archive has {got}")
        expected = cfg.parameter_shapes()
        if cls is LSTMCell:
            expected = {k[:-3]: v for k, v in expected.items()}  # the cell drops "_l0"
        keys = [k for k in members[1] if k != HEADER]
        missing = [k for k in expected if k not in members[1]]
        unexpected = [k for k in keys if k not in expected]
        if missing or unexpected:
            raise ValueError(f"{name} does not hold the parameters of its configuration: "
                             f"missing {missing}, unexpected {unexpected}")
        arrays = {key: _read_member(members, key, name, dtype=cfg.dtype, shape=shape)
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


# Deflate never inflates by more than this (RFC 1951's longest match per two bits or so);
# a member that claims more is lying.
MAX_DEFLATE_RATIO = 1032
MAX_HEADER_BYTES = 1 << 16  # the JSON of a configuration is a few hundred bytes


def _open_members(stack, file, name):
    """(zip, {key: ZipInfo}) of an archive, keyed as ``np.load`` keys them (without
    ``.npy``). Nothing is decompressed yet."""
    try:
        start = file.tell()  # (an archive may follow other data in a stream)
        if file.read(6) == b"\x93NUMPY":
            raise ValueError("it holds a single .npy array")
        file.seek(start)
        zf = stack.enter_context(zipfile.ZipFile(file))
        infos = zf.infolist()
    except _READ_ERRORS as err:
        raise ValueError(f"{name} is not a readable lstmx archive (corrupt, truncated or "
                         f"another format): {err}") from err
    members, dup = {}, []
    for info in infos:
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key in members:
            dup.append(info.filename)
        members[key] = info
    if dup:
        # Readers disagree on which of two same-named members counts; refuse to pick one.
        raise ValueError(f"{name} is ambiguous: it has more than one member named "
                         f"{sorted(set(dup))}")
    return zf, members


def _read_member(members, key, name, dtype=None, shape=None, header=False):
    """The array of member ``key``: the ``HEADER`` (a 0-d string, ``header=True``) or a
    parameter of ``dtype`` (either byte order) and ``shape``. Its .npy header and the
    archive's sizes are checked before anything is allocated."""
    zf, infos = members
    info = infos.get(key)
    if info is None:
        if header:
            return None
        raise ValueError(f"{name} has no member {key!r}")
    what = f"{name}: member {info.filename!r}"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # zipfile inflates bzip2 and lzma input a whole chunk at a time, however large the
        # result: their output is not bounded by what a member declares.
        raise ValueError(f"{what} uses compression method {info.compress_type}; an lstmx "
                         "archive's members are stored or deflated (as numpy.savez and "
                         "numpy.savez_compressed write them)")
    limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED
                                  else MAX_DEFLATE_RATIO) + 64
    if info.file_size > limit:
        raise ValueError(f"{what} claims {info.file_size} bytes, more than its "
                         f"{info.compress_size} stored bytes can hold")
    if header and info.file_size > MAX_HEADER_BYTES:
        raise ValueError(f"{what}: the header is {info.file_size} bytes; an lstmx header is "
                         f"at most {MAX_HEADER_BYTES}")
    try:
        with zf.open(info) as fp:
            magic = fp.read(6)
            if magic != b"\x93NUMPY":
                raise ValueError(f"{what} is not a .npy array (it does not start with the "
                                 f".npy magic string); got {magic!r}")
            fp.seek(0)
            version = np.lib.format.read_magic(fp)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"{what} has .npy version {version}; expected 1.0 to 3.0")
            got_shape, fortran, got_dtype = read(fp)
            if header:
                if got_shape != () or got_dtype.kind != "U":
                    raise ValueError(f"the {HEADER!r} header must be a 0-d string array; "
                                     f"got dtype {got_dtype}, shape {got_shape}")
            elif (got_dtype.kind != "f" or got_dtype.newbyteorder("=") != dtype
                    or got_shape != shape):
                raise ValueError(f"parameter {key!r} must be {dtype} with shape {shape}; "
                                 f"got {got_dtype} with shape {got_shape}")
            count = math.prod(got_shape)
            data_bytes = count * got_dtype.itemsize
            if fp.tell() + data_bytes != info.file_size:
                raise ValueError(f"its .npy header declares {data_bytes} bytes of data; the "
                                 f"member holds {info.file_size - fp.tell()}")
            arr = np.empty(count, got_dtype)
            buf, done = memoryview(arr).cast("B"), 0
            while done < data_bytes:
                n = fp.readinto(buf[done:])
                if not n:
                    raise ValueError(f"the data ends after {done} of {data_bytes} bytes")
                done += n
            if fp.read(1):  # also makes zipfile check the CRC
                raise ValueError("it has bytes after its data")
    except ValueError as err:
        if str(err).startswith(name):
            raise
        raise ValueError(f"{what} is not readable: {err}") from err
    except _READ_ERRORS as err:
        raise ValueError(f"{name} is not a readable lstmx archive (corrupt, truncated or "
                         f"another format): {err}") from err
    order = "F" if fortran else "C"
    arr = arr.reshape(got_shape, order=order)
    if header:
        return arr
    return np.ascontiguousarray(arr, dtype=dtype)


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
    if isinstance(config, dict):
        config = {**{k: v for k, v in _LATER_FIELDS.items() if k not in config}, **config}
    if not isinstance(config, dict) or sorted(config) != sorted(_CONFIG_FIELDS):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{name}: config must have the fields {_CONFIG_FIELDS}; got {got}")
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{name}: dtype must be 'float32' or 'float64'; got "
                         f"{config['dtype']!r}")
    return cls, config
