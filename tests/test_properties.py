"""Property-based tests (hypothesis) over the whole public API.

Random constructor options (every one of them), shapes down to T = B = H = 1 and up to a large
input size, both dtypes, every memory layout a caller can hand over (C, Fortran, strided,
reversed, read-only, misaligned, byte-swapped, the other float dtype, nested lists), lengths and
states. The properties:

- agreement with the float64 reference (``lstmx.reference``), forward and backward;
- results independent of the memory layout of the inputs (bit for bit);
- inputs are never mutated, and no output shares memory with an input or a parameter;
- calls carry no hidden state: the same call twice gives the same bits;
- bad input is rejected with a ValueError/TypeError before any kernel runs, and changes
  nothing.

Example counts come from the hypothesis profile (tests/conftest.py: ``ci`` by default,
``HYPOTHESIS_PROFILE=fuzz`` for thousands).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

import lstmx
from lstmx import reference

DTYPES = (np.float32, np.float64)
LAYOUTS = ("C", "fortran", "strided", "reversed", "readonly", "misaligned", "byteswapped",
           "other_dtype", "list")


# ----------------------------------------------------------------------------- strategies

@st.composite
def lstm_options(draw):
    H = draw(st.integers(1, 6))
    return dict(
        input_size=draw(st.one_of(st.integers(1, 6), st.sampled_from([127, 300]))),
        hidden_size=H,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, H - 1)),
        peephole=draw(st.booleans()),
        output_activation=draw(st.sampled_from(["tanh", "identity"])),
        dtype=draw(st.sampled_from(DTYPES)),
        seed=draw(st.integers(0, 2 ** 32 - 1)),
        init=draw(st.sampled_from(["pytorch", "keras"])),
    )


@st.composite
def cell_options(draw):
    return dict(
        input_size=draw(st.one_of(st.integers(1, 6), st.just(300))),
        hidden_size=draw(st.integers(1, 6)),
        bias=draw(st.booleans()),
        peephole=draw(st.booleans()),
        output_activation=draw(st.sampled_from(["tanh", "identity"])),
        dtype=draw(st.sampled_from(DTYPES)),
        seed=draw(st.integers(0, 2 ** 32 - 1)),
        init=draw(st.sampled_from(["pytorch", "keras"])),
    )


@st.composite
def lstm_problems(draw):
    """A model and a valid problem for it; values are float32-representable, so that every
    layout (including a cast from the other dtype) carries exactly the same numbers."""
    options = draw(lstm_options())
    model = lstmx.LSTM(**options)
    cfg = model.config
    T, B = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    LD, D = cfg.num_layers * cfg.num_directions, cfg.num_directions

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32).astype(cfg.dtype)

    x = rand(B, T, cfg.input_size) if cfg.batch_first else rand(T, B, cfg.input_size)
    state = (rand(LD, B, cfg.output_size), rand(LD, B, cfg.hidden_size)) \
        if draw(st.booleans()) else None
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, T), min_size=B, max_size=B)))
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=draw(st.sampled_from([np.int64, np.int32,
                                                                  np.uint16, np.intp])))
    F = D * cfg.output_size
    dy = rand(B, T, F) if cfg.batch_first else rand(T, B, F)
    dstate = draw(st.sampled_from(["none", "both", "h_only", "c_only"]))
    dh, dc = rand(LD, B, cfg.output_size), rand(LD, B, cfg.hidden_size)
    dstate = {"none": None, "both": (dh, dc), "h_only": (dh, None), "c_only": (None, dc)}[dstate]
    return model, x, state, lengths, dy, dstate


def relayout(a, layout, model_dtype):
    """The same values as ``a`` in another memory layout (or container)."""
    if a is None:
        return None
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(a.shape + (3,), a.dtype)
        big[..., 1] = a
        return big[..., 1]
    if layout == "reversed":
        flipped = np.ascontiguousarray(a[::-1])
        return flipped[::-1]
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "misaligned":
        buf = np.zeros(a.nbytes + 1, np.uint8)
        b = buf[1:].view(a.dtype).reshape(a.shape)
        b[...] = a
        assert not b.flags.aligned
        return b
    if layout == "byteswapped":
        return a.astype(a.dtype.newbyteorder())
    if layout == "other_dtype":
        other = np.float64 if np.dtype(model_dtype) == np.float32 else np.float32
        return a.astype(other)
    if layout == "list":
        return a.tolist()
    raise AssertionError(layout)


def relayout_pair(pair, layout, dtype):
    if pair is None:
        return None
    return tuple(relayout(a, layout, dtype) for a in pair)


def snapshot(*objs):
    """Deep copies (with the writeable flag) of every array in ``objs``, to compare later."""
    out = []
    for o in objs:
        if isinstance(o, tuple):
            out.append(snapshot(*o))
        elif isinstance(o, np.ndarray):
            out.append((o.copy(), o.flags.writeable, o.dtype, o.strides))
        else:
            out.append(o if not isinstance(o, list) else np.array(o))
    return out


def assert_unchanged(before, *objs):
    for b, o in zip(before, objs):
        if isinstance(o, tuple):
            assert_unchanged(b, *o)
        elif isinstance(o, np.ndarray):
            value, writeable, dtype, strides = b
            assert o.dtype == dtype and o.strides == strides
            assert o.flags.writeable == writeable
            assert_array_equal(o, value, strict=True)
        elif isinstance(o, list):
            assert_array_equal(np.array(o), b)


def arrays_of(*objs):
    for o in objs:
        if isinstance(o, (tuple, list)) and not (o and isinstance(o[0], (float, list))):
            yield from arrays_of(*o)
        elif isinstance(o, dict):
            yield from arrays_of(*o.values())
        elif isinstance(o, np.ndarray):
            yield o


def assert_no_shared_memory(outputs, inputs):
    for out in arrays_of(*outputs):
        for inp in arrays_of(*inputs):
            assert not np.shares_memory(out, inp)


# ----------------------------------------------------------------------------- tolerances

def reference_tolerance(model, T, B):
    """Normwise bound on |lstmx - float64 reference| / max(1, |reference|).

    Rounding in a length-n inner product is at most about n*eps times the sum of the
    magnitudes of its terms (Higham, Accuracy and Stability, 3.1); the longest inner products
    here are the gate pre-activations (n = input width + H_out + 1), and, in the backward
    pass, the weight gradients (n = T*B). The elementwise steps in between (sigmoid, tanh,
    products) add a few eps each and are 1-Lipschitz; errors add up over at most T steps and
    L layers. The factor 4 covers the magnitude sums (the weights are O(1/sqrt(H)), the
    inputs O(1)), so a failure means a wrong answer, not rounding.
    """
    cfg = model.config
    width = max(cfg.input_size, cfg.num_directions * cfg.output_size)
    n = width + cfg.output_size + 1 + T * B
    return 4 * np.finfo(cfg.dtype).eps * n * (T + cfg.num_layers)


def assert_close_normwise(got, want, tol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    err = float(np.abs(got - want).max(initial=0))
    assert err <= tol * scale, f"{what}: error {err:.3g} > {tol * scale:.3g}"


# ----------------------------------------------------------------------------- LSTM

@given(problem=lstm_problems(), layout=st.sampled_from(LAYOUTS))
def test_lstm_agrees_with_reference_in_every_layout(problem, layout):
    model, x, state, lengths, dy, dstate = problem
    cfg = model.config
    note(f"{model!r} layout={layout}")
    params_before = model.state_dict()

    # The canonical call: C-contiguous arrays of the model's dtype.
    y, (h, c) = model(x, state, lengths)
    y_t, (h_t, c_t), cache = model.forward_train(x, state, lengths)
    dx, (dh0, dc0), grads = model.backward(cache, dy, dstate)

    # Shapes and dtypes of the contract.
    T, B = (x.shape[1], x.shape[0]) if cfg.batch_first else x.shape[:2]
    LD = cfg.num_layers * cfg.num_directions
    F = cfg.num_directions * cfg.output_size
    assert y.shape == ((B, T, F) if cfg.batch_first else (T, B, F))
    assert h.shape == (LD, B, cfg.output_size) and c.shape == (LD, B, cfg.hidden_size)
    assert dx.shape == x.shape and dh0.shape == h.shape and dc0.shape == c.shape
    for a in (y, h, c, dx, dh0, dc0, *grads.values()):
        assert a.dtype == cfg.dtype
    assert list(grads) == list(cfg.parameter_shapes())
    for name, g in grads.items():
        assert g.shape == cfg.parameter_shapes()[name]

    # Agreement with the float64 reference.
    p64 = {k: v.astype(np.float64) for k, v in model.parameters().items()}
    f64 = (lambda a: None if a is None else np.asarray(a, np.float64))
    h0, c0 = (None, None) if state is None else map(f64, state)
    y_r, (h_r, c_r), saved = reference.lstm_forward(p64, cfg, f64(x), h0, c0, lengths)
    dh_n, dc_n = (None, None) if dstate is None else map(f64, dstate)
    dx_r, (dh0_r, dc0_r), grads_r = reference.lstm_backward(p64, cfg, saved, f64(dy),
                                                            dh_n, dc_n)
    tol = reference_tolerance(model, T, B)
    # Inference and training compute the same forward pass (to rounding: they may block
    # their products differently).
    for what, got, want in [("y", y, y_r), ("h_n", h, h_r), ("c_n", c, c_r),
                            ("y train", y_t, y_r), ("h_n train", h_t, h_r),
                            ("c_n train", c_t, c_r), ("dx", dx, dx_r),
                            ("dh0", dh0, dh0_r), ("dc0", dc0, dc0_r)] + \
            [(k, grads[k], grads_r[k]) for k in grads]:
        assert_close_normwise(got, want, tol, what)

    # The same values in another layout give the same bits, and are never mutated.
    x2, state2 = relayout(x, layout, cfg.dtype), relayout_pair(state, layout, cfg.dtype)
    dy2, dstate2 = relayout(dy, layout, cfg.dtype), relayout_pair(dstate, layout, cfg.dtype)
    lengths2 = lengths if layout != "list" or lengths is None else lengths.tolist()
    before = snapshot(x2, state2, lengths2, dy2, dstate2)
    y2, (h2, c2) = model(x2, state2, lengths2)
    y2_t, (h2_t, c2_t), cache2 = model.forward_train(x2, state2, lengths2)
    dx2, (dh02, dc02), grads2 = model.backward(cache2, dy2, dstate2)
    assert_unchanged(before, x2, state2, lengths2, dy2, dstate2)
    for a, b in [(y2, y), (h2, h), (c2, c), (y2_t, y_t), (h2_t, h_t), (c2_t, c_t), (dx2, dx),
                 (dh02, dh0), (dc02, dc0)] + [(grads2[k], grads[k]) for k in grads]:
        assert_array_equal(a, b, strict=True)

    # No output aliases an input or a live parameter; parameters are untouched.
    live = model.parameters()
    assert_no_shared_memory([y, h, c, dx, dh0, dc0, grads, y2, h2, c2, dx2],
                            [x, state, dy, dstate, x2, state2, dy2, dstate2, live])
    for name, value in model.state_dict().items():
        assert_array_equal(value, params_before[name], strict=True)

    # No hidden state between calls: the same call again gives the same bits.
    y3, (h3, c3) = model(x, state, lengths)
    assert_array_equal(y3, y)
    assert_array_equal(c3, c)


@given(problem=lstm_problems())
def test_outputs_past_lengths_are_zero_and_padding_is_ignored(problem):
    model, x, state, lengths, dy, dstate = problem
    cfg = model.config
    if lengths is None:
        return
    y, (h, c) = model(x, state, lengths)
    y_tb = y.swapaxes(0, 1) if cfg.batch_first else y
    x_tb = (x.swapaxes(0, 1) if cfg.batch_first else x).copy()
    for b, n in enumerate(lengths):
        assert_array_equal(y_tb[n:, b], 0)
        x_tb[n:, b] = 1e30  # junk in the padding must not matter
    x_junk = x_tb.swapaxes(0, 1) if cfg.batch_first else x_tb
    y2, (h2, c2) = model(x_junk, state, lengths)
    assert_array_equal(y2, y)
    assert_array_equal(h2, h)
    assert_array_equal(c2, c)


@given(options=lstm_options())
def test_constructor_options_are_honoured_and_seeded(options):
    a, b = lstmx.LSTM(**options), lstmx.LSTM(**options)
    cfg = a.config
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "bidirectional", "proj_size", "peephole", "output_activation"):
        assert getattr(cfg, name) == options[name]
    assert cfg.dtype == np.dtype(options["dtype"]) == a.dtype
    shapes = cfg.parameter_shapes()
    assert list(a.state_dict()) == list(shapes)
    for name, value in a.state_dict().items():
        assert value.shape == shapes[name] and value.dtype == cfg.dtype
        assert value.flags.c_contiguous and np.all(np.isfinite(value))
        assert_array_equal(value, b.state_dict()[name])  # same seed, same parameters
    # A state_dict round trip into a differently seeded model gives the same function.
    other = lstmx.LSTM(**{**options, "seed": options["seed"] + 1})
    other.load_state_dict(a.state_dict())
    x = np.ones((2, 3, cfg.input_size), cfg.dtype)
    assert_array_equal(other(x)[0], a(x)[0])


# ----------------------------------------------------------------------------- LSTMCell

@given(options=cell_options(), B=st.integers(1, 4), seed=st.integers(0, 2 ** 32 - 1),
       with_state=st.booleans(), layout=st.sampled_from(LAYOUTS))
def test_cell_agrees_with_reference_in_every_layout(options, B, seed, with_state, layout):
    cell = lstmx.LSTMCell(**options)
    cfg = cell.config
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32).astype(cfg.dtype)

    H = cfg.hidden_size
    x = rand(B, cfg.input_size)
    state = (rand(B, H), rand(B, H)) if with_state else None
    dstate = (rand(B, H), rand(B, H))
    h, c = cell(x, state)
    (h_t, c_t), cache = cell.forward_train(x, state)
    dx, (dh, dc), grads = cell.backward(cache, dstate)
    assert h.shape == c.shape == dh.shape == dc.shape == (B, H) and dx.shape == x.shape
    assert list(grads) == list(cell.state_dict())

    p = {k: v.astype(np.float64) for k, v in cell.parameters().items()}
    b = p["bias_ih"] + p["bias_hh"] if cfg.bias else None
    peep = np.stack([p["weight_ci"], p["weight_cf"], p["weight_co"]]) if cfg.peephole else None
    h0, c0 = (np.zeros((B, H)), np.zeros((B, H))) if state is None else \
        (state[0].astype(np.float64), state[1].astype(np.float64))
    h_r, c_r, saved = reference.cell_forward(x.astype(np.float64), h0, c0, p["weight_ih"],
                                             p["weight_hh"], b, None, peep,
                                             cfg.output_activation)
    dx_r, dh_r, dc_r, (dW, dU, db, _, dpeep) = reference.cell_backward(
        dstate[0].astype(np.float64), dstate[1].astype(np.float64), saved, p["weight_ih"],
        p["weight_hh"], None, peep, cfg.output_activation)
    want = {"weight_ih": dW, "weight_hh": dU}
    if cfg.bias:
        want["bias_ih"] = want["bias_hh"] = db
    if cfg.peephole:
        want.update(weight_ci=dpeep[0], weight_cf=dpeep[1], weight_co=dpeep[2])
    tol = 4 * np.finfo(cfg.dtype).eps * (cfg.input_size + H + 1 + B) * 2
    for what, got, ref in [("h", h, h_r), ("c", c, c_r), ("h train", h_t, h_r),
                           ("c train", c_t, c_r), ("dx", dx, dx_r), ("dh", dh, dh_r),
                           ("dc", dc, dc_r)] + [(k, grads[k], want[k]) for k in grads]:
        assert_close_normwise(got, ref, tol, what)

    x2, state2 = relayout(x, layout, cfg.dtype), relayout_pair(state, layout, cfg.dtype)
    dstate2 = relayout_pair(dstate, layout, cfg.dtype)
    before = snapshot(x2, state2, dstate2)
    h2, c2 = cell(x2, state2)
    (h2_t, c2_t), cache2 = cell.forward_train(x2, state2)
    dx2, (dh2, dc2), grads2 = cell.backward(cache2, dstate2)
    assert_unchanged(before, x2, state2, dstate2)
    for a, b_ in [(h2, h), (c2, c), (h2_t, h_t), (c2_t, c_t), (dx2, dx), (dh2, dh),
                  (dc2, dc)] + \
            [(grads2[k], grads[k]) for k in grads]:
        assert_array_equal(a, b_, strict=True)
    assert_no_shared_memory([h, c, dx, dh, dc, grads, h2, c2],
                            [x, state, dstate, x2, state2, dstate2, cell.parameters()])


# ----------------------------------------------------------------------------- bad input

def _corruptions(model, x, state, lengths, dy, dstate):
    """(name, call) pairs, each with exactly one thing wrong."""
    cfg = model.config
    T, B = (x.shape[1], x.shape[0]) if cfg.batch_first else x.shape[:2]
    bad = []
    forward = [("call", model.__call__), ("forward_train", model.forward_train)]
    for fname, f in forward:
        bad += [
            (f"{fname}: x int", lambda f=f: f(x.astype(np.int64), state, lengths)),
            (f"{fname}: x complex", lambda f=f: f(x.astype(np.complex64), state, lengths)),
            # (One dim short, (T, I), is one unbatched sequence, as in torch: test_parity.)
            (f"{fname}: x two dims short", lambda f=f: f(x[0, 0], state, lengths)),
            (f"{fname}: x one dim more", lambda f=f: f(x[None], state, lengths)),
            (f"{fname}: x wrong features", lambda f=f: f(
                np.concatenate([x, x[..., :1]], -1), state, lengths)),
            (f"{fname}: x empty T", lambda f=f: f(
                x[:, :0] if cfg.batch_first else x[:0], state, None)),
            (f"{fname}: x empty B", lambda f=f: f(
                x[:0] if cfg.batch_first else x[:, :0], None, None)),
            (f"{fname}: lengths zero", lambda f=f: f(x, state, np.zeros(B, int))),
            (f"{fname}: lengths > T", lambda f=f: f(x, state, np.full(B, T + 1))),
            (f"{fname}: lengths float", lambda f=f: f(x, state, np.full(B, float(T)))),
            (f"{fname}: lengths count", lambda f=f: f(x, state, np.full(B + 1, T))),
            (f"{fname}: state not a pair", lambda f=f: f(x, np.zeros(3), lengths)),
            (f"{fname}: state wrong batch", lambda f=f: f(
                x, tuple(np.zeros((s.shape[0], B + 1, s.shape[2])) for s in
                         (state or (np.zeros((1, 1, cfg.output_size)),
                                    np.zeros((1, 1, cfg.hidden_size))))), lengths)),
            (f"{fname}: state int", lambda f=f: f(
                x, (np.zeros((cfg.num_layers * cfg.num_directions, B, cfg.output_size), int),
                    None), lengths)),
        ]
    y, _, cache = model.forward_train(x, state, lengths)
    other = lstmx.LSTM(**{**_options_of(model), "bias": not cfg.bias})
    other_cache = other.forward_train(x, None, lengths)[2]
    bad += [
        ("backward: dy extra feature", lambda: model.backward(
            cache, np.concatenate([dy, dy[..., :1]], -1))),
        ("backward: dy int", lambda: model.backward(cache, dy.astype(np.int32))),
        ("backward: dy too short", lambda: model.backward(cache, dy[..., :-1])),
        ("backward: cache of another config", lambda: model.backward(other_cache, dy)),
        ("backward: not a cache", lambda: model.backward((y, dy), dy)),
        ("backward: dstate triple", lambda: model.backward(cache, dy, (None, None, None))),
        ("backward: dstate wrong shape", lambda: model.backward(
            cache, dy, (np.zeros(dy.shape[:-1] + (cfg.output_size + 1,)), None))),
    ]
    return bad


def _options_of(model):
    cfg = model.config
    return dict(input_size=cfg.input_size, hidden_size=cfg.hidden_size,
                num_layers=cfg.num_layers, bias=cfg.bias, batch_first=cfg.batch_first,
                bidirectional=cfg.bidirectional, proj_size=cfg.proj_size,
                peephole=cfg.peephole, output_activation=cfg.output_activation,
                dtype=cfg.dtype)


# The kernel spy is cleared at the start of every example, so sharing it is safe.
@settings(suppress_health_check=list(settings().suppress_health_check)
          + [HealthCheck.function_scoped_fixture])
@given(problem=lstm_problems(), which=st.integers(0, 10 ** 6))
def test_bad_input_is_rejected_before_any_kernel_runs(problem, which, kernel_calls):
    model, x, state, lengths, dy, dstate = problem
    bad = _corruptions(model, x, state, lengths, dy, dstate)
    name, call = bad[which % len(bad)]
    note(name)
    params = model.state_dict()
    before = snapshot(x, state, lengths, dy, dstate)
    kernel_calls.clear()
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert kernel_calls == [], f"{name}: a kernel ran before the error"
    assert str(info.value), name
    assert_unchanged(before, x, state, lengths, dy, dstate)
    for k, v in model.state_dict().items():
        assert_array_equal(v, params[k])


@given(problem=lstm_problems(), which=st.sampled_from(
    ["shape", "dtype", "nan_ok", "missing", "extra", "not_mapping", "torch_like"]))
def test_load_state_dict_is_all_or_nothing(problem, which):
    model = problem[0]
    before = model.state_dict()
    live = model.parameters()
    sd = {k: v + 1 for k, v in before.items()}
    last = list(sd)[-1]
    if which == "shape":
        sd[last] = np.zeros(sd[last].shape + (1,))
    elif which == "dtype":
        sd[last] = sd[last].astype(np.int64)
    elif which == "missing":
        del sd[last]
    elif which == "extra":
        sd["weight_xx_l0"] = np.zeros(1)
    elif which == "not_mapping":
        sd = list(sd.values())
    elif which == "torch_like":
        class Tensor:  # the duck type load_state_dict accepts: .detach().cpu().numpy()
            def __init__(self, a):
                self.a = a

            def detach(self):
                return self

            def cpu(self):
                return self

            def numpy(self):
                return self.a
        sd = {k: Tensor(v) for k, v in sd.items()}
    if which in ("nan_ok", "torch_like"):
        model.load_state_dict(sd)
        for k, v in model.parameters().items():
            assert v is live[k]  # loaded in place: the live arrays stay the same objects
            assert_array_equal(v, (before[k] + 1).astype(v.dtype))
        return
    with pytest.raises((KeyError, TypeError, ValueError)):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        assert_array_equal(v, before[k])


@given(problem=lstm_problems())
def test_load_state_dict_from_views_of_its_own_parameters(problem):
    # Values that are the model's own live arrays, permuted among keys of the same shape
    # (bias_ih <-> bias_hh, say): every key must receive the value it was given *before*
    # the load began, not an already overwritten one.
    model = problem[0]
    live = model.parameters()
    before = model.state_dict()
    by_shape = {}
    for name, value in live.items():
        by_shape.setdefault(value.shape, []).append(name)
    sd, want = {}, {}
    for names in by_shape.values():
        rotated = names[1:] + names[:1]
        for dst, src in zip(names, rotated):
            sd[dst] = live[src]
            want[dst] = before[src]
    model.load_state_dict(sd)
    for name, value in model.parameters().items():
        assert value is live[name]
        assert_array_equal(value, want[name])
