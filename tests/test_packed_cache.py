"""A training cache that keeps W and U packed for the threaded backward driver: the packing,
its contract, and gradients bit-identical to the cache that keeps them plain."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from lstmx import _dispatch, _engine

from _helpers import random_problem

TILED = [v for v in _dispatch.available() if _dispatch.load(v).backward_packs(2, 8, 64, 0)]


@pytest.fixture(params=TILED or [pytest.param(None, marks=pytest.mark.skip(
    reason="no kernel variant with the threaded backward driver on this CPU"))])
def kernels(request, monkeypatch):
    """The engine on each kernel variant that packs (AVX2, AVX-512) in turn."""
    k = _dispatch.load(request.param)
    monkeypatch.setattr(_engine, "_kernels", k)
    return k


@pytest.mark.skipif(not TILED, reason="no kernel variant packs for backward on this CPU")
@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 70), cols=st.integers(1, 100), double=st.booleans(),
       data=st.data())
def test_a_packed_weight_holds_exactly_its_bits(rows, cols, double, data):
    for variant in TILED:
        k = _dispatch.load(variant)
        rng = np.random.default_rng(rows * cols)
        W = rng.standard_normal((rows, cols)).astype(np.float64 if double else np.float32)
        out = np.full(k.packed_for_backward_size(rows, cols), np.nan, W.dtype)
        k.pack_for_backward(W, out)
        p = _engine.PackedWeight(out, W.shape)
        assert_array_equal(p.plain(), W)
        strips = p.strips()
        assert not np.isnan(strips).any()  # the partial strip's padding is written (zeros)
        assert_array_equal(strips[-1][:, cols - (len(strips) - 1) * k.BACKWARD_PACK_COLS:], 0)
        assert p.same_bits(W)
        i, j = data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1))
        changed = W.copy()
        changed[i, j] = -0.0 if W[i, j] == 0 else -W[i, j]
        assert not p.same_bits(changed)
        changed[i, j] = np.nextafter(W[i, j], np.inf)
        assert not p.same_bits(changed)
        assert not p.same_bits(np.zeros((rows, cols + 1), W.dtype))  # another shape


@pytest.mark.parametrize("variant", TILED)
def test_pack_for_backward_checks_its_arguments(variant):
    k = _dispatch.load(variant)
    W = np.ones((8, 5), np.float32)
    out = np.empty(k.packed_for_backward_size(8, 5), np.float32)
    for bad_W, bad_out, err in [
            (W.astype(np.int32), out, TypeError), (np.asfortranarray(np.ones((8, 5))), out,
                                                     TypeError),
            (W, out[:-1], ValueError), (W, out.astype(np.float64), TypeError),
            (W.reshape(-1), out, ValueError), (None, out, TypeError)]:
        with pytest.raises(err):
            k.pack_for_backward(bad_W, bad_out)
    with pytest.raises(ValueError, match="packed must have shape"):
        k.packed_equal(W, out[:-1])
    with pytest.raises(TypeError, match="packed must be"):
        k.packed_equal(W, out.astype(np.float64))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        k.pack_for_backward(W, out)


def problem(T=5, B=4, I=33, H=70, **kw):
    lstm = lstmx.LSTM(I, H, seed=0, **kw)
    x, state, _, dy, dstate = random_problem(lstm, T, B, np.random.default_rng(1))
    return lstm, x, state, dy, dstate


def plain_copy(cache):
    """``cache`` with its weights plain, as the cache of the serial driver keeps them."""
    other = pickle.loads(pickle.dumps(cache))
    assert not any(isinstance(w, _engine.PackedWeight) for ws in other.weights for w in ws)
    return other


def assert_same(a, b):
    for got, want in [(a[0], b[0]), (a[1][0], b[1][0]), (a[1][1], b[1][1])]:
        assert_array_equal(got, want)
    for name in a[2]:
        assert_array_equal(a[2][name], b[2][name], err_msg=name)


@pytest.mark.parametrize("kw", [
    dict(), dict(num_layers=2, bidirectional=True), dict(peephole=True, dtype=np.float64),
    dict(bias=False),
    # the regularised drivers: threaded (zoneout, recurrent dropout), serial on the tiles
    # (layer norm, projection)
    dict(zoneout=0.2, recurrent_dropout=0.3), dict(layer_norm=True, cell_clip=1.0),
    dict(layer_norm=True, proj_size=40, dtype=np.float64), dict(zoneout=(0.1, 0.2),
                                                                 proj_size=50)])
def test_backward_from_packed_weights_has_the_bits_of_backward_from_plain_ones(kernels, kw):
    lstm, x, state, dy, dstate = problem(**kw)
    lengths = np.array([5, 2, 4, 1])
    for lens in (None, lengths):
        _, _, cache = lstm.forward_train(x, state, lengths=lens, rng=0)
        assert all(isinstance(w, _engine.PackedWeight) for ws in cache.weights for w in ws[:2])
        assert_same(lstm.backward(cache, dy, dstate),
                    lstm.backward(plain_copy(cache), dy, dstate))


def test_a_packed_cache_runs_backward_on_a_variant_that_does_not_pack(kernels, monkeypatch):
    lstm, x, state, dy, dstate = problem()
    _, _, cache = lstm.forward_train(x, state)
    assert isinstance(cache.weights[0][0], _engine.PackedWeight)
    want = lstm.backward(cache, dy, dstate)
    monkeypatch.setattr(_engine, "_kernels", _dispatch.load("baseline"))
    got = lstm.backward(cache, dy, dstate)  # BLAS products on the weights unpacked
    for a, b in [(got[0], want[0]), (got[1][0], want[1][0]), (got[1][1], want[1][1]),
                 *[(got[2][n], want[2][n]) for n in want[2]]]:
        assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_contract_of_packed_weights(kernels):
    lstm, x, state, dy, dstate = problem(T=3, B=4)
    _, _, cache = lstm.forward_train(x, state)
    Wk, Uk, _, _ = cache.weights[0]
    H, G = 70, 280
    args = dict(x=cache.inputs[0], h0=cache.h0[0], c0=cache.c0[0], y=cache.outputs[0],
                gates=cache.gates[0], cells=cache.cells[0], dy=dy,
                dh=np.zeros((4, H), np.float32), dc=np.zeros((4, H), np.float32),
                dx=np.zeros((12, 33), np.float32), dW=np.zeros((G, 33), np.float32),
                dU=np.zeros((G, H), np.float32))
    W, U = Wk.plain(), Uk.plain()
    for bad, err in [(dict(W=W, U=U, Wp=Wk.packed, Up=Uk.packed), "not both"),
                     (dict(W=None, U=U, Wp=Wk.packed, Up=None), "not both"),
                     (dict(W=None, U=None, Wp=Wk.packed, Up=None), "not both"),
                     (dict(W=None, U=None, Wp=None, Up=Uk.packed), "not both")]:
        with pytest.raises(TypeError, match=err):
            kernels.LayerBackward(**args, **bad)
    with pytest.raises(ValueError, match="Up must have shape"):
        kernels.LayerBackward(**args, W=None, U=None, Wp=Wk.packed, Up=Uk.packed[:-1])
    with pytest.raises(ValueError, match="Wp must have shape"):
        kernels.LayerBackward(**args, W=None, U=None, Wp=Uk.packed, Up=Uk.packed)
    one = {k: (v[:1] if k in ("y", "gates", "cells", "dy") else v[:4] if k == "x" else
               v[:4] if k == "dx" else v) for k, v in args.items()}  # T = 1: serial
    with pytest.raises(ValueError, match="read only where backward packs"):
        kernels.LayerBackward(**one, W=None, U=None, Wp=Wk.packed, Up=Uk.packed)
    kernels.LayerBackward(**args, W=None, U=None, Wp=Wk.packed, Up=Uk.packed)  # valid


def test_a_step_that_changes_the_weights_gets_a_new_packed_copy(kernels):
    lstm, x, state, dy, dstate = problem()
    _, _, c1 = lstm.forward_train(x, state)
    g1 = lstm.backward(c1, dy, dstate)
    for p in lstm.parameters().values():
        p *= 0.5  # an optimiser step
    _, _, c2 = lstm.forward_train(x, state)
    assert c2.weights[0][0] is not c1.weights[0][0]
    assert_array_equal(c2.weights[0][1].plain(), lstm.weight_hh_l0)
    assert_same(lstm.backward(c1, dy, dstate), g1)
