"""lstmx.save / lstmx.load of QuantizedLSTM and QuantizedLSTMCell: exact round trips, and the
float models' hardening (bounds by file, dtypes checked, from_state_dict's validation)."""
import io
import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
import lstmx.io as lio
from lstmx.quantized import QuantizedLSTM, QuantizedLSTMCell

MODES = ["int8", "bfloat16"]
CONFIGS = [dict(), dict(num_layers=2, bidirectional=True, batch_first=True),
           dict(proj_size=2, peephole=True, output_activation="identity", bias=False),
           dict(reverse=True)]


def quantized(mode, cell=False, seed=0, **options):
    model = (lstmx.LSTMCell(3, 5, seed=seed, **options) if cell
             else lstmx.LSTM(3, 5, seed=seed, **options))
    return model.quantize(mode)


def assert_same_quantized(a, b):
    assert type(a) is type(b)
    assert a.config == b.config and a.mode == b.mode
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert_array_equal(sa[name], sb[name], err_msg=name)


def saved(model) -> bytes:
    buf = io.BytesIO()
    lstmx.save(model, buf)
    return buf.getvalue()


def members_of(model) -> dict:
    with zipfile.ZipFile(io.BytesIO(saved(model))) as z:
        return {n: z.read(n) for n in z.namelist()}


def npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


def zipped(members: dict) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    buf.seek(0)
    return buf


def with_header(model, **changes) -> dict:
    members = members_of(model)
    header = json.loads(str(np.load(io.BytesIO(members["__lstmx__.npy"]))))
    for key, value in changes.items():
        if key in header["config"]:
            header["config"][key] = value
        elif value is None:
            header.pop(key)
        else:
            header[key] = value
    members["__lstmx__.npy"] = npy(np.array(json.dumps(header)))
    return members


@pytest.mark.parametrize("options", CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_round_trip_exact(tmp_path, mode, options):
    q = quantized(mode, **options)
    path = tmp_path / "q.npz"
    lstmx.save(q, path)
    loaded = lstmx.load(path)
    assert_same_quantized(loaded, q)
    cfg = q.config
    x = np.random.default_rng(0).standard_normal(
        (2, 4, 3) if cfg.batch_first else (4, 2, 3)).astype(np.float32)
    y, (h, c) = q(x)
    y2, (h2, c2) = loaded(x)
    assert_array_equal(y2, y)
    assert_array_equal(h2, h)
    assert_array_equal(c2, c)
    assert_same_quantized(lstmx.load(io.BytesIO(saved(q))), q)


@pytest.mark.parametrize("mode", MODES)
def test_cell_round_trip(tmp_path, mode):
    q = quantized(mode, cell=True, peephole=True, output_activation="identity")
    assert isinstance(q, QuantizedLSTMCell)
    lstmx.save(q, tmp_path / "cell.npz")
    loaded = lstmx.load(tmp_path / "cell.npz")
    assert_same_quantized(loaded, q)
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    assert_array_equal(loaded(x)[0], q(x)[0])


@pytest.mark.parametrize("cell", [False, True])
@pytest.mark.parametrize("options", CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_layout_is_the_models(mode, options, cell):
    """What load demands of each member is what the model's state_dict holds."""
    if cell:
        options = {k: v for k, v in options.items()
                   if k in ("bias", "peephole", "output_activation")}
    q = quantized(mode, cell, **options)
    want = {k: (v.dtype, v.shape) for k, v in q.state_dict().items()}
    assert lio.quantized_layout(q.config, mode, cell) == want


@pytest.mark.parametrize("mode", MODES)
def test_header_records_class_and_mode_and_nothing_pickled(mode):
    q = quantized(mode)
    with np.load(io.BytesIO(saved(q)), allow_pickle=False) as npz:
        header = json.loads(str(npz[lio.HEADER]))
        assert all(npz[k].dtype != object for k in npz.files)
    assert header["class"] == "QuantizedLSTM" and header["mode"] == mode
    assert header["config"]["hidden_size"] == 5


def test_header_claiming_a_million_layers_is_refused_at_once():
    members = with_header(quantized("int8"), num_layers=10 ** 6)
    blob = zipped(members)
    tracemalloc.start()
    t0 = time.perf_counter()
    # 2 int8 matrices, their 2 scales and 2 biases per layer.
    with pytest.raises(ValueError, match="needs 6000000 parameter arrays; the archive has 6"):
        lstmx.load(blob)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1 << 20


@pytest.mark.parametrize("mode, member, bad, message", [
    ("int8", "weight_ih_l0", np.zeros((20, 3), np.float32),
     r"'weight_ih_l0' must be int8 with shape \(20, 3\); got float32"),
    ("int8", "weight_ih_scale_l0", np.ones(20, np.float64),
     r"'weight_ih_scale_l0' must be float32 with shape \(20,\); got float64"),
    ("int8", "weight_hh_l0", np.zeros((4000, 4000), np.int8),
     r"'weight_hh_l0' must be int8 with shape \(20, 5\); got int8 with shape \(4000, 4000\)"),
    ("bfloat16", "weight_ih_l0", np.zeros((20, 3), np.int16),
     r"'weight_ih_l0' must be uint16 with shape \(20, 3\); got int16"),
    ("bfloat16", "bias_ih_l0", np.zeros(20, np.uint16),
     r"'bias_ih_l0' must be float32 with shape \(20,\); got uint16"),
])
def test_members_of_the_wrong_dtype_or_shape_are_refused(mode, member, bad, message):
    members = members_of(quantized(mode))
    members[member + ".npy"] = npy(bad)
    with pytest.raises(ValueError, match=message):
        lstmx.load(zipped(members))


@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf])
def test_scales_that_are_not_finite_and_positive_are_refused(scale):
    members = members_of(quantized("int8"))
    s = np.load(io.BytesIO(members["weight_hh_scale_l0.npy"]))
    s[3] = scale
    members["weight_hh_scale_l0.npy"] = npy(s)
    with pytest.raises(ValueError, match="does not hold a valid int8 QuantizedLSTM"):
        lstmx.load(zipped(members))


def test_missing_or_extra_members_are_named():
    members = members_of(quantized("int8"))
    del members["weight_ih_scale_l0.npy"]
    with pytest.raises(ValueError, match=r"missing \['weight_ih_scale_l0'\]"):
        lstmx.load(zipped(members))
    members = members_of(quantized("bfloat16"))
    members["weight_ih_scale_l0.npy"] = npy(np.ones(20, np.float32))
    with pytest.raises(ValueError, match=r"unexpected \['weight_ih_scale_l0'\]"):
        lstmx.load(zipped(members))


@pytest.mark.parametrize("changes, message", [
    (dict(mode="int4"), r"needs a mode of \['int8', 'bfloat16'\]; got 'int4'"),
    (dict(mode=None), r"needs a mode of .*; got None"),
    (dict(mode=8), r"needs a mode of .*; got 8"),
    (dict(dtype="float64"), r"computes in float32; its config's dtype must be 'float32', "
                            r"got 'float64'"),
])
def test_bad_modes_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        lstmx.load(zipped(with_header(quantized("int8"), **changes)))


def test_a_float_model_has_no_mode():
    with pytest.raises(ValueError, match="a float LSTM has no quantisation mode"):
        lstmx.load(zipped(with_header(lstmx.LSTM(3, 5), mode="int8")))


def test_a_quantized_cell_has_only_the_cells_options():
    members = with_header(quantized("int8", cell=True), num_layers=2)
    with pytest.raises(ValueError, match="invalid QuantizedLSTMCell configuration"):
        lstmx.load(zipped(members))


@pytest.mark.parametrize("dtype", [">u2", "<u2"])
def test_bfloat16_bits_of_either_byte_order_load(dtype):
    q = quantized("bfloat16")
    members = members_of(q)
    bits = q.state_dict()["weight_hh_l0"]
    members["weight_hh_l0.npy"] = npy(bits.astype(dtype))
    assert_same_quantized(lstmx.load(zipped(members)), q)


def test_load_into_is_refused_for_a_quantized_model():
    q = quantized("int8")
    with pytest.raises(ValueError, match="which load builds anew"):
        lstmx.load(io.BytesIO(saved(q)), into=lstmx.LSTM(3, 5))


def test_save_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(TypeError, match="or a QuantizedLSTM or QuantizedLSTMCell; got dict"):
        lstmx.save({"weight_ih_l0": np.zeros((20, 3), np.int8)}, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_quantize_makes_the_classes_load_builds():
    assert type(quantized("int8")) is QuantizedLSTM
    assert type(quantized("bfloat16", cell=True)) is QuantizedLSTMCell
