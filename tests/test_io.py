"""lstmx.save / lstmx.load: exact round trips, no pickle, clear errors, failed loads change
nothing."""
import io
import json
import os
import pickle

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
import lstmx.io as lio
from _helpers import assert_same_model

CONFIGS = [dict(), dict(num_layers=2, bidirectional=True, batch_first=True),
           dict(proj_size=2, peephole=True, output_activation="identity", bias=False)]


def write_npz(path, header=None, **arrays):
    """An archive as ``save`` writes it, with the header replaced if given."""
    if header is not None:
        arrays[lio.HEADER] = np.array(json.dumps(header))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def saved(model):
    buf = io.BytesIO()
    lstmx.save(model, buf)
    return buf.getvalue()


def header_of(model):
    with np.load(io.BytesIO(saved(model)), allow_pickle=False) as npz:
        return json.loads(str(npz[lio.HEADER]))


@pytest.mark.parametrize("options", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_exact(tmp_path, options, dtype):
    model = lstmx.LSTM(3, 5, dtype=dtype, seed=0, **options)
    path = tmp_path / "model.npz"
    lstmx.save(model, path)
    loaded = lstmx.load(path)
    assert_same_model(loaded, model)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(dtype)
    assert_array_equal(loaded(x)[0], model(x)[0])
    # A str path, a file object and bytes in memory give the same.
    assert_same_model(lstmx.load(str(path)), model)
    with open(path, "rb") as f:
        assert_same_model(lstmx.load(f), model)
    assert_same_model(lstmx.load(io.BytesIO(saved(model))), model)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_round_trip(tmp_path, dtype):
    cell = lstmx.LSTMCell(3, 4, peephole=True, output_activation="identity", dtype=dtype,
                          seed=1)
    lstmx.save(cell, tmp_path / "cell.npz")
    assert_same_model(lstmx.load(tmp_path / "cell.npz"), cell)


def test_save_writes_exactly_the_path_and_no_pickle(tmp_path):
    path = tmp_path / "weights.bin"
    lstmx.save(lstmx.LSTM(2, 3), path)
    assert sorted(os.listdir(tmp_path)) == ["weights.bin"]  # nothing appended or left over
    with np.load(path, allow_pickle=False) as npz:  # every member loads without pickle
        assert all(npz[k].dtype != object for k in npz.files)
    with pytest.raises(TypeError, match="lstmx.LSTM or lstmx.LSTMCell"):
        lstmx.save({"weight_ih_l0": np.zeros((12, 2))}, path)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = lstmx.LSTM(2, 3, seed=0)
    lstmx.save(old, path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(lio.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        lstmx.save(lstmx.LSTM(2, 3, seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_load_into_existing_model(tmp_path):
    source = lstmx.LSTM(3, 4, num_layers=2, seed=2)
    lstmx.save(source, tmp_path / "m.npz")
    target = lstmx.LSTM(3, 4, num_layers=2, seed=3)
    live = target.parameters()["weight_ih_l1"]
    assert lstmx.load(tmp_path / "m.npz", into=target) is target
    assert_same_model(target, source)
    assert target.parameters()["weight_ih_l1"] is live  # updated in place


@pytest.mark.parametrize("other", [lstmx.LSTM(3, 4, num_layers=1, seed=4),
                                   lstmx.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=4),
                                   lstmx.LSTMCell(3, 4, seed=4)])
def test_load_into_mismatched_model_changes_nothing(tmp_path, other):
    lstmx.save(lstmx.LSTM(3, 4, num_layers=2, seed=5), tmp_path / "m.npz")
    before = other.state_dict()
    with pytest.raises(ValueError, match="cannot be loaded into"):
        lstmx.load(tmp_path / "m.npz", into=other)
    for name, value in other.state_dict().items():
        assert_array_equal(value, before[name])


def bad_files(tmp_path):
    """(name, path, expected message) for damaged, foreign and mismatched files."""
    model = lstmx.LSTM(3, 4, seed=6)
    good = saved(model)
    params = model.state_dict()
    header = header_of(model)
    cases = []

    def add(name, message, data=None, **arrays):
        path = tmp_path / f"{name}.npz"
        if data is not None:
            path.write_bytes(data)
        else:
            write_npz(path, **arrays)
        cases.append((name, path, message))

    add("empty", "not a readable lstmx archive", b"")
    add("random", "not a readable lstmx archive", bytes(range(256)) * 4)
    add("truncated", "not a readable lstmx archive", good[:len(good) // 2])
    add("truncated_tail", "not a readable lstmx archive", good[:-30])
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # inside a member's data: its CRC no longer matches
    add("bit_flip", "not a readable lstmx archive", bytes(flipped))
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    add("npy", "single .npy array", npy.getvalue())
    add("pickled", "not a readable lstmx archive", pickle.dumps(params))
    add("no_header", "no '__lstmx__' header", **params)
    add("bad_json", "not valid JSON", **params, **{lio.HEADER: np.array("{not json")})
    add("header_not_string", "0-d string array", **params, **{lio.HEADER: np.zeros(2)})
    add("other_format", "no format='lstmx'", header={**header, "format": "other"}, **params)
    add("future_version", "version 2", header={**header, "version": 2}, **params)
    add("bad_class", "class must be one of", header={**header, "class": "GRU"}, **params)
    add("missing_field", "config must have the fields",
        header={**header, "config": {k: v for k, v in header["config"].items()
                                     if k != "peephole"}}, **params)
    add("bad_dtype", "dtype must be 'float32' or 'float64'",
        header={**header, "config": {**header["config"], "dtype": "int8"}}, **params)
    add("bad_value", "invalid LSTM configuration: hidden_size must be >= 1",
        header={**header, "config": {**header["config"], "hidden_size": 0}}, **params)
    add("bool_as_int", "invalid LSTM configuration: bias must be a bool",
        header={**header, "config": {**header["config"], "bias": 1}}, **params)
    add("cell_with_layers", "invalid LSTMCell configuration",
        header={**header, "class": "LSTMCell",
                "config": {**header["config"], "num_layers": 2}},
        **{k[:-3]: v for k, v in params.items()})
    add("missing_param", r"missing \['bias_hh_l0'\]", header=header,
        **{k: v for k, v in params.items() if k != "bias_hh_l0"})
    add("extra_param", r"unexpected \['weight_hr_l0'\]", header=header, **params,
        weight_hr_l0=np.zeros((2, 4), np.float32))
    add("wrong_shape", r"'weight_hh_l0' must be float32 with shape \(16, 4\)", header=header,
        **{**params, "weight_hh_l0": params["weight_hh_l0"][:, :3]})
    add("wrong_dtype", "'bias_ih_l0' must be float32", header=header,
        **{**params, "bias_ih_l0": params["bias_ih_l0"].astype(np.float64)})
    add("object_param", "'bias_ih_l0' must be float32 with shape .*; got object", header=header,
        **{**params, "bias_ih_l0": np.array([None] * 16, dtype=object)})
    return cases


def test_bad_files_get_clear_errors_and_change_nothing(tmp_path):
    target = lstmx.LSTM(3, 4, seed=7)
    before = target.state_dict()
    for name, path, message in bad_files(tmp_path):
        for into in (None, target):
            with pytest.raises(ValueError, match=message) as info:
                lstmx.load(path, into=into)
            assert str(path) in str(info.value), name  # the message names the file
        for key, value in target.state_dict().items():
            assert_array_equal(value, before[key], err_msg=name)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        lstmx.load(tmp_path / "nope.npz")
