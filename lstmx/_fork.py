"""What a process made by ``fork`` needs before it calls lstmx.

GNU OpenMP is not fork-safe: a child forked after the kernels' parallel loops have run
inherits a thread pool whose threads did not survive the fork, and its first parallel loop
waits for them forever. So in the child, the thread that forked (the only one the child
has) runs the kernels' loops on one thread, as PyTorch does in forked children; threads the
child starts later build pools of their own. Locks are re-created too: one held by another
thread at the moment of the fork would stay held in the child forever.
"""
from __future__ import annotations

import ctypes
import os

__all__ = ["at_fork_in_child"]

# The OpenMP runtimes lstmx's kernels may be linked with; only one already loaded (by the
# kernels) is used: RTLD_NOLOAD loads nothing.
_RUNTIMES = ("libgomp.so.1", "libomp.so", "libomp.so.5", "libiomp5.so")
_hooks = []
_set_num_threads = None  # the runtime's omp_set_num_threads, once found


def _find_set_num_threads():
    for name in _RUNTIMES:
        try:
            lib = ctypes.CDLL(name, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LOCAL)
        except OSError:
            continue
        fn = getattr(lib, "omp_set_num_threads", None)
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], None
            return fn
    return None


def at_fork_in_child(hook) -> None:
    """Run ``hook()`` in every child made by fork (after the OpenMP limit is set)."""
    _hooks.append(hook)


def _before_fork():
    # Looked up in the parent (the child must not dlopen: another thread may have held the
    # loader's lock at the fork), and not at import: the kernels load the runtime later.
    global _set_num_threads
    if _set_num_threads is None:
        _set_num_threads = _find_set_num_threads()


def _after_fork_in_child():
    if _set_num_threads is not None:
        _set_num_threads(1)
    for hook in _hooks:
        hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
