"""Every check on user input, in one place, before any kernel runs.

Each error names the argument and says what was expected and what was got. The functions
return arrays the kernels can take as they are: C-contiguous, in the compute dtype.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["as_float_array", "check_lengths", "check_state", "check_state_grad"]

# BLAS takes 32-bit sizes: the largest dimension (T*B rows) must fit.
MAX_BLAS_DIM = np.iinfo(np.int32).max


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_float_array(name: str, value, dtype, shape, meaning: str = "", copy: bool = False):
    """``value`` as a C-contiguous ``dtype`` array of ``shape``.

    ``shape`` is a tuple of ints and names; a name (such as ``"T"``) matches any size >= 1.
    Any real floating dtype is accepted and cast; anything else is a TypeError.
    """
    if value.__class__ is np.ndarray and value.dtype is dtype:
        # Already what the kernels take? The common case costs a few hundred nanoseconds
        # (a model step of B = 1 is a few microseconds in all).
        flags = value.flags
        if (flags.c_contiguous and flags.aligned and _matches(value.shape, shape)
                and math.prod(value.shape[:-1]) <= MAX_BLAS_DIM):
            return value.copy() if copy else value
    arr = _asarray(name, value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a float32 or float64 array; got dtype {arr.dtype}")
    # (Messages are formatted only on failure: this runs on every call of a small model.)
    expected = (lambda: _fmt(shape) + (f" {meaning}" if meaning else ""))  # noqa: E731
    if arr.ndim != len(shape):
        raise ValueError(f"{name} must be {len(shape)}-D with shape {expected()}; "
                         f"got {arr.ndim}-D with shape {arr.shape}")
    for want, got in zip(shape, arr.shape):
        if want.__class__ is str:
            if got < 1:
                raise ValueError(f"{name} must have shape {expected()} with {want} >= 1; "
                                 f"got shape {arr.shape}")
        elif want != got:
            raise ValueError(f"{name} must have shape {expected()}; got {arr.shape}")
    # Checked before the copy below, so that a huge broadcast view (np.broadcast_to: no
    # memory of its own) is refused instead of being materialised first.
    check_rows(name, math.prod(arr.shape[:-1]))
    if copy or not arr.flags.aligned:
        # A misaligned float pointer is undefined behaviour in C (and in BLAS): copy.
        return np.array(arr, dtype=dtype, order="C", copy=True)
    return np.ascontiguousarray(arr, dtype=dtype)


def _matches(got, want) -> bool:
    """Whether shape ``got`` fits ``want`` (ints, and names standing for any size >= 1)."""
    if got == want:
        return True
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g != w and (w.__class__ is not str or g < 1):
            return False
    return True


def _asarray(name: str, value) -> np.ndarray:
    """``np.asarray(value)``, with conversion failures naming the argument."""
    if isinstance(value, np.ma.MaskedArray) and np.ma.getmask(value) is not np.ma.nomask \
            and value.mask.any():
        # np.asarray would silently compute with whatever the masked elements hold.
        raise TypeError(f"{name} is a masked array with masked elements, and lstmx does not "
                        "read masks; pass lengths= for padded sequences, or fill the masked "
                        "elements (np.ma.filled) yourself")
    try:
        return np.asarray(value)
    except ValueError as err:  # ragged nested sequences
        raise ValueError(f"{name} must be an array of floats; got a {type(value).__name__} "
                         f"that does not convert to one ({err})") from err
    except (TypeError, RuntimeError) as err:  # e.g. a torch tensor that requires grad
        raise TypeError(f"{name} must be an array of floats; got a {type(value).__name__} "
                        f"that does not convert to one ({err})") from err


def check_rows(name: str, rows: int):
    """Refuse more rows (product of all but the last dimension) than a 32-bit BLAS takes."""
    if rows > MAX_BLAS_DIM:
        raise ValueError(f"{name} must have at most {MAX_BLAS_DIM} rows (the product of all "
                         f"but its last dimension, seq_len * batch for a sequence) to fit a "
                         f"32-bit BLAS; got {rows}")


def check_lengths(lengths, batch: int, seq_len: int) -> np.ndarray:
    """Lengths as an intp array of shape (batch,), every value in [1, seq_len]; None stays
    None (every sequence is seq_len long)."""
    if lengths is None:
        return None
    arr = _asarray("lengths", lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers; got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), one per batch item; "
                         f"got {arr.shape}")
    lo, hi = arr.min(), arr.max()
    if lo < 1 or hi > seq_len:
        raise ValueError(f"lengths must be in [1, {seq_len}] (seq_len); got values from "
                         f"{lo} to {hi}")
    return arr.astype(np.intp)


def _pair(name: str, value, first: str, second: str):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = f"a sequence of length {len(value)}" if isinstance(value, (tuple, list)) \
            else type(value).__name__
        raise TypeError(f"{name} must be a pair ({first}, {second}); got {got}")
    return value


def check_state(state, dtype, layers: int, batch: int, out_size: int, hidden: int, copy: bool,
                name: str = "state", names=("h0", "c0")):
    """The initial state (h0, c0) as C-contiguous arrays; zeros when ``state`` is None."""
    h_shape, c_shape = (layers, batch, out_size), (layers, batch, hidden)
    if layers == 0:  # an LSTMCell: states are (B, H)
        h_shape, c_shape = h_shape[1:], c_shape[1:]
    if state is None:
        return np.zeros(h_shape, dtype), np.zeros(c_shape, dtype)
    h0, c0 = _pair(name, state, *names)
    return (as_float_array(f"{name}[0] ({names[0]})", h0, dtype, h_shape, copy=copy),
            as_float_array(f"{name}[1] ({names[1]})", c0, dtype, c_shape, copy=copy))


def check_state_grad(dstate, dtype, layers, batch, out_size, hidden, name="dstate",
                     names=("dh_n", "dc_n")):
    """Gradients of the final state; None (or a None member) stands for zeros."""
    h_shape, c_shape = (layers, batch, out_size), (layers, batch, hidden)
    if layers == 0:
        h_shape, c_shape = h_shape[1:], c_shape[1:]
    dh, dc = (None, None) if dstate is None else _pair(name, dstate, *names)
    dh = (np.zeros(h_shape, dtype) if dh is None else
          as_float_array(f"{name}[0] ({names[0]})", dh, dtype, h_shape, copy=True))
    dc = (np.zeros(c_shape, dtype) if dc is None else
          as_float_array(f"{name}[1] ({names[1]})", dc, dtype, c_shape, copy=True))
    return dh, dc
