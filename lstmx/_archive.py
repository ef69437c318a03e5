"""Reading and writing ``.npz`` archives without pickle, bounded by what the file holds.

``lstmx.io`` (models) and ``lstmx.checkpoint`` (training runs) share this. Opening an
archive checks its zip directory: every member stored or deflated, with distinct names,
claiming no more bytes than its stored bytes can inflate to, and stored bytes that fit in
the file without overlapping another member's. Reading a member checks its ``.npy`` header
(and the dtype and shape the caller expects, if it knows them) against the member's real
size before the array is allocated. So the memory a read takes is bounded by the file's
size: by 1032 times it (deflate's largest ratio) for a compressed archive.
"""
from __future__ import annotations

import io
import json
import math
import os
import stat
import tempfile
import zipfile
import zlib

import numpy as np

# What a damaged archive raises while it is opened or read. MemoryError: a forged size that
# slipped past the checks; NotImplementedError and RuntimeError: zip entries zipfile
# refuses (an unknown compression method, an encrypted entry).
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
               MemoryError, NotImplementedError, RuntimeError)
# Deflate never inflates by more than this (RFC 1951's longest match per two bits or so);
# a member that claims more is lying.
MAX_DEFLATE_RATIO = 1032
# The dtype kinds an archive may hold: bools, integers, floats and strings (no objects,
# records or raw bytes).
KINDS = "biufU"
_KIND_NAMES = {"b": "bool", "i": "integer", "u": "integer", "f": "float", "U": "string"}
_MAGIC = b"\x93NUMPY"
_LOCAL_HEADER = 30  # the fixed part of a zip member's local header, before its data


def _describe(dtype, shape, kinds) -> str:
    """What an array must be, in words: "float32 with shape (16, 3)", "a 0-d string
    array"."""
    if dtype is not None:
        what = str(np.dtype(dtype))
    else:
        names = list(dict.fromkeys(_KIND_NAMES[k] for k in kinds))
        what = ", ".join(names[:-1]) + " or " * (len(names) > 1) + names[-1] + " array"
        what = ("a " if shape is None else f"a {len(shape)}-d ") + what
    return what if not shape else f"{what} with shape {tuple(shape)}"


def name_of(file) -> str:
    """How messages name ``file``: its path, or a file object's name."""
    if isinstance(file, (str, os.PathLike)):
        return repr(os.fspath(file))
    return repr(getattr(file, "name", file))


def check_file(file, need: str) -> None:
    """Refuse what is neither a path nor a binary file object with ``need`` (read or
    write) and seek."""
    if isinstance(file, (str, os.PathLike)):
        return
    if isinstance(file, io.TextIOBase):
        raise TypeError(f"file must be a path or a binary file object; got a file opened in "
                        f"text mode ({name_of(file)}): open it with mode '{need[0]}b'")
    if not (callable(getattr(file, need, None)) and callable(getattr(file, "seek", None))):
        raise TypeError(f"file must be a path or a binary file object with {need}() and "
                        f"seek(); got {type(file).__name__}")


# -- writing ---------------------------------------------------------------------------------

def write(file, arrays: dict) -> None:
    """``np.savez`` ``arrays`` to ``file``: a file object at its position, or exactly the
    path given, through a temporary file in the same directory and a rename, so that a
    failed or interrupted write leaves any previous file whole. The file gets the mode a
    plain ``open`` would give it (an existing file's, else 0666 less the umask)."""
    if not isinstance(file, (str, os.PathLike)):
        np.savez(file, **arrays)
        return
    path = os.fspath(file)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=".lstmx-", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(fd, _mode_for(path))  # mkstemp makes it 0600
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the data
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


# -- reading ---------------------------------------------------------------------------------

class Archive:
    """The members of an open ``.npz`` archive, keyed as ``np.load`` keys them (without
    ``.npy``); nothing is inflated until ``read``.

    Parameters
    ----------
    zf : zipfile.ZipFile
    members : dict of str -> zipfile.ZipInfo
    name : str
        The file as messages name it.
    kind : str
        What the file should be ("lstmx archive", "lstmx checkpoint"), for messages.
    """

    def __init__(self, zf, members, name, kind):
        self.zf, self.members, self.name, self.kind = zf, members, name, kind

    def unreadable(self, err) -> ValueError:
        return ValueError(f"{self.name} is not a readable {self.kind} (corrupt, truncated or "
                          f"another format): {err}")

    def read(self, key, *, label, dtype=None, shape=None, kinds=KINDS) -> np.ndarray:
        """The array of member ``key``, in native byte order and C order.

        Parameters
        ----------
        key : str
            A key of ``members``.
        label : str
            What the member is, for messages ("parameter 'weight_ih_l0'").
        dtype : numpy.dtype, optional
            The dtype it must have (in either byte order).
        shape : tuple of int, optional
            The shape it must have.
        kinds : str, default KINDS
            Without ``dtype``: the dtype kinds it may have.

        The ``.npy`` header is checked against these and against the member's size before
        the array is allocated; a mismatch or a damaged member is a ValueError naming the
        file and the member.
        """
        info = self.members[key]
        what = f"{self.name}: member {info.filename!r}"
        try:
            with self.zf.open(info) as fp:
                got_dtype, got_shape, fortran = self._npy_header(fp, what)
                # Whatever the caller expects, only plain numbers and strings are read.
                ok = (got_dtype.kind in KINDS and not got_dtype.hasobject
                      and got_dtype.itemsize > 0 and all(n >= 0 for n in got_shape))
                if dtype is not None:
                    ok = ok and got_dtype.newbyteorder("=") == dtype
                else:
                    ok = ok and got_dtype.kind in kinds
                if not ok or (shape is not None and got_shape != tuple(shape)):
                    raise ValueError(f"{self.name} is not a readable {self.kind}: {label} "
                                     f"must be {_describe(dtype, shape, kinds)}; got "
                                     f"{got_dtype} with shape {got_shape} (member "
                                     f"{info.filename!r})")
                count = math.prod(got_shape)
                data_bytes = count * got_dtype.itemsize
                held = info.file_size - fp.tell()
                if data_bytes != held:
                    raise ValueError(f"{what} is not readable: its .npy header declares "
                                     f"{data_bytes} bytes of data; the member holds {held}")
                arr = np.empty(count, got_dtype)
                buf, done = memoryview(arr).cast("B"), 0
                while done < data_bytes:
                    n = fp.readinto(buf[done:])
                    if not n:
                        raise ValueError(f"{what} is not readable: the data ends after "
                                         f"{done} of {data_bytes} bytes")
                    done += n
                if fp.read(1):  # also makes zipfile check the CRC
                    raise ValueError(f"{what} is not readable: it has bytes after its data")
        except ValueError as err:
            if str(err).startswith(self.name):
                raise
            raise self.unreadable(err) from err
        except READ_ERRORS as err:
            raise self.unreadable(err) from err
        arr = arr.reshape(got_shape, order="F" if fortran else "C")
        return arr.astype(got_dtype.newbyteorder("="), order="C", copy=False)

    @staticmethod
    def _npy_header(fp, what):
        """(dtype, shape, fortran_order) of the ``.npy`` file ``fp``, left at its data."""
        magic = fp.read(len(_MAGIC) + 2)
        if magic[:len(_MAGIC)] != _MAGIC:
            raise ValueError(f"{what} is not a .npy array (it does not start with the "
                             f".npy magic string); got {magic[:len(_MAGIC)]!r}")
        version = (magic[-2], magic[-1]) if len(magic) == len(_MAGIC) + 2 else None
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"{what} has .npy version {version}; expected 1.0 to 3.0")
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        try:
            shape, fortran, dtype = read(fp)
        except Exception as err:  # numpy's parser of hostile text raises more than
            # ValueError: tokenize.TokenError, TypeError, RecursionError, ...
            raise ValueError(f"{what} is not readable: {type(err).__name__}: {err}") from err
        return dtype, shape, fortran


def open_archive(stack, file, kind) -> Archive:
    """The members of the archive at ``file`` (a path, or a binary file object at the
    archive's start), opened in ``stack``, their zip directory checked (see the module's
    docstring); nothing is inflated yet."""
    check_file(file, "read")
    name = name_of(file)
    if isinstance(file, (str, os.PathLike)):
        file = stack.enter_context(open(file, "rb"))
    try:
        start = file.tell()  # (an archive may follow other data in a stream)
        if file.read(len(_MAGIC)) == _MAGIC:
            raise ValueError("it holds a single .npy array")
        file.seek(0, io.SEEK_END)
        end = file.tell()
        file.seek(start)
        zf = stack.enter_context(zipfile.ZipFile(file))
        infos = zf.infolist()
    except READ_ERRORS as err:
        raise Archive(None, {}, name, kind).unreadable(err) from err
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
    # Each member's stored bytes lie in the file, after its local header and before the
    # next member: so together they are at most the file, whatever the directory claims.
    limit = end
    for info in sorted(infos, key=lambda i: i.header_offset, reverse=True):
        what = f"{name}: member {info.filename!r}"
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # zipfile inflates bzip2 and lzma input a whole chunk at a time, however large
            # the result: their output is not bounded by what a member declares.
            raise ValueError(f"{what} is compressed in a way np.savez never is: it uses "
                             f"compression method {info.compress_type}; an {kind}'s members "
                             "are stored or deflated (as numpy.savez and "
                             "numpy.savez_compressed write them)")
        first = info.header_offset + _LOCAL_HEADER
        if info.header_offset < start or first + info.compress_size > limit:
            raise ValueError(f"{what} claims {info.compress_size} stored bytes at offset "
                             f"{info.header_offset}; the file has "
                             f"{max(limit - first, 0)} there")
        limit = info.header_offset
        most = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED
                                     else MAX_DEFLATE_RATIO) + 64
        if info.file_size > most:
            raise ValueError(f"{what} claims {info.file_size} bytes, more than its "
                             f"{info.compress_size} stored bytes can hold")
    return Archive(zf, members, name, kind)


def read_json(archive, header, fmt, version) -> dict:
    """The JSON object of the 0-d string array ``archive.members[header]``, checked to be
    format ``fmt`` at ``version``."""
    if header not in archive.members:
        raise ValueError(f"{archive.name} is not an {archive.kind}: it has no {header!r} "
                         "header")
    text = archive.read(header, label=f"the {header!r} header", shape=(), kinds="U")
    try:
        meta = json.loads(str(text))
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly nested JSON
        raise ValueError(f"{archive.name}: the {header!r} header is not valid JSON: "
                         f"{err}") from err
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{archive.name} is not an {archive.kind}: its header has no "
                         f"format={fmt!r}")
    if meta.get("version") != version:
        raise ValueError(f"{archive.name} has {archive.kind} version "
                         f"{meta.get('version')!r}; this lstmx reads version {version}")
    return meta
