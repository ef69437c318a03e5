"""The kernels' own argument contract: every array checked before a kernel runs.

lstmx._engine validates the user's input first; these tests call the kernels' entry points
directly (``LayerForward``, ``LayerBackward``) with each way an argument can be wrong, and
expect a TypeError or ValueError naming it, never a crash or a silent read out of bounds.
"""
import numpy as np
import pytest

from _helpers import BAD, read_only
from lstmx import _dispatch

pytestmark = pytest.mark.parametrize("variant", _dispatch.available())

T, B, I, H = 3, 2, 3, 5
F = np.float32


def forward_args(rng, training=True, proj=0, lengths=False):
    Hout = proj or H
    args = dict(
        x=rng.standard_normal((T * B, I)).astype(F), W=rng.standard_normal((4 * H, I)).astype(F),
        U=rng.standard_normal((4 * H, Hout)).astype(F), b_ih=np.zeros(4 * H, F),
        b_hh=np.zeros(4 * H, F), peep=np.zeros((3, H), F),
        h=np.zeros((B, Hout), F), c=np.zeros((B, H), F), y=np.zeros((T, B, Hout), F))
    if proj:
        args["R"] = rng.standard_normal((proj, H)).astype(F)
    if lengths:
        args["lengths"] = np.array([T, 1], np.intp)
    if training:
        args["gates"] = np.zeros((T, B, 4 * H), F)
        args["cells"] = np.zeros((T, B, H), F)
    return args


def backward_args(kernels, rng, proj=0):
    fa = forward_args(rng, proj=proj)
    h0, c0 = fa["h"].copy(), fa["c"].copy()
    kernels.forward(kernels.LayerForward(**fa))
    Hout = proj or H
    args = dict(x=fa["x"], W=fa["W"], U=fa["U"], peep=fa["peep"], h0=h0, c0=c0, y=fa["y"],
                gates=fa["gates"], cells=fa["cells"], dy=np.ones((T, B, Hout), F),
                dh=np.zeros((B, Hout), F), dc=np.zeros((B, H), F), dx=np.zeros((T * B, I), F),
                dW=np.zeros((4 * H, I), F), dU=np.zeros((4 * H, Hout), F),
                db=np.zeros(4 * H, F), dpeep=np.zeros((3, H), F))
    if proj:
        args["R"], args["dR"] = fa["R"], np.zeros((proj, H), F)
    return args


def cases(names):
    return [(name, how) for name in names for how in BAD]


def check_refused(make, args, name, how, required, outputs):
    bad = dict(args)
    bad[name] = BAD[how](args[name])
    if how == "None" and not required:
        return  # an optional array may be absent
    if how in ("Fortran", "flat") and args[name].ndim == 1:
        return  # a 1-D array is already both
    if how == "longer" and name in ("y", "dy"):
        return  # y and dy may be wider: a layer's two directions share them
    with pytest.raises((TypeError, ValueError)) as err:
        make(**bad)
    assert name in str(err.value), err.value


FORWARD_REQUIRED = ["x", "W", "U", "h", "c", "y", "gates", "cells"]
FORWARD_OPTIONAL = ["b_ih", "b_hh", "peep", "R", "lengths"]


@pytest.mark.parametrize("name,how", cases(FORWARD_REQUIRED + FORWARD_OPTIONAL))
def test_forward_refuses_bad_argument(variant, name, how):
    kernels = _dispatch.load(variant)
    args = forward_args(np.random.default_rng(0), proj=2 if name == "R" else 0,
                        lengths=name == "lengths")
    if name in ("gates", "cells") and how == "None":
        # one of the two without the other
        with pytest.raises(TypeError, match="gates and cells"):
            kernels.LayerForward(**{**args, name: None})
        return
    check_refused(kernels.LayerForward, args, name, how, name in FORWARD_REQUIRED, True)


@pytest.mark.parametrize("name", ["h", "c", "y", "gates", "cells"])
def test_forward_refuses_read_only_output(variant, name):
    kernels = _dispatch.load(variant)
    args = forward_args(np.random.default_rng(0))
    with pytest.raises(ValueError, match=f"{name} receives results"):
        kernels.LayerForward(**{**args, name: read_only(args[name])})


def test_forward_refuses_empty_sizes_and_bad_columns(variant):
    kernels = _dispatch.load(variant)
    args = forward_args(np.random.default_rng(0), training=False)
    with pytest.raises(ValueError, match="at least 1"):
        kernels.LayerForward(**{**args, "y": np.zeros((0, B, H), F), "x": np.zeros((0, I), F)})
    with pytest.raises(ValueError, match="do not fit"):
        kernels.LayerForward(**{**args, "y_col": 1})
    with pytest.raises(ValueError, match="outside"):
        kernels.LayerForward(**{**args, "lengths": np.array([T + 1, 1], np.intp)})
    with pytest.raises(TypeError):
        kernels.LayerForward(*args.values())  # keyword arguments only
    with pytest.raises(TypeError):
        kernels.forward(None)


BACKWARD_REQUIRED = ["x", "W", "U", "h0", "c0", "y", "gates", "cells", "dy", "dh", "dc",
                     "dx", "dW", "dU"]
BACKWARD_OPTIONAL = ["peep", "db", "dpeep", "R", "dR"]


@pytest.mark.parametrize("name,how", cases(BACKWARD_REQUIRED + BACKWARD_OPTIONAL))
def test_backward_refuses_bad_argument(variant, name, how):
    kernels = _dispatch.load(variant)
    projection = name in ("R", "dR")
    args = backward_args(kernels, np.random.default_rng(1), proj=2 if projection else 0)
    # With a projection, R and dR are required: one without the other is refused.
    check_refused(kernels.LayerBackward, args, name, how,
                  name in BACKWARD_REQUIRED or projection, False)


@pytest.mark.parametrize("name", ["dh", "dc", "dx", "dW", "dU", "db", "dpeep"])
def test_backward_refuses_read_only_output(variant, name):
    kernels = _dispatch.load(variant)
    args = backward_args(kernels, np.random.default_rng(1))
    with pytest.raises(ValueError, match=f"{name} receives results"):
        kernels.LayerBackward(**{**args, name: read_only(args[name])})


def test_backward_pair_needs_one_dx(variant):
    kernels = _dispatch.load(variant)
    args = backward_args(kernels, np.random.default_rng(1))
    one = kernels.LayerBackward(**args)
    other = kernels.LayerBackward(**{**args, "dx": np.zeros_like(args["dx"])})
    with pytest.raises(ValueError, match="share x and dx"):
        kernels.backward_pair(one, other)


def test_valid_calls_run(variant):
    # The baseline for every refusal above: the same arguments, unchanged, are accepted.
    kernels = _dispatch.load(variant)
    args = backward_args(kernels, np.random.default_rng(1))
    kernels.backward(kernels.LayerBackward(**args))
    assert np.isfinite(args["dW"]).all() and np.abs(args["dx"]).sum() > 0
