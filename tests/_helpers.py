"""Shared test helpers: tolerances, random problems, optional imports that never skip in CI,
the ways a kernel argument can be wrong."""
import contextlib
import importlib
import os

import numpy as np
import pytest

from lstmx import _dispatch, reference

# Kernel vs the float64 reference: float32 rounding accumulates over steps and layers, so its
# bound is ~1e2 ulp; float64 is held to 1e-9 relative, as against PyTorch.
RTOL = {np.float32: 1e-4, np.float64: 1e-9}
ATOL = {np.float32: 1e-5, np.float64: 1e-12}


def tolerances(dtype):
    dtype = np.dtype(dtype).type
    return dict(rtol=RTOL[dtype], atol=ATOL[dtype])


# The depths of k the float tiles may sum before going to C (depth_for_l1 picks one from the
# CPU's L1); tests run both on any CPU.
DEPTHS = [512, 256]


@contextlib.contextmanager
def depth_block(variant, depth):
    """Kernel variant ``variant``'s float tiles summing k in blocks of ``depth``, then back."""
    kernels = _dispatch.load(variant)
    before = kernels.get_depth_block()
    kernels.set_depth_block(depth)
    try:
        yield depth
    finally:
        kernels.set_depth_block(before)


def amx_granted(flag):
    """Whether this CPU lists AMX feature ``flag`` (``"amx_int8"``, ``"amx_bf16"``) in
    /proc/cpuinfo and Linux grants this process AMX's tile registers (asked through ctypes,
    not through lstmx's own request)."""
    import ctypes
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f
                          if line.startswith("flags")), set())
    except OSError:
        return False
    if not {"amx_tile", flag} <= flags or platform.machine() != "x86_64":
        return False
    # arch_prctl (syscall 158 on x86-64): ARCH_REQ_XCOMP_PERM (0x1023), XFEATURE_XTILEDATA (18).
    return ctypes.CDLL(None, use_errno=True).syscall(158, 0x1023, 18) == 0


def require(module: str):
    """Import an optional test dependency; in CI (CI set) its absence is a failure, not a skip."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (CI installs it)")


def random_problem(lstm, T, B, rng, lengths=False, state=True):
    """x, state, lengths and output gradients for ``lstm``, in its dtype."""
    cfg = lstm.config
    dt = cfg.dtype
    LD = cfg.num_layers * cfg.num_directions
    x = rng.standard_normal((B, T, cfg.input_size) if cfg.batch_first
                            else (T, B, cfg.input_size)).astype(dt)
    st = ((rng.standard_normal((LD, B, cfg.output_size)).astype(dt),
           rng.standard_normal((LD, B, cfg.hidden_size)).astype(dt)) if state else None)
    lens = rng.integers(1, T + 1, size=B) if lengths else None
    F = cfg.num_directions * cfg.output_size
    dy = rng.standard_normal((B, T, F) if cfg.batch_first else (T, B, F)).astype(dt)
    dstate = (rng.standard_normal((LD, B, cfg.output_size)).astype(dt),
              rng.standard_normal((LD, B, cfg.hidden_size)).astype(dt))
    return x, st, lens, dy, dstate


def reference_run(lstm, x, state, lengths, dy, dstate):
    """The reference forward and backward in float64 on ``lstm``'s parameters."""
    p = {k: v.astype(np.float64) for k, v in lstm.parameters().items()}
    f64 = (lambda a: None if a is None else np.asarray(a, np.float64))
    h0, c0 = (None, None) if state is None else map(f64, state)
    y, (h, c), saved = reference.lstm_forward(p, lstm.config, f64(x), h0, c0, lengths)
    dx, (dh0, dc0), grads = reference.lstm_backward(p, lstm.config, saved, f64(dy),
                                                    *map(f64, dstate))
    return y, h, c, dx, dh0, dc0, grads


# Central differences in float64: truncation ~FD_EPS^2, rounding ~1e-16/FD_EPS.
FD_EPS = 1e-6
FD_RTOL = 1e-6


def directional_fd(f, arr, direction):
    """(f(arr + eps v) - f(arr - eps v)) / 2 eps, changing ``arr`` in place and restoring it."""
    saved = arr.copy()
    arr += FD_EPS * direction
    up = f()
    arr[...] = saved - FD_EPS * direction
    down = f()
    arr[...] = saved
    return (up - down) / (2 * FD_EPS)


def assert_same_model(a, b):
    """Same class, configuration and bit-identical parameters of the same dtypes."""
    from numpy.testing import assert_array_equal

    assert type(a) is type(b)
    assert a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert_array_equal(sa[name], sb[name], err_msg=name)


# The ways an array argument of a kernel entry can be wrong (tests/test_*_contract.py).
def misaligned(a):
    buf = np.empty(a.nbytes + 1, np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


BAD = {
    "None": lambda a: None,
    "float64": lambda a: a.astype(np.float64),
    "int32": lambda a: a.astype(np.int32),
    "Fortran": np.asfortranarray,
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "misaligned": misaligned,
    "byteswapped": lambda a: a.astype(a.dtype.newbyteorder()),
    "short": lambda a: a[..., :-1],
    "longer": lambda a: np.concatenate([a, a[..., :1]], axis=-1),
    "flat": lambda a: a.reshape(-1),
    "not an array": lambda a: a.tolist(),
}
