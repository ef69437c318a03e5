"""lstmx.load against hostile archives: work and memory bounded by the file, no ambiguity,
any byte order, clear errors; and files that save writes with the usual permissions."""
import io
import json
import os
import stat
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
import lstmx.io as lio


def members_of(model) -> dict:
    buf = io.BytesIO()
    lstmx.save(model, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        return {n: z.read(n) for n in z.namelist()}


def npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


def zipped(members, compression=zipfile.ZIP_STORED) -> bytes:
    """``members`` (name, bytes) pairs in order; duplicates allowed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z, \
            pytest.warns(UserWarning, match="Duplicate") if len(
                {n for n, _ in members}) < len(members) else _nothing():
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def header_bytes(model, **changes) -> bytes:
    header = json.loads(str(np.load(io.BytesIO(members_of(model)["__lstmx__.npy"]))))
    header["config"].update(changes)
    return npy(np.array(json.dumps(header)))


def test_header_claiming_a_million_layers_is_refused_at_once():
    model = lstmx.LSTM(3, 4, seed=0)
    members = members_of(model)
    members["__lstmx__.npy"] = header_bytes(model, num_layers=10 ** 6)
    blob = zipped(list(members.items()))
    assert len(blob) < 4096
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="needs 4000000 parameter arrays; the archive has 4"):
        lstmx.load(io.BytesIO(blob))
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1 << 20


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_member_of_the_wrong_shape_is_refused_before_it_is_inflated(compression):
    model = lstmx.LSTM(3, 4, seed=0)
    members = members_of(model)
    members["weight_ih_l0.npy"] = npy(np.zeros((4000, 4000), np.float32))  # 61 MiB of zeros
    blob = zipped(list(members.items()), compression)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"'weight_ih_l0' must be float32 with shape "
                                         r"\(16, 3\); got float32 with shape \(4000, 4000\)"):
        lstmx.load(io.BytesIO(blob))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * len(blob) + (1 << 20)


def test_sizes_that_the_archive_cannot_hold_are_refused_before_allocating():
    model = lstmx.LSTM(3, 4, seed=0)
    members = members_of(model)
    # A .npy header claiming the configuration's shape with no data behind it.
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f4", "fortran_order": False, "shape": (16, 3)})
    members["weight_ih_l0.npy"] = head.getvalue()
    with pytest.raises(ValueError, match="declares 192 bytes of data; the member holds 0"):
        lstmx.load(io.BytesIO(zipped(list(members.items()))))
    # A zip entry whose declared size is far more than its stored bytes.
    blob = bytearray(zipped(list(members_of(model).items())))
    with zipfile.ZipFile(io.BytesIO(bytes(blob))) as z:
        info = z.getinfo("weight_hh_l0.npy")
    central = blob.rindex(b"PK\x01\x02", 0, blob.index(b"weight_hh_l0.npy", blob.index(
        b"PK\x01\x02")) + 1)
    blob[central + 24:central + 28] = (1 << 31).to_bytes(4, "little")  # uncompressed size
    with pytest.raises(ValueError, match=f"claims {1 << 31} bytes, more than its "
                                         f"{info.compress_size} stored bytes"):
        lstmx.load(io.BytesIO(bytes(blob)))



def central_entry(blob, member: str) -> int:
    """Where the zip directory's entry of ``member`` starts in ``blob``."""
    return blob.rindex(b"PK\x01\x02", 0, blob.rindex(member.encode()))


def test_stored_sizes_must_lie_in_the_file_without_overlapping():
    model = lstmx.LSTM(3, 4, seed=0)
    good = zipped(list(members_of(model).items()))
    # A member claiming 2 GiB of stored (and inflated) bytes in a file of a few KiB: the
    # inflated size alone would pass the deflate-ratio check.
    blob = bytearray(good)
    entry = central_entry(blob, "weight_hh_l0.npy")
    blob[entry + 20:entry + 28] = (1 << 31).to_bytes(4, "little") * 2
    with pytest.raises(ValueError, match=r"member 'weight_hh_l0.npy' claims 2147483648 "
                                         r"stored bytes at offset \d+; the file has \d+ there"):
        lstmx.load(io.BytesIO(bytes(blob)))
    # Two directory entries over the same stored bytes (each inflated once per entry).
    blob = bytearray(good)
    source = blob[central_entry(blob, "weight_ih_l0.npy") + 42:][:4]
    entry = central_entry(blob, "weight_hh_l0.npy")
    blob[entry + 42:entry + 46] = source  # the local header's offset
    with pytest.raises(ValueError, match=r"stored bytes at offset \d+; the file has \d+ "
                                         r"there"):
        lstmx.load(io.BytesIO(bytes(blob)))
    assert_array_equal(lstmx.load(io.BytesIO(good)).weight_hh_l0, model.weight_hh_l0)


def test_duplicate_members_are_refused():
    model, other = lstmx.LSTM(3, 4, seed=0), lstmx.LSTM(3, 4, seed=1)
    members = list(members_of(model).items())
    members.append(("weight_hh_l0.npy", members_of(other)["weight_hh_l0.npy"]))
    with pytest.raises(ValueError, match=r"ambiguous: .*more than one member named "
                                         r"\['weight_hh_l0.npy'\]"):
        lstmx.load(io.BytesIO(zipped(members)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_arrays_of_either_byte_order_load(dtype):
    model = lstmx.LSTM(3, 4, num_layers=2, peephole=True, dtype=dtype, seed=0)
    members = {}
    for name, data in members_of(model).items():
        a = np.load(io.BytesIO(data))
        if name != "__lstmx__.npy":
            a = a.astype(a.dtype.newbyteorder(">"))
            if name.startswith("weight_hh"):
                a = np.asfortranarray(a)
        members[name] = npy(a)
    loaded = lstmx.load(io.BytesIO(zipped(list(members.items()))))
    for name, value in model.state_dict().items():
        got = loaded.parameters()[name]
        assert got.dtype == np.dtype(dtype) and got.dtype.isnative
        assert_array_equal(got, value)


@pytest.mark.parametrize("data, message", [
    (b"not an npy file at all", r"not a .npy array .*got b'not an'"),
    (b"\x93NUMPY\x09\x00", r"\.npy version \(9, 0\)"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'", "is not readable"),
    # numpy's header parser raises tokenize.TokenError on this (an unclosed parenthesis)
    (b"\x93NUMPY\x01\x00\x36\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,\n",
     "is not readable: TokenError"),
])
def test_member_that_is_not_npy_gets_a_clear_error(data, message):
    members = members_of(lstmx.LSTM(3, 4, seed=0))
    members["bias_ih_l0.npy"] = data
    with pytest.raises(ValueError, match=r"member 'bias_ih_l0.npy' .*" + message):
        lstmx.load(io.BytesIO(zipped(list(members.items()))))


def test_header_member_that_is_not_npy_or_too_large():
    members = members_of(lstmx.LSTM(3, 4, seed=0))
    members["__lstmx__.npy"] = b"{}"
    with pytest.raises(ValueError, match="'__lstmx__.npy' is not a .npy array"):
        lstmx.load(io.BytesIO(zipped(list(members.items()))))
    members["__lstmx__.npy"] = npy(np.array("x" * lio.MAX_HEADER_BYTES))
    with pytest.raises(ValueError, match="the header is .* bytes; an lstmx header is at most"):
        lstmx.load(io.BytesIO(zipped(list(members.items()))))


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_save_respects_the_umask_and_an_existing_files_mode(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = tmp_path / "new.npz"
        lstmx.save(lstmx.LSTM(2, 3), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
        existing = tmp_path / "existing.npz"
        existing.write_bytes(b"")
        existing.chmod(0o640)
        lstmx.save(lstmx.LSTM(2, 3), existing)
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    finally:
        os.umask(old)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_members_compressed_other_than_deflate_are_refused(method):
    members = list(members_of(lstmx.LSTM(3, 4, seed=0)).items())
    with pytest.raises(ValueError, match=f"uses compression method {method}; an lstmx "
                                         "archive's members are stored or deflated"):
        lstmx.load(io.BytesIO(zipped(members, method)))


def test_a_parameter_reshaped_in_place_is_not_saved(tmp_path):
    model = lstmx.LSTM(3, 4, seed=0)
    model.parameters()["weight_ih_l0"].shape = (3, 16)
    with pytest.raises(ValueError, match="cannot save the model: parameter 'weight_ih_l0' "
                                         "was changed in place"):
        lstmx.save(model, tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


def test_an_archive_is_read_from_the_streams_position():
    model = lstmx.LSTM(3, 4, seed=0)
    stream = io.BytesIO()
    stream.write(b"other data first")
    lstmx.save(model, stream)
    stream.seek(len(b"other data first"))
    assert_array_equal(lstmx.load(stream).weight_hh_l0, model.weight_hh_l0)


def test_what_is_not_a_binary_file_is_a_type_error(tmp_path):
    path = tmp_path / "m.npz"
    lstmx.save(lstmx.LSTM(2, 3), path)
    with open(path) as text, pytest.raises(TypeError, match="opened in text mode"):
        lstmx.load(text)
    for bad in (42, None, [path]):
        with pytest.raises(TypeError, match="file must be a path or a binary file object"):
            lstmx.load(bad)
        with pytest.raises(TypeError, match="file must be a path or a binary file object"):
            lstmx.save(lstmx.LSTM(2, 3), bad)
    with pytest.raises(TypeError, match="opened in text mode"):
        lstmx.save(lstmx.LSTM(2, 3), io.StringIO())
