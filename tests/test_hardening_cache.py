"""A training cache against in-place changes: backward returns the gradient of the forward
pass as it ran, whatever is done to x and the parameters in between."""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
from lstmx import _engine

from _helpers import random_problem

# Changes that a checksum of the bytes can miss: each keeps some sum, xor or per-lane
# product of the words (negating a float64 array of 2**k elements fooled the old 64-bit
# fingerprint); and the smallest change there is.
STRUCTURED = {
    "negate": lambda a: np.negative(a, out=a),
    "reverse": lambda a: a.reshape(-1).__setitem__(slice(None), a.reshape(-1)[::-1].copy()),
    "swap halves": lambda a: a.reshape(-1).__setitem__(
        slice(None), np.roll(a.reshape(-1), a.size // 2)),
    "sign of zero": lambda a: a.reshape(-1).__setitem__(0, -0.0 if a.flat[0] == 0 else
                                                        -a.flat[0]),
    "one ulp": lambda a: a.reshape(-1).__setitem__(
        -1, np.nextafter(a.flat[-1], np.inf)),
}


def backward_all(model, cache, dy, dstate):
    if isinstance(model, lstmx.LSTMCell):
        return model.backward(cache, dstate)
    return model.backward(cache, dy, dstate)


def assert_same_gradients(a, b):
    (dx_a, (dh_a, dc_a), g_a), (dx_b, (dh_b, dc_b), g_b) = a, b
    for got, want in [(dx_b, dx_a), (dh_b, dh_a), (dc_b, dc_a)]:
        assert_array_equal(got, want)
    assert list(g_a) == list(g_b)
    for name in g_a:
        assert_array_equal(g_b[name], g_a[name], err_msg=name)


MODELS = [
    # float64 with power-of-two sizes: where negation fooled the fingerprint
    lambda: lstmx.LSTM(4, 8, dtype=np.float64, seed=0),
    lambda: lstmx.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, peephole=True,
                       batch_first=True, dtype=np.float32, seed=1),
    # weights above SHARE_BYTES: their copies are shared between caches
    lambda: lstmx.LSTM(64, 64, dtype=np.float64, seed=2),
    # B * 4H * H above SMALL_PRODUCT: the cache keeps W and U packed for backward (on AVX2
    # and AVX-512), with a partial strip of 70 - 64 columns
    lambda: lstmx.LSTM(40, 70, dtype=np.float32, seed=4),
    lambda: lstmx.LSTMCell(4, 8, peephole=True, dtype=np.float64, seed=3),
]


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("change", list(STRUCTURED))
def test_in_place_changes_never_reach_backward(make, change):
    model = make()
    rng = np.random.default_rng(0)
    cfg = model.config
    if isinstance(model, lstmx.LSTMCell):
        B = 4
        x = rng.standard_normal((B, cfg.input_size)).astype(cfg.dtype)
        state = tuple(rng.standard_normal((B, cfg.hidden_size)).astype(cfg.dtype)
                      for _ in range(2))
        dstate = tuple(rng.standard_normal((B, cfg.hidden_size)).astype(cfg.dtype)
                       for _ in range(2))
        dy = None
        _, cache = model.forward_train(x, state)
    else:
        x, state, _, dy, dstate = random_problem(model, 4, 4, rng)
        _, _, cache = model.forward_train(x, state)
    before = backward_all(model, cache, dy, dstate)
    for array in [x, *state, *model.parameters().values()]:
        STRUCTURED[change](array)
    after = backward_all(model, cache, dy, dstate)
    assert_same_gradients(before, after)


def kept(weight):
    """A cache's copy of a weight as a plain array, and that copy's own array."""
    if isinstance(weight, _engine.PackedWeight):
        return weight.plain(), weight.packed
    return weight, weight


@pytest.mark.parametrize("H, B", [(64, 2), (70, 4)])
def test_unchanged_large_weights_share_one_copy_and_changed_ones_get_another(H, B):
    lstm = lstmx.LSTM(64, H, dtype=np.float64, seed=0)
    W = lstm.weight_ih_l0
    assert W.nbytes >= _engine.SHARE_BYTES
    rng = np.random.default_rng(0)
    x, state, _, dy, dstate = random_problem(lstm, 3, B, rng)
    _, _, c1 = lstm.forward_train(x, state)
    _, _, c2 = lstm.forward_train(x, state)
    # (64, 2): plain copies; (70, 4): packed for the threaded backward, where it runs
    assert isinstance(c1.weights[0][0], _engine.PackedWeight) == (
        H == 70 and _engine._kernels.backward_packs(3, B, H, 0))
    assert c1.weights[0][0] is c2.weights[0][0]  # one copy for both caches
    assert not kept(c1.weights[0][0])[1].flags.writeable
    g1 = lstm.backward(c1, dy, dstate)
    W[0, 0] = -0.0 if W[0, 0] == 0 else -W[0, 0]  # a change at the head...
    _, _, c3 = lstm.forward_train(x, state)
    assert c3.weights[0][0] is not c1.weights[0][0]
    W[0, 0] = -W[0, 0]
    W[-1, -1] = np.nextafter(W[-1, -1], 1.0)  # ...and one only the full comparison sees
    _, _, c4 = lstm.forward_train(x, state)
    assert c4.weights[0][0] is not c1.weights[0][0]
    assert_array_equal(kept(c4.weights[0][0])[0], W)
    assert_same_gradients(g1, lstm.backward(c1, dy, dstate))
    assert_same_gradients(g1, lstm.backward(c2, dy, dstate))


def test_copies_are_freed_with_the_caches():
    lstm = lstmx.LSTM(64, 64, dtype=np.float64, seed=0)
    x = np.ones((2, 1, 64))
    for _ in range(3):
        lstm.forward_train(x)
    assert all(entry[1]() is None for entry in _engine._snapshots.values())


from hypothesis import given, strategies as st  # noqa: E402


@given(data=st.data())
def test_any_in_place_change_never_reaches_backward(data):
    model = lstmx.LSTM(4, 8, num_layers=2, peephole=True, dtype=np.float64, seed=5)
    rng = np.random.default_rng(1)
    x, state, _, dy, dstate = random_problem(model, 3, 2, rng)
    _, _, cache = model.forward_train(x, state)
    before = model.backward(cache, dy, dstate)
    arrays = {"x": x, **model.parameters()}
    for name in data.draw(st.lists(st.sampled_from(sorted(arrays)), min_size=1, max_size=4)):
        flat = arrays[name].reshape(-1)
        idx = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=8))
        values = data.draw(st.lists(st.floats(allow_nan=True, allow_infinity=True,
                                              width=64), min_size=len(idx),
                                    max_size=len(idx)))
        flat[idx] = values
    assert_same_gradients(before, model.backward(cache, dy, dstate))


@pytest.mark.parametrize("batch_first", [False, True])
def test_the_returned_output_cannot_be_made_writeable(batch_first):
    lstm = lstmx.LSTM(3, 4, num_layers=2, batch_first=batch_first, seed=0)
    x = np.ones((2, 3, 3), np.float32)
    y, _, cache = lstm.forward_train(x)
    with pytest.raises(ValueError, match="read-only"):
        y[...] = 0
    with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
        y.flags.writeable = True
    want = lstm.backward(cache, np.ones_like(y))
    assert_array_equal(lstm.backward(cache, np.ones_like(y))[0], want[0])
