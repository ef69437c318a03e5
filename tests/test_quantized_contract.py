"""The quantised kernels' argument contract: every array checked before a kernel runs.

``lstmx.quantized`` validates the user's input first; these tests call the kernels'
``forward`` directly with each way an argument can be wrong, and expect a TypeError or
ValueError naming it, never a crash or a silent read out of bounds. The weights are packed
for the variant in use (its vector width), so the variant in use is the one tested; every
variant compiles the same checks.
"""
import numpy as np
import pytest

import lstmx
from _helpers import BAD, read_only
from lstmx import _dispatch

T, B, I, H = 3, 2, 3, 5
F = np.float32
forward = _dispatch.quantized().forward


def forward_args(mode, proj=0):
    q = lstmx.LSTM(I, H, proj_size=proj, peephole=True, seed=0).quantize(mode)
    mats, bias, peep = q._layers[0]
    Hout = proj or H
    rng = np.random.default_rng(0)
    return dict(mode=mode, x=rng.standard_normal((T * B, I)).astype(F), input_size=I,
                weights=mats,
                bias=bias, peep=peep, lengths=np.array([T, 1], np.intp),
                h=np.zeros((B, Hout), F), c=np.zeros((B, H), F), y=np.zeros((T, B, Hout), F),
                y_col=0, reverse=False, identity=False)


ARRAYS = ["x", "bias", "peep", "lengths", "h", "c", "y"]
OPTIONAL = ["peep", "lengths"]


@pytest.mark.parametrize("mode", ["int8", "bfloat16"])
@pytest.mark.parametrize("name,how", [(n, h) for n in ARRAYS for h in BAD])
def test_forward_refuses_bad_argument(mode, name, how):
    args = forward_args(mode)
    forward(**args)  # the unchanged arguments run
    if how == "None" and name in OPTIONAL:
        return
    if how in ("Fortran", "flat") and args[name].ndim == 1:
        return  # a 1-D array is already both
    if how == "longer" and name == "y":
        return  # y may be wider: a layer's two directions share it
    with pytest.raises((TypeError, ValueError)) as err:
        forward(**{**args, name: BAD[how](args[name])})
    assert name in str(err.value), err.value


@pytest.mark.parametrize("mode", ["int8", "bfloat16"])
def test_forward_refuses_bad_weights(mode):
    args = forward_args(mode, proj=2)
    forward(**args)
    names = ["W", "W scale", "W sums", "U", "U scale", "U sums", "R", "R scale", "R sums"]
    for k, w in enumerate(args["weights"]):
        if w is None:
            continue
        name = names[k] if mode == "int8" else "WUR"[k]
        for how in BAD:
            if (how in ("Fortran", "flat") and w.ndim == 1
                    or how in ("misaligned", "byteswapped") and w.itemsize == 1
                    or how == "int32" and w.dtype == np.int32):
                continue  # the same array
            weights = list(args["weights"])
            weights[k] = BAD[how](w)
            with pytest.raises((TypeError, ValueError)) as err:
                forward(**{**args, "weights": tuple(weights)})
            assert name.split()[0] in str(err.value), (name, how, err.value)
    count = len(args["weights"])
    with pytest.raises(ValueError, match=f"weights must be {count} .*; got {count - 1}"):
        forward(**{**args, "weights": args["weights"][:-1]})


@pytest.mark.parametrize("mode", ["int8", "bfloat16"])
def test_forward_refuses_read_only_outputs_sizes_and_columns(mode):
    args = forward_args(mode)
    for name in ("h", "c", "y"):
        with pytest.raises(ValueError, match=f"{name} receives results"):
            forward(**{**args, name: read_only(args[name])})
    with pytest.raises(ValueError, match=r"sizes must be .*at least 1.*; got 0, 2, 3, 5"):
        forward(**{**args, "y": np.zeros((0, B, H), F), "x": np.zeros((0, I), F)})
    with pytest.raises(ValueError, match=r"y_col must be in \[0, 0\].*; got 1"):
        forward(**{**args, "y_col": 1})
    with pytest.raises(ValueError, match="outside"):
        forward(**{**args, "lengths": np.array([T + 1, 1], np.intp)})
    with pytest.raises(ValueError, match="mode must be 'int8' or 'bfloat16'; got 'int4'"):
        forward(**{**args, "mode": "int4"})
    with pytest.raises(ValueError, match=r"bias must be 4H values .*; got 19 values"):
        forward(**{**args, "bias": args["bias"][:-1].copy()})
    with pytest.raises(ValueError, match="kernel argument x must have shape"):
        forward(**{**args, "input_size": I + 1})  # the weights' padded depth does not tell
    with pytest.raises(ValueError, match="kernel argument W must have shape"):
        forward(**{**args, "input_size": I + 64, "x": np.zeros((T * B, I + 64), F)})


def test_product_hooks_refuse_bad_operands():
    """The integer and bfloat16 products the tests call directly name the operand, what it
    must be and what it is."""
    q = _dispatch.quantized()
    with pytest.raises(ValueError, match=r"A, W must be int8 .*; got \(2, 3\) and \(4, 3\)"):
        q.int_matmul(np.zeros((2, 3), np.int8), np.zeros((4, 3), np.int8))
    depth = q.padded_depth(1)
    levels = r"\[-\d+, \d+\]"
    with pytest.raises(ValueError,
                       match=rf"A must be int8 values in {levels}; got \|A\| up to 128"):
        q.int_matmul(np.full((2, depth), -128, np.int8), np.zeros((4, depth), np.int8))
    with pytest.raises(ValueError, match=r"W must be int8 values .*; got a minimum of -128"):
        q.int_matmul(np.zeros((2, depth), np.int8), np.full((4, depth), -128, np.int8))
    with pytest.raises(ValueError, match=r"A, W must be uint16 .*; got \(2, 3\) and \(4, 5\)"):
        q.bf16_matmul(np.zeros((2, 3), np.uint16), np.zeros((4, 5), np.uint16))
