"""Memory for large arrays, reused instead of asked of the OS at every call.

A large new array is new pages: the first write to each 4 KiB page is a page fault, in which
the kernel zeroes the page (about 2 us each on our machines). A training step of the M
benchmark touches ~12 MiB of new arrays, and those faults took longer than the arithmetic of
its forward pass. So the arrays of training caches, outputs, gradients and kernel workspaces
come from here: views of buffers this module keeps. A buffer is free again once nothing refers
to it (its reference count is back to the pool's own), however many views of it were made or
passed on; so an array handed to a user stays theirs for as long as they hold any view of it.
A request takes a free buffer of its size, else the smallest free one up to a quarter larger.

Every array from the pool starts on a cache line (``ALIGN_BYTES``): a large NumPy array is a
page from mmap less malloc's 16-byte header, and a 64-byte vector load from one that is not
line-aligned touches two lines. AMX's tile loads of bfloat16 weights so placed ran 2.4 times
as long (docs/quantization.md). At most ``KEEP_BYTES`` of free buffers are kept; arrays
below ``MIN_BYTES`` come from NumPy (malloc recycles small blocks without faults).
``release_memory()`` (also ``lstmx.release_memory``) drops every free buffer.
"""
from __future__ import annotations

import math
import sys
import threading

import numpy as np

from lstmx import _fork

__all__ = ["MIN_BYTES", "KEEP_BYTES", "ALIGN_BYTES", "empty", "zeros", "copy",
           "line_aligned", "release_memory", "pooled_bytes"]

MIN_BYTES = 1 << 17   # glibc serves smaller blocks from its heap (its mmap threshold)
KEEP_BYTES = 1 << 30  # free buffers kept for reuse, at most
ALIGN_BYTES = 64      # a cache line, and an AVX-512 vector

_lock = threading.Lock()
_buffers: dict[int, list[np.ndarray]] = {}  # size in bytes -> uint8 buffers, oldest first


def _new_lock():
    # In a child made by fork: the parent's lock may have been held by a thread the child
    # does not have.
    global _lock
    _lock = threading.Lock()


_fork.at_fork_in_child(_new_lock)


def _refs(buffers, i):
    return sys.getrefcount(buffers[i])


def _calibrate() -> int:
    # References to a buffer nobody else holds, as _refs counts them (the list, the call).
    return _refs([np.empty(1, np.uint8)], 0)


_FREE = _calibrate()


def _is_free(buffers, i) -> bool:
    return _refs(buffers, i) <= _FREE


def _trim(keep_bytes: int) -> None:
    """Drop free buffers, the oldest first, until at most ``keep_bytes`` of them are left."""
    free = [(size, i) for size, bufs in _buffers.items() for i in range(len(bufs))
            if _is_free(bufs, i)]
    total = sum(size for size, _ in free)
    dropped: dict[int, set] = {}
    for size, i in free:
        if total <= keep_bytes:
            break
        dropped.setdefault(size, set()).add(i)
        total -= size
    for size, idx in dropped.items():
        kept = [b for i, b in enumerate(_buffers[size]) if i not in idx]
        if kept:
            _buffers[size] = kept
        else:
            del _buffers[size]


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, as ``np.empty(shape, dtype)``."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    size = math.prod(shape) * dtype.itemsize
    if size < MIN_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        base = _take(size)
        if base is None:
            _trim(KEEP_BYTES - size)
            base = np.empty(size + ALIGN_BYTES, np.uint8)
            _buffers.setdefault(size, []).append(base)
    return _on_a_line(base, size).view(dtype).reshape(shape)


def _on_a_line(base: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` bytes of uint8 buffer ``base`` (``ALIGN_BYTES`` longer) from its first
    cache line."""
    start = -base.ctypes.data % ALIGN_BYTES
    return base[start:start + size]


def _take(size: int):
    """A free buffer for ``size`` bytes, or None: one of that size, else the smallest free
    one up to a quarter larger (arrays that differ only by rounding, as one step's packed
    weights and the next's weight gradients, then share memory)."""
    base = _free(size)
    if base is None:
        for larger in sorted(s for s in _buffers if size < s <= size + size // 4):
            base = _free(larger)
            if base is not None:
                break
    return base


def _free(size: int):
    """A free buffer of exactly ``size`` bytes (now the most recently used), or None."""
    bufs = _buffers.get(size, ())
    for i in range(len(bufs)):
        if _is_free(bufs, i):
            base = bufs.pop(i)
            bufs.append(base)
            return base
    return None


def zeros(shape, dtype) -> np.ndarray:
    """As ``np.zeros(shape, dtype)``."""
    out = empty(shape, dtype)
    out.fill(0)
    return out


def copy(a) -> np.ndarray:
    """A C-contiguous copy of array ``a`` (any layout), as ``np.array(a, order="C")``."""
    out = empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def line_aligned(a) -> np.ndarray:
    """A C-contiguous copy of array ``a`` that starts on a cache line, not from the pool: for
    arrays kept as long as a model (its packed weights)."""
    a = np.asarray(a)
    out = _on_a_line(np.empty(a.nbytes + ALIGN_BYTES, np.uint8), a.nbytes)
    out = out.view(a.dtype).reshape(a.shape)
    np.copyto(out, a)
    return out


def release_memory() -> None:
    """Give back to the allocator the buffers lstmx keeps for reuse.

    lstmx reuses the memory of its large arrays (training caches, gradients, outputs and
    scratch, once nothing refers to them) instead of asking the OS for fresh pages at every
    call; it keeps up to 1 GiB of such free buffers. Arrays still in use are not affected."""
    with _lock:
        _trim(0)


def pooled_bytes() -> tuple[int, int]:
    """(bytes of buffers in use, bytes of free buffers) held by the pool."""
    with _lock:
        used = free = 0
        for size, bufs in _buffers.items():
            for i in range(len(bufs)):
                if _is_free(bufs, i):
                    free += size
                else:
                    used += size
        return used, free
