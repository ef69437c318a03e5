"""Fuzz target: hostile input to every validating entry point, and hostile model files.

Not collected by a plain ``pytest`` run (the name does not start with ``test_``); run it by
name. The example count comes from the hypothesis profile:

    python -m pytest tests/fuzz_validation.py                          # CI size (profile "ci")
    HYPOTHESIS_PROFILE=fuzz python -m pytest tests/fuzz_validation.py  # full size, 2000 each

The property everywhere: the call either succeeds with a result of the documented shape, or
raises the documented error (TypeError/ValueError; KeyError for a ``load_state_dict`` key
mismatch; ValueError naming the file for ``lstmx.load``), and in that case no kernel ran and
nothing was changed. Any other exception fails; a crash kills the run. A training cache
changed by hand must be refused too (there the kernels' own checks may be what refuses it).
"""
import io
import json
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lstmx

# ----------------------------------------------------------------------------- strategies

SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
ANY_DTYPE = st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(max_len=3),
                      hnp.unicode_string_dtypes(max_len=3),
                      st.sampled_from([np.dtype(">f4"), np.dtype(">f8"), np.dtype("f2"),
                                       np.dtype([("a", "f4"), ("b", "i2")])]))


def any_array(shape=SMALL_SHAPES):
    objects = st.builds(lambda n: np.array([None, 1.5, "a"][:n], dtype=object),
                        st.integers(0, 3))
    return hnp.arrays(ANY_DTYPE, shape) | objects


class Unconvertible:
    """An object whose conversion to an array fails in its own way."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("no array here")


class Hostile(dict):
    """A mapping whose lookups fail."""

    def __getitem__(self, key):
        raise RuntimeError("hostile mapping")


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.complex_numbers(),
                    st.text(max_size=4), st.binary(max_size=4),
                    st.sampled_from([object(), Unconvertible(), Ellipsis, slice(None)]))

ANYTHING = st.recursive(st.one_of(SCALARS, any_array()),
                        lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
                        max_leaves=6)


@st.composite
def near(draw, valid, arrays_only=False):
    """``valid`` (an array), or something close to it: another dtype, one dimension off, an
    added or dropped dimension, a strange layout, a huge broadcast view, or (unless
    ``arrays_only``) anything."""
    kinds = ["valid", "dtype", "dim", "ndim", "layout", "huge", "nan"]
    kind = draw(st.sampled_from(kinds if arrays_only else kinds + ["anything"]))
    note(f"near: {kind}")
    if kind == "valid":
        return valid
    if kind == "dtype":
        with np.errstate(all="ignore"):  # NaN or inf cast to an integer dtype
            return valid.astype(draw(ANY_DTYPE.filter(lambda d: d.kind not in "OSUV")))
    if kind == "dim" and valid.ndim:
        shape = list(valid.shape)
        axis = draw(st.integers(0, valid.ndim - 1))
        shape[axis] = draw(st.integers(0, 6).filter(lambda n: n != shape[axis]))
        return np.zeros(shape, valid.dtype)
    if kind == "ndim":
        return valid[None] if draw(st.booleans()) or not valid.ndim else valid[0]
    if kind == "layout":
        how = draw(st.sampled_from(["F", "neg", "readonly", "misaligned", "bigendian"]))
        if how == "F":
            return np.asfortranarray(valid)
        if how == "neg":
            return np.ascontiguousarray(valid[::-1])[::-1]
        if how == "readonly":
            v = valid.copy()
            v.flags.writeable = False
            return v
        if how == "misaligned":
            buf = np.zeros(valid.nbytes + 1, np.uint8)
            v = buf[1:].view(valid.dtype).reshape(valid.shape)
            v[...] = valid
            return v
        return valid.astype(valid.dtype.newbyteorder())
    if kind == "huge" and valid.ndim >= 2 and not arrays_only:
        # No memory of its own: must be refused (too many rows), never copied.
        shape = (2 ** 16, 2 ** 15 + draw(st.integers(1, 9))) + valid.shape[2:]
        return np.broadcast_to(np.zeros((), valid.dtype), shape)
    if kind == "nan":  # or, for integers, an extreme value
        v = valid.copy()
        if v.size:
            extremes = ([np.nan, np.inf, -np.inf, np.finfo(v.dtype).max] if v.dtype.kind == "f"
                        else [0, -1, np.iinfo(v.dtype).min, np.iinfo(v.dtype).max])
            v.flat[draw(st.integers(0, v.size - 1))] = draw(st.sampled_from(extremes))
        return v
    return valid if arrays_only else draw(ANYTHING)


OPTIONS = dict(num_layers=st.integers(1, 2), bias=st.booleans(), batch_first=st.booleans(),
               bidirectional=st.booleans(), reverse=st.booleans(), peephole=st.booleans(),
               output_activation=st.sampled_from(["tanh", "identity"]),
               dtype=st.sampled_from([np.float32, np.float64]))


@st.composite
def models(draw, cell=False):
    H = draw(st.integers(1, 4))
    kw = dict(input_size=draw(st.integers(1, 4)), hidden_size=H, seed=0)
    names = ["bias", "peephole", "output_activation", "dtype"] if cell else list(OPTIONS)
    for name in names:
        kw[name] = draw(OPTIONS[name])
    if not cell and kw["bidirectional"]:
        kw["reverse"] = False  # one reversed direction, or two: not both
    if not cell:
        kw["proj_size"] = draw(st.integers(0, H - 1))
    return (lstmx.LSTMCell if cell else lstmx.LSTM)(**kw)


# ----------------------------------------------------------------------------- harness

def attempt(calls, call, allowed=(TypeError, ValueError)):
    """Run ``call``: returns (result, None) or (None, the allowed error); no kernel may have
    run when it fails (``calls`` is the ``kernel_calls`` spy of tests/conftest.py); any other
    exception propagates and fails the example."""
    calls.clear()
    try:
        return call(), None
    except allowed as err:
        assert str(err), "an error without a message"
        assert calls == [], f"a kernel ran before {type(err).__name__}: {err}"
        return None, err


# The kernel spy is a function-scoped fixture shared by the examples of a test; attempt()
# clears it before every call, so sharing it is safe.
spied = settings(suppress_health_check=list(settings().suppress_health_check)
                 + [HealthCheck.function_scoped_fixture])


def valid_problem(m, T, B):
    cfg = m.config
    LD = cfg.num_layers * cfg.num_directions
    x = np.ones((B, T, cfg.input_size) if cfg.batch_first else (T, B, cfg.input_size),
                cfg.dtype)
    state = (np.zeros((LD, B, cfg.output_size), cfg.dtype),
             np.zeros((LD, B, cfg.hidden_size), cfg.dtype))
    return x, state, np.full(B, T)


# ----------------------------------------------------------------------------- the targets

@spied
@given(which=st.sampled_from(["input_size", "hidden_size", "num_layers", "bias",
                              "batch_first", "bidirectional", "reverse", "proj_size", "peephole",
                              "output_activation", "dtype", "init", "seed"]),
       value=ANYTHING, cell=st.booleans())
def test_fuzz_constructor(which, value, cell, kernel_calls):
    if cell and which in ("num_layers", "batch_first", "bidirectional", "reverse", "proj_size"):
        return
    cls = lstmx.LSTMCell if cell else lstmx.LSTM
    m, err = attempt(kernel_calls, lambda: cls(3, 4, **{which: value}))
    if err is not None:
        assert which in str(err), f"the error does not name {which!r}: {err}"
    else:
        assert m(np.ones((2, 1, 3)) if not cell else np.ones((1, 3)))[0].dtype == m.dtype


@spied
@given(m=models(), T=st.integers(1, 3), B=st.integers(1, 3), data=st.data())
def test_fuzz_lstm_inputs(m, T, B, data, kernel_calls):
    x, state, lengths = valid_problem(m, T, B)
    x2 = data.draw(near(x), "x")
    state2 = data.draw(st.one_of(st.none(), st.tuples(near(state[0]), near(state[1])),
                                 ANYTHING), "state")
    lengths2 = data.draw(st.one_of(st.none(), near(lengths),
                                   st.lists(st.integers(-2 ** 64, 2 ** 64), max_size=4)),
                         "lengths")
    params = m.state_dict()
    for call in (m.__call__, m.forward_train):
        out, err = attempt(kernel_calls, lambda: call(x2, state2, lengths2))
        if err is None:
            y, (h, c) = out[:2]
            assert y.dtype == m.dtype and h.shape[1] == c.shape[1] == y.shape[
                0 if m.config.batch_first else 1]
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, params[k])


@spied
@given(m=models(), T=st.integers(1, 3), B=st.integers(1, 3), data=st.data())
def test_fuzz_backward_inputs(m, T, B, data, kernel_calls):
    x, _, lengths = valid_problem(m, T, B)
    y, (h, c), cache = m.forward_train(x, None, lengths)
    cache2 = data.draw(st.one_of(st.just(cache), ANYTHING), "cache")
    dy = data.draw(near(np.ones_like(y)), "dy")
    dstate = data.draw(st.one_of(st.none(), st.tuples(st.none() | near(h), st.none() | near(c)),
                                 ANYTHING), "dstate")
    out, err = attempt(kernel_calls, lambda: m.backward(cache2, dy, dstate))
    if err is None:
        assert out[0].shape == x.shape


@spied
@given(m=models(cell=True), B=st.integers(1, 3), data=st.data())
def test_fuzz_cell_inputs(m, B, data, kernel_calls):
    H = m.config.hidden_size
    x = data.draw(near(np.ones((B, m.config.input_size), m.dtype)), "x")
    state = data.draw(st.one_of(st.none(), st.tuples(near(np.zeros((B, H), m.dtype)),
                                                     near(np.zeros((B, H), m.dtype))),
                                ANYTHING), "state")
    out, err = attempt(kernel_calls, lambda: m(x, state))
    if err is None:
        h, c = out
        assert h.dtype == c.dtype == m.dtype and h.shape == c.shape and h.shape[1] == H
    out, err = attempt(kernel_calls, lambda: m.forward_train(x, state))
    if err is None:
        (h, c), cache = out
        dstate = data.draw(st.one_of(st.tuples(st.none() | near(h), st.none() | near(c)),
                                     ANYTHING), "dstate")
        grads, err = attempt(kernel_calls, lambda: m.backward(cache, dstate))
        if err is None:
            dx, (dh, dc), _ = grads
            assert dx.shape == (h.shape[0], m.config.input_size) and dh.shape == h.shape


@spied
@given(m=models(), data=st.data())
def test_fuzz_load_state_dict(m, data, kernel_calls):
    sd = m.state_dict()
    keys = list(sd)
    kind = data.draw(st.sampled_from(["values", "drop", "add", "not_mapping", "hostile"]))
    if kind == "values":
        for k in data.draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            sd[k] = data.draw(near(sd[k]), k)
    elif kind == "drop":
        del sd[data.draw(st.sampled_from(keys))]
    elif kind == "add":
        sd[data.draw(st.text(max_size=12))] = data.draw(ANYTHING)
    elif kind == "not_mapping":
        sd = data.draw(ANYTHING)
    else:
        sd = Hostile(sd)
    before = m.state_dict()
    allowed = (TypeError, ValueError, KeyError) + ((RuntimeError,) if kind == "hostile" else ())
    _, err = attempt(kernel_calls, lambda: m.load_state_dict(sd), allowed)
    if err is not None:
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, before[k])


@given(m=models(), T=st.integers(1, 3), B=st.integers(1, 3), data=st.data())
def test_fuzz_tampered_cache(m, T, B, data):
    # LSTMCache is public and its arrays are plain attributes: a cache whose arrays were
    # changed by hand (other shapes, dtypes, layouts, lengths) must be refused (the kernels
    # check every size and every length), never read out of bounds.
    x, _, lengths = valid_problem(m, T, B)
    y, _, cache = m.forward_train(x, None, lengths)
    which = data.draw(st.sampled_from(["lengths", "h0", "c0", "inputs", "outputs", "gates",
                                       "cells"]))
    if which in ("lengths", "h0", "c0"):
        setattr(cache, which, data.draw(near(getattr(cache, which), arrays_only=True), which))
    else:
        items = getattr(cache, which)
        k = data.draw(st.integers(0, len(items) - 1))
        items[k] = data.draw(near(items[k], arrays_only=True), f"{which}[{k}]")
    try:
        dx, _, grads = m.backward(cache, np.ones_like(y))
    except (TypeError, ValueError, IndexError) as err:
        # The property here is safety: refused with an exception (the kernels' ValueError,
        # or the engine indexing a cache with too few states), never read out of bounds.
        assert str(err)
        return
    assert dx.shape == x.shape


# ----------------------------------------------------------------------------- hostile files

def _archive(m) -> bytes:
    buf = io.BytesIO()
    lstmx.save(m, buf)
    return buf.getvalue()


def _rezip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
                    | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@st.composite
def hostile_archives(draw):
    m = draw(models(cell=draw(st.booleans())))
    data = _archive(m)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = json.loads(str(np.load(io.BytesIO(members["__lstmx__.npy"]))))
    kind = draw(st.sampled_from(["bytes", "truncate", "header_field", "header_value",
                                 "member", "member_header", "drop", "extra", "not_zip"]))
    note(f"archive mutation: {kind}")
    if kind == "bytes":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "not_zip":
        return draw(st.binary(max_size=64)) or _npy(np.zeros(3))
    if kind in ("header_field", "header_value"):
        target = header if kind == "header_field" else header["config"]
        key = draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = draw(JSON)
        text = json.dumps(header)
        if draw(st.integers(0, 9)) == 0:
            text = "[" * 10 ** 5 + "]" * 10 ** 5  # deeper than the recursion limit
        members["__lstmx__.npy"] = _npy(np.array(text))
    elif kind == "member":
        name = draw(st.sampled_from(sorted(members)))
        members[name] = _npy(draw(any_array(SMALL_SHAPES) | st.builds(
            lambda a: np.broadcast_to(a, (2, 3)), st.just(np.float32(1)))))
    elif kind == "member_header":
        # A .npy header that claims a huge shape but carries a few bytes.
        name = draw(st.sampled_from(sorted(members)))
        dims = draw(st.lists(st.integers(0, 2 ** 40), min_size=1, max_size=3))
        dtype = np.dtype(draw(st.sampled_from(["<f4", "<f8", "|O", "<U3"])))
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            head, {"descr": dtype.str, "fortran_order": False, "shape": tuple(dims)})
        members[name] = head.getvalue() + draw(st.binary(max_size=16))
    elif kind == "drop":
        del members[draw(st.sampled_from(sorted(members)))]
    else:
        name = draw(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8))
        members[name + ".npy"] = _npy(
            draw(any_array(SMALL_SHAPES)))
    return _rezip(members)


@given(blob=hostile_archives(), into=st.booleans())
def test_fuzz_load_hostile_files(blob, into):
    target = lstmx.LSTM(2, 3, seed=0) if into else None
    before = target.state_dict() if into else None
    try:
        model = lstmx.load(io.BytesIO(blob), into=target)
    except ValueError as err:
        assert str(err)
        if into:
            for k, v in target.state_dict().items():
                np.testing.assert_array_equal(v, before[k])
        return
    # A file that loads must give a working model.
    cfg = model.config
    if isinstance(model, lstmx.LSTMCell):
        h, c = model(np.ones((1, cfg.input_size), cfg.dtype))
        assert h.shape == (1, cfg.hidden_size)
    else:
        x = np.ones((1, 1, cfg.input_size), cfg.dtype)
        assert model(x)[0].shape[-1] == cfg.num_directions * cfg.output_size
