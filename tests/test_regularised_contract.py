"""The contract of the regularised kernels' entry points (``RegularisedForward``,
``RegularisedBackward``, ``scale``): every new array (masks, layer-norm parameters and
statistics) is checked before a kernel runs, with a TypeError or ValueError naming it."""
import numpy as np
import pytest

from lstmx import _dispatch

pytestmark = pytest.mark.parametrize("variant", _dispatch.available())

T, B, I, H = 3, 2, 3, 5
F = np.float32


def forward_args(rng, ln=True, zoneout=True):
    args = dict(
        x=rng.standard_normal((T * B, I)).astype(F),
        W=rng.standard_normal((4 * H, I)).astype(F),
        U=rng.standard_normal((4 * H, H)).astype(F), b_ih=np.zeros(4 * H, F),
        b_hh=np.zeros(4 * H, F), h=np.zeros((B, H), F), c=np.zeros((B, H), F),
        y=np.zeros((T, B, H), F), gates=np.zeros((T, B, 4 * H), F),
        cells=np.zeros((T, B, H), F), rd=np.ones((B, H), F), clip=1.0)
    if zoneout:
        args.update(zc=np.zeros((T, B, H), F), zh=np.ones((T, B, H), F),
                    ctil=np.zeros((T, B, H), F))
    if ln:
        args.update(ln_g=np.ones((4, 4 * H), F), ln_c=np.ones((2, H), F),
                    lnx=np.zeros((T, B, 4 * H), F), lnh=np.zeros((T, B, 4 * H), F),
                    lnc=np.zeros((T, B, H), F), rstd=np.zeros((T, B, 3), F))
    return args


def backward_args(kernels, rng):
    fa = forward_args(rng)
    h0, c0 = fa["h"].copy(), fa["c"].copy()
    kernels.forward_regularised(kernels.RegularisedForward(**fa))
    args = {k: v for k, v in fa.items() if k not in ("h", "c", "b_ih", "b_hh")}
    args.update(h0=h0, c0=c0, dy=np.ones((T, B, H), F), dh=np.zeros((B, H), F),
                dc=np.zeros((B, H), F), dx=np.zeros((T * B, I), F),
                dW=np.zeros((4 * H, I), F), dU=np.zeros((4 * H, H), F),
                db=np.zeros(4 * H, F), dln_g=np.zeros((4, 4 * H), F),
                dln_c=np.zeros((2, H), F))
    return args


def test_valid_arguments_run(variant):
    kernels = _dispatch.load(variant)
    args = backward_args(kernels, np.random.default_rng(0))
    kernels.backward_regularised(kernels.RegularisedBackward(**args))
    assert np.isfinite(args["dW"]).all() and np.isfinite(args["dln_g"]).all()


def test_backward_pair_needs_one_dx(variant):
    kernels = _dispatch.load(variant)
    args = backward_args(kernels, np.random.default_rng(0))
    one = kernels.RegularisedBackward(**args)
    other = kernels.RegularisedBackward(**{**args, "dx": np.zeros_like(args["dx"])})
    with pytest.raises(ValueError, match="share x and dx"):
        kernels.backward_regularised_pair(one, other)


@pytest.mark.parametrize("name, value, error", [
    ("rd", np.ones((B, H + 1), F), ValueError),
    ("zc", np.zeros((T, B + 1, H), F), ValueError),
    ("zh", np.zeros((T, B, H), np.float64), TypeError),
    ("ctil", None, TypeError),
    ("ln_g", np.ones((4, 4 * H - 1), F), ValueError),
    ("ln_c", None, TypeError),
    ("lnx", np.zeros((T, B, 4 * H + 1), F), ValueError),
    ("rstd", np.zeros((T, B, 2), F), ValueError),
    ("lnc", np.zeros((T, B, H), F)[:, ::-1], TypeError),
    ("clip", -1.0, ValueError),
    ("clip", float("nan"), ValueError),
])
def test_forward_rejects(variant, name, value, error):
    kernels = _dispatch.load(variant)
    args = forward_args(np.random.default_rng(0))
    args[name] = value
    with pytest.raises(error, match=f"kernel argument {name}"):
        kernels.RegularisedForward(**args)


def test_forward_rejects_masks_at_inference(variant):
    kernels = _dispatch.load(variant)
    args = forward_args(np.random.default_rng(0), ln=False, zoneout=False)
    del args["gates"], args["cells"]
    with pytest.raises(TypeError, match="kernel argument rd"):
        kernels.RegularisedForward(**args)
    del args["rd"]
    with pytest.raises(ValueError, match="kernel argument p_c"):
        kernels.RegularisedForward(p_c=1.0, **args)
    kernels.forward_regularised(kernels.RegularisedForward(p_c=0.5, p_h=0.5, **args))


@pytest.mark.parametrize("name, value, error", [
    ("dln_g", None, TypeError),
    ("dln_g", np.zeros((4, 4 * H), F)[::-1], TypeError),
    ("dln_c", np.zeros((3, H), F), ValueError),
    ("zc", np.zeros((T, B, H - 1), F), ValueError),
    ("lnh", None, TypeError),
    ("gates", np.zeros((T, B, 4 * H + 1), F), ValueError),
])
def test_backward_rejects(variant, name, value, error):
    kernels = _dispatch.load(variant)
    args = backward_args(kernels, np.random.default_rng(0))
    args[name] = value
    with pytest.raises(error, match=f"kernel argument {name}"):
        kernels.RegularisedBackward(**args)


def test_scale_checks_its_arrays(variant):
    kernels = _dispatch.load(variant)
    a, m = np.ones((4, 3), F), np.full((4, 3), 2, F)
    out = np.empty_like(a)
    kernels.scale(a, m, out)
    np.testing.assert_array_equal(out, 2)
    with pytest.raises(ValueError, match="mask"):
        kernels.scale(a, np.ones((3, 4), F), out)
    with pytest.raises(TypeError, match="out"):
        kernels.scale(a, m, np.empty((4, 3), np.float64))
    with pytest.raises(TypeError, match="mask"):
        kernels.scale(a, np.ones((4, 6), F)[:, ::2], out)
    with pytest.raises(ValueError, match="writeable"):
        ro = np.empty_like(a)
        ro.flags.writeable = False
        kernels.scale(a, m, ro)
