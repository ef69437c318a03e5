"""Losses for training: each returns the loss and its gradient with respect to the input.

``loss, dinput = f(input, target)``: ``dinput`` has the shape and dtype of ``input`` and is
what ``backward`` of the layer that produced ``input`` takes. The loss is a Python float,
accumulated in float64.
"""
from __future__ import annotations

import numpy as np

from lstmx._validation import as_float_array

__all__ = ["mse_loss", "cross_entropy"]

REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")


def _as_input(name, value):
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a float32 or float64 array; got dtype {arr.dtype}")
    return arr


def mse_loss(input, target, reduction="mean", mask=None):
    r"""Mean squared error, :math:`\frac{1}{N} \sum (\mathrm{input} - \mathrm{target})^2`.

    Parameters
    ----------
    input : float array, any shape
        Predictions.
    target : array, the shape of ``input``
    reduction : {"mean", "sum"}, default "mean"
        Average over the N counted elements (all of them: ``torch.nn.functional.mse_loss``)
        or sum them.
    mask : bool array, optional
        Only elements where it is True are counted. Its shape is that of ``input`` or of
        its leading axes: a (T, B) mask of the steps within each sequence's length covers
        every output of those steps in a (T, B, O) ``input``.

    Returns
    -------
    loss : float
        0.0 when no element is counted.
    dinput : array, the shape and dtype of ``input``
        :math:`2 (\mathrm{input} - \mathrm{target}) / N` for counted elements (without the
        1/N for "sum"), zero for the others.
    """
    _check_reduction(reduction)
    input = _as_input("input", input)
    target = as_float_array("target", target, input.dtype, input.shape, "(the shape of input)")
    diff = input - target
    if mask is None:
        scale = 1.0 / max(diff.size, 1) if reduction == "mean" else 1.0
        loss = float(np.sum(np.square(diff, dtype=np.float64))) * scale
        return loss, (diff * (2 * scale)).astype(input.dtype, copy=False)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be a bool array; got dtype {mask.dtype}")
    if mask.shape != input.shape[:mask.ndim]:
        raise ValueError(f"mask must have the shape of input {input.shape} or of its leading "
                         f"axes; got {mask.shape}")
    mask = mask.reshape(mask.shape + (1,) * (input.ndim - mask.ndim))
    # Elements left out are zeroed, not multiplied by zero: a NaN there must not spread.
    diff = np.where(mask, diff, diff.dtype.type(0))
    n = int(mask.sum()) * (input.size // max(mask.size, 1))
    scale = 1.0 / max(n, 1) if reduction == "mean" else 1.0
    loss = float(np.sum(np.square(diff, dtype=np.float64))) * scale
    return loss, (diff * (2 * scale)).astype(input.dtype, copy=False)


def cross_entropy(logits, target, ignore_index=None, mask=None, reduction="mean"):
    r"""Softmax cross-entropy of integer class targets, as ``torch.nn.functional.cross_entropy``.

    For each item with logits :math:`z` (C classes) and target class :math:`k`:
    :math:`\ell = -\log \mathrm{softmax}(z)_k = \log \sum_j e^{z_j} - z_k`, computed after
    subtracting :math:`\max_j z_j` so that no exponential overflows.

    Parameters
    ----------
    logits : float array (..., C)
        Unnormalised log-probabilities; (T, B, C) from a readout of an LSTM output, say.
    target : int array (...)
        Class of each item, in [0, C) where counted.
    ignore_index : int, optional
        Items whose target equals it are not counted (a padding token, say).
    mask : bool array (...), optional
        Only items where it is True are counted (steps within each sequence's length, say).
    reduction : {"mean", "sum"}, default "mean"
        Average over the counted items, or sum over them.

    Returns
    -------
    loss : float
        In nats; divide by ln 2 for bits. 0.0 when no item is counted.
    dlogits : array, the shape and dtype of ``logits``
        :math:`(\mathrm{softmax}(z) - \mathrm{onehot}(k)) / N` for counted items (without the
        1/N for "sum"), zero for the others.
    """
    _check_reduction(reduction)
    logits = _as_input("logits", logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a class axis of at least one class, shape "
                         f"(..., C); got shape {logits.shape}")
    C = logits.shape[-1]
    target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must be an integer array; got dtype {target.dtype}")
    if target.shape != logits.shape[:-1]:
        raise ValueError(f"target must have shape {logits.shape[:-1]} (logits without the "
                         f"class axis); got {target.shape}")
    valid = np.ones(target.shape, bool)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask must be a bool array; got dtype {mask.dtype}")
        if mask.shape != target.shape:
            raise ValueError(f"mask must have shape {target.shape} (that of target); "
                             f"got {mask.shape}")
        valid &= mask
    if ignore_index is not None:
        valid &= target != ignore_index
    counted = target[valid]
    if counted.size and (counted.min() < 0 or counted.max() >= C):
        raise ValueError(f"target must be in [0, {C}) where counted; got values from "
                         f"{counted.min()} to {counted.max()}")
    n = int(valid.sum())

    if n < valid.size:
        # Items not counted must not reach the arithmetic: a NaN or inf in their logits would
        # make their "zero" gradient NaN (0 * NaN), and with it the readout's weight gradient.
        logits = np.where(valid[..., None], logits, logits.dtype.type(0))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    k = np.where(valid, target, 0)[..., None]
    shifted_k = np.take_along_axis(shifted, k, axis=-1)[..., 0].astype(np.float64)
    probs = np.exp(shifted, out=shifted)
    sumexp = probs.sum(axis=-1, keepdims=True)
    probs /= sumexp
    # -log softmax(z)_k = log sum_j exp(z_j - max) - (z_k - max)
    nll = np.log(sumexp[..., 0], dtype=np.float64) - shifted_k
    scale = 1.0 / max(n, 1) if reduction == "mean" else 1.0
    loss = float(nll[valid].sum()) * scale

    dlogits = probs
    np.put_along_axis(dlogits, k, np.take_along_axis(dlogits, k, axis=-1) - 1, axis=-1)
    dlogits *= (valid * scale).astype(logits.dtype)[..., None]
    return loss, dlogits
