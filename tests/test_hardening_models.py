"""Models that travel and are handled: assignments reach the live parameters, unpickled and
copied models (whatever their buffers) compute and train like the original, and no message
names a kernel's internal argument."""
import copy
import io
import pickle

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx


def make_models():
    return [lstmx.LSTM(3, 4, num_layers=2, bidirectional=True, peephole=True, proj_size=2,
                       seed=0),
            lstmx.LSTM(3, 4, peephole=True, dtype=np.float64, seed=1),
            lstmx.LSTMCell(3, 4, peephole=True, seed=2),
            lstmx.Linear(3, 4, seed=3), lstmx.Embedding(5, 3, seed=4)]


def run(model):
    """The model's output on a fixed input (the last step's state for a cell)."""
    if isinstance(model, lstmx.Embedding):
        return model(np.array([[0, 4], [2, 1]]))
    if isinstance(model, lstmx.LSTMCell):
        x = np.linspace(-1, 1, 6).reshape(2, 3)
        h, c = model(x, (np.full((2, 4), 0.5), np.full((2, 4), -0.5)))
        return np.concatenate([h, c])
    if isinstance(model, lstmx.Linear):
        return model(np.linspace(-1, 1, 6).reshape(2, 3))
    return model(np.linspace(-1, 1, 12).reshape(2, 2, 3))[0]


def assert_live(model):
    """Every parameter matters: changing it in place changes the output."""
    before = run(model)
    for name, p in model.parameters().items():
        saved = p.copy()
        p += 0.25
        assert not np.array_equal(run(model), before), name
        p[...] = saved
        assert p.flags.c_contiguous and p.flags.aligned and p.flags.writeable
        assert p.dtype.isnative


@pytest.mark.parametrize("index", range(5))
def test_assigning_a_parameter_writes_into_the_live_array(index, tmp_path):
    model = make_models()[index]
    name, live = next(iter(model.parameters().items()))
    new = np.full(live.shape, 0.125, np.float64)
    setattr(model, name, new)
    assert model.parameters()[name] is live and name not in vars(model)
    assert_array_equal(live, new.astype(live.dtype))
    if isinstance(model, (lstmx.LSTM, lstmx.LSTMCell)):
        lstmx.save(model, tmp_path / "m.npz")
        assert_array_equal(lstmx.load(tmp_path / "m.npz").parameters()[name], live)
    with pytest.raises(ValueError, match=f"{name} must have shape"):
        setattr(model, name, np.zeros((7, 7)))
    with pytest.raises(TypeError, match=f"{name} must be a float32 or float64 array"):
        setattr(model, name, np.zeros(live.shape, np.int64))
    assert_array_equal(live, new.astype(live.dtype))  # a refused assignment changes nothing
    fixed = "config" if hasattr(model, "config") else next(
        a for a in ("in_features", "num_embeddings") if hasattr(model, a))
    with pytest.raises(AttributeError, match=f"{fixed} of a .* cannot be reassigned"):
        setattr(model, fixed, getattr(model, fixed))
    model.note = "other attributes are the user's"
    assert model.note == "other attributes are the user's"


def misaligned_read_only(buffers):
    """The out-of-band buffers as a transport may deliver them: at odd addresses, read-only."""
    out = []
    for b in buffers:
        raw = b.raw()
        store = bytearray(raw.nbytes + 1)
        store[1:] = raw
        out.append(memoryview(bytes(store))[1:])
    return out


def travelled(model):
    buffers = []
    data = pickle.dumps(model, protocol=5, buffer_callback=buffers.append)
    assert buffers  # the arrays went out of band
    yield "protocol 5 out of band", pickle.loads(data, buffers=misaligned_read_only(buffers))
    yield "pickle", pickle.loads(pickle.dumps(model))
    yield "deepcopy", copy.deepcopy(model)


@pytest.mark.parametrize("index", range(5))
def test_models_work_however_their_arrays_arrived(index):
    model = make_models()[index]
    want = run(model)
    for how, other in travelled(model):
        assert_array_equal(run(other), want, err_msg=how)
        assert_live(other)
        if isinstance(other, lstmx.LSTM):
            x = np.ones((2, 1, 3), other.dtype)
            y, _, cache = other.forward_train(x)
            other.backward(cache, np.ones_like(y))
            other.load_state_dict(model.state_dict())
            assert_live(other)


def test_load_state_dict_realigns_live_arrays_that_cannot_reach_the_kernels():
    model = lstmx.LSTM(3, 4, peephole=True, seed=0)
    want = run(model)
    state = model.state_dict()
    for name, value in list(model._params.items()):  # as an older transport left them
        store = np.empty(value.nbytes + 1, np.uint8)
        odd = store[1:].view(value.dtype).reshape(value.shape)
        odd[...] = 0
        odd.flags.writeable = False
        model._params[name] = odd
    model.load_state_dict(state)
    assert_array_equal(run(model), want)
    assert_live(model)


def never_kernel_argument(call, exc=ValueError, match=None):
    with pytest.raises(exc, match=match) as info:
        call()
    assert not str(info.value).startswith("kernel argument")
    return str(info.value)


@pytest.mark.parametrize("cell", [False, True])
def test_parameters_reshaped_in_place_are_named(cell):
    model = lstmx.LSTMCell(3, 4, seed=0) if cell else lstmx.LSTM(3, 4, seed=0)
    name = "weight_ih" if cell else "weight_ih_l0"
    model.parameters()[name].shape = (3, 16)
    x = np.ones((1, 3), np.float32) if cell else np.ones((2, 1, 3), np.float32)
    state = (np.zeros((1, 4), np.float32),) * 2 if cell else None
    message = f"parameter '{name}' was changed in place: .* shape \\(16, 3\\); it is now " \
              f"float32 with shape \\(3, 16\\)"
    never_kernel_argument(lambda: model(x, state), match=message)
    never_kernel_argument(lambda: model(x), match=message)
    never_kernel_argument(lambda: model.forward_train(x), match=message)


@pytest.mark.parametrize("tamper", [
    lambda c: c.gates.__setitem__(0, c.gates[0][:, :, :-1]),
    lambda c: c.cells.__setitem__(0, c.cells[0].astype(np.float64)),
    lambda c: c.inputs.__setitem__(0, np.asfortranarray(c.inputs[0])),
    lambda c: setattr(c, "h0", c.h0[:0]),
    lambda c: setattr(c, "lengths", np.array([0, 9])),
    lambda c: c.weights.__setitem__(0, (c.weights[0][0][:, :1],) + c.weights[0][1:]),
])
@pytest.mark.parametrize("cell", [False, True])
def test_caches_changed_by_hand_are_refused_in_words(tamper, cell):
    if cell:
        model = lstmx.LSTMCell(3, 4, seed=0)
        (h, c), cache = model.forward_train(np.ones((2, 3), np.float32))
        back = (lambda: model.backward(cache, (np.ones_like(h), None)))
    else:
        model = lstmx.LSTM(3, 4, seed=0)
        y, _, cache = model.forward_train(np.ones((3, 2, 3), np.float32), lengths=[3, 2])
        back = (lambda: model.backward(cache, np.ones_like(y)))
    tamper(cache)
    never_kernel_argument(back, match="^cache: ")


def test_buffers_of_a_saved_model_round_trip_through_bytes():
    model = lstmx.LSTM(3, 4, peephole=True, seed=0)
    buf = io.BytesIO()
    lstmx.save(model, buf)
    assert_array_equal(run(lstmx.load(io.BytesIO(buf.getvalue()))), run(model))
