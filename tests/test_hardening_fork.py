"""lstmx in children made by fork after its threaded kernels ran in the parent: the child
neither hangs (GNU OpenMP's pool does not survive fork) nor computes anything different.
Every wait has a timeout, so that a regression fails instead of hanging."""
import concurrent.futures
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx

from _helpers import require

TIMEOUT = 60  # seconds; a healthy child answers in well under one

pytestmark = pytest.mark.filterwarnings(
    # Python >= 3.12 warns on fork from a process with threads (OpenMP's, BLAS's): that is
    # exactly the situation tested here.
    "ignore:This process .* is multi-threaded:DeprecationWarning")


def problem():
    # Large enough that the kernels run their OpenMP loops on every thread.
    model = lstmx.LSTM(128, 256, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 32, 128)).astype(np.float32)
    dy = rng.standard_normal((20, 32, 256)).astype(np.float32)
    return model, x, dy


def compute():
    """Inference and a training step; what the children return to be compared."""
    model, x, dy = problem()
    y, _ = model(x)
    yt, _, cache = model.forward_train(x)
    dx, _, grads = model.backward(cache, dy)
    return y, yt, dx, grads["weight_hh_l0"], os.getpid()


@pytest.fixture(scope="module")
def parent_result():
    """What the children must return, bit for bit: the parent's result on one OpenMP
    thread, as the children run (the same call gives the same bits at the same thread
    counts). The parent's OpenMP pool is running before any child is forked."""
    from threadpoolctl import threadpool_limits

    threaded = compute()
    with threadpool_limits(1, user_api="openmp"):
        serial = compute()
    compute()
    return serial, threaded


def assert_same(got, want):
    assert got[-1] != os.getpid()  # computed in a child
    for a, b in zip(got[:-1], want[0][:-1]):
        assert_array_equal(a, b)


def test_multiprocessing_fork_pool(parent_result):
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        results = [pool.apply_async(compute) for _ in range(2)]
        for r in results:
            assert_same(r.get(timeout=TIMEOUT), parent_result)
    finally:
        pool.terminate()
        pool.join()


def test_process_pool_executor_fork(parent_result):
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context("fork"))
    try:
        futures = [executor.submit(compute) for _ in range(2)]
        for f in futures:
            assert_same(f.result(timeout=TIMEOUT), parent_result)
    finally:
        processes = list((executor._processes or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:  # a hung worker must not outlive the test
            p.kill()
            p.join(TIMEOUT)


def test_joblib_multiprocessing_backend(parent_result):
    joblib = require("joblib")
    results = joblib.Parallel(n_jobs=2, backend="multiprocessing", timeout=TIMEOUT)(
        joblib.delayed(compute)() for _ in range(2))
    for r in results:
        assert_same(r, parent_result)


def _child(body):
    """Run ``body()`` in a child made by os.fork; its exit status (124 on timeout)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            code = body()
        finally:
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return 124


def test_plain_fork_and_threads_started_in_the_child(parent_result):
    serial, threaded = parent_result

    def body():
        if not all(np.array_equal(a, b) for a, b in zip(compute()[:-1], serial[:-1])):
            return 3
        # A thread the child starts has a fresh OpenMP pool: all threads, the parent's bits.
        out = []
        t = threading.Thread(target=lambda: out.append(compute()))
        t.start()
        t.join()
        same = all(np.array_equal(a, b) for a, b in zip(out[0][:-1], threaded[:-1]))
        return 0 if same else 4

    assert _child(body) == 0


def test_fork_while_another_thread_holds_the_memory_pool_lock(parent_result):
    from lstmx import _workspace

    held, release = threading.Event(), threading.Event()

    def hold():
        with _workspace._lock:
            held.set()
            release.wait(TIMEOUT)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(TIMEOUT)
    try:
        status = _child(lambda: 0 if np.array_equal(compute()[0], parent_result[0][0]) else 3)
    finally:
        release.set()
        t.join()
    assert status == 0
