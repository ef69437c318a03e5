"""lstmx._workspace: large arrays reuse buffers only once nothing refers to them."""
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
from lstmx import _workspace

BIG = (256, 1024)  # 1 MiB of float32, above MIN_BYTES


@pytest.fixture(autouse=True)
def empty_pool():
    lstmx.release_memory()
    yield
    lstmx.release_memory()


def test_buffer_is_reused_once_free_and_not_before():
    a = _workspace.empty(BIG, np.float32)
    view = a[10:20]
    address = a.ctypes.data
    del a
    b = _workspace.empty(BIG, np.float32)  # the view keeps the first buffer busy
    assert b.ctypes.data != address
    assert not np.shares_memory(b, view)
    del view
    c = _workspace.empty(BIG, np.float32)
    assert c.ctypes.data == address
    assert _workspace.pooled_bytes() == (2 * c.nbytes, 0)


def test_small_arrays_bypass_the_pool_and_results_match_numpy():
    small = _workspace.empty((3, 4), np.float64)
    assert small.base is None and small.shape == (3, 4)
    assert _workspace.pooled_bytes() == (0, 0)
    z = _workspace.zeros(BIG, np.float64)
    assert z.dtype == np.float64 and z.flags.c_contiguous and not z.any()
    src = np.arange(np.prod(BIG), dtype=np.float32).reshape(BIG).T  # Fortran order
    cp = _workspace.copy(src)
    assert cp.flags.c_contiguous and not np.shares_memory(cp, src)
    assert_array_equal(cp, src)


def test_release_memory_drops_free_buffers_only():
    kept = _workspace.empty(BIG, np.float32)
    _workspace.empty((512, 1024), np.float32)  # freed at once
    assert _workspace.pooled_bytes() == (kept.nbytes, 2 * kept.nbytes)
    lstmx.release_memory()
    assert _workspace.pooled_bytes() == (kept.nbytes, 0)


def test_free_buffers_kept_are_bounded(monkeypatch):
    monkeypatch.setattr(_workspace, "KEEP_BYTES", 3 << 20)
    for rows in range(256, 256 + 8 * 64, 64):  # eight sizes of about 1-2 MiB, each freed
        _workspace.empty((rows, 1024), np.float32)
    used, free = _workspace.pooled_bytes()
    assert used == 0 and free <= 3 << 20


def test_threads_never_share_a_buffer():
    errors = []

    def work(k):
        for _ in range(200):
            a = _workspace.empty(BIG, np.float32)
            a.fill(k)
            if not (a == k).all():
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_training_reuses_memory_and_user_arrays_stay_intact():
    lstm = lstmx.LSTM(64, 128, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((20, 16, 64)).astype(np.float32)
    y1, _, cache = lstm.forward_train(x)
    kept = y1.copy()
    dx1, _, grads1 = lstm.backward(cache, np.ones_like(y1))
    del cache
    y2, _, cache2 = lstm.forward_train(2 * x)  # may reuse the first cache's buffers
    dx2, _, _ = lstm.backward(cache2, np.ones_like(y2))
    assert not np.shares_memory(y1, y2) and not np.shares_memory(dx1, dx2)
    assert_array_equal(y1, kept)  # the caller's arrays are theirs


def test_a_free_buffer_up_to_a_quarter_larger_serves_a_request():
    a = _workspace.empty((300, 1024), np.float32)  # 17% larger than BIG
    larger = a.ctypes.data
    del a
    b = _workspace.empty(BIG, np.float32)
    assert b.ctypes.data == larger and b.shape == BIG and b.flags.c_contiguous
    b[...] = 1  # its own bytes: the buffer's tail is not part of it
    assert b.nbytes == np.prod(BIG) * 4 and b.sum() == b.size
    c = _workspace.empty(BIG, np.float32)  # no free buffer left: a new one, of its size
    assert _workspace.pooled_bytes() == (300 * 4096 + c.nbytes, 0)
    del b
    d = _workspace.empty((200, 1024), np.float32)  # BIG's buffers are 28% larger: a new one
    assert not np.shares_memory(c, d)
    assert _workspace.pooled_bytes() == (c.nbytes + d.nbytes, 300 * 4096)
    del c
    e = _workspace.empty(BIG, np.float32)  # of two free buffers, the one of its own size
    assert _workspace.pooled_bytes() == (e.nbytes + d.nbytes, 300 * 4096)


def test_pooled_arrays_start_on_a_cache_line():
    # A large NumPy array starts 16 bytes into a page (malloc's header); the pool's, fresh,
    # reused or served from a larger free buffer, start on a cache line.
    line = _workspace.ALIGN_BYTES
    for shape, dtype in [(BIG, np.float32), ((1 << 17) + 3, np.uint8), ((3, 70001), np.float64)]:
        a = _workspace.empty(shape, dtype)
        assert a.ctypes.data % line == 0 and a.shape == (shape if isinstance(shape, tuple)
                                                         else (shape,))
        del a
        assert _workspace.empty(shape, dtype).ctypes.data % line == 0
    bigger = _workspace.empty((256, 1100), np.float32)
    del bigger
    served = _workspace.empty(BIG, np.float32)           # from the free (256, 1100) buffer
    assert served.ctypes.data % line == 0


def test_line_aligned_copies_start_on_a_cache_line():
    rng = np.random.default_rng(0)
    for a in (rng.standard_normal((5, 7)), rng.integers(-9, 9, (300, 33)).astype(np.int8)[:, 1:],
              np.arange(3, dtype=np.uint16)):
        out = _workspace.line_aligned(a)
        assert out.ctypes.data % _workspace.ALIGN_BYTES == 0
        assert out.flags.c_contiguous and out.dtype == a.dtype
        assert_array_equal(out, a)
        assert not np.shares_memory(out, a)
