"""Truncated backpropagation through time over long streams.

A stream too long for one backward pass (a text, a long recording) is cut into ``B`` parallel
streams (``batchify``) and walked in chunks of ``seq_len`` steps (``bptt_chunks``). The state
at the end of one chunk is the initial state of the next, so the model sees the whole stream;
gradients stop at chunk boundaries, which is the truncation::

    data = batchify(tokens, batch_size)               # (N, B)
    state = None
    for x, y in bptt_chunks(data[:-1], data[1:], seq_len=100):
        e, e_cache = emb.forward_train(x)             # x, y (T, B), T <= 100
        out, state, lstm_cache = lstm.forward_train(e, state)
        logits, head_cache = head.forward_train(out)
        loss, dlogits = cross_entropy(logits, y)
        ...                                           # backward, optimiser step

``forward_train`` copies the state it is given, so carrying ``state`` across chunks needs no
"detach": the next chunk's gradient simply does not reach into the previous one.
"""
from __future__ import annotations

import numpy as np

from lstmx._config import _check_int

__all__ = ["batchify", "bptt_chunks"]


def batchify(stream, batch_size):
    """Cut one long stream into ``batch_size`` contiguous streams side by side.

    Parameters
    ----------
    stream : array (N_total, ...)
        Tokens (N_total,) or feature vectors (N_total, F), in time order.
    batch_size : int
        B. The last ``N_total % B`` steps are dropped.

    Returns
    -------
    data : array (N, B, ...), time-major, N = N_total // B
        Column b is the b-th consecutive piece of the stream: ``data[:, b]`` is
        ``stream[b * N:(b + 1) * N]``.
    """
    stream = np.asarray(stream)
    batch_size = _check_int("batch_size", batch_size, 1)
    if stream.ndim < 1:
        raise ValueError("stream must be an array with a time axis first; got a scalar")
    N = stream.shape[0] // batch_size
    if N < 1:
        raise ValueError(f"stream must have at least batch_size ({batch_size}) steps; got "
                         f"{stream.shape[0]}")
    data = stream[:N * batch_size].reshape((batch_size, N) + stream.shape[1:])
    return np.ascontiguousarray(data.swapaxes(0, 1))


def bptt_chunks(*arrays, seq_len):
    """Walk time-major arrays together in consecutive chunks of ``seq_len`` steps.

    Parameters
    ----------
    *arrays : arrays (N, ...)
        One or more arrays with the same first (time) axis, such as inputs ``data[:-1]`` and
        next-step targets ``data[1:]``.
    seq_len : int
        Steps per chunk; the last chunk holds the remaining ``N % seq_len`` steps if any.

    Returns
    -------
    chunks : list of tuples of arrays (T, ...), T <= seq_len
        Views of each array over the same steps, in time order (for a lone array, the views
        themselves rather than 1-tuples).
    """
    seq_len = _check_int("seq_len", seq_len, 1)
    if not arrays:
        raise TypeError("bptt_chunks needs at least one array")
    arrays = [np.asarray(a) for a in arrays]
    N = arrays[0].shape[0] if arrays[0].ndim else 0
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[0] != N:
            raise ValueError(f"arrays[{i}] must have {N} steps on its first axis (as "
                             f"arrays[0]); got shape {a.shape}")
    chunks = [tuple(a[start:start + seq_len] for a in arrays)
              for start in range(0, N, seq_len)]
    return chunks if len(arrays) > 1 else [chunk[0] for chunk in chunks]
