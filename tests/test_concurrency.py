"""Concurrency: the kernels release the GIL, and threads never disturb each other.

- Every compiled kernel (inference, training forward, backward) lets other Python threads run
  while it computes.
- The same model called from a thread pool gives, bit for bit, the serial results.
- Two backward passes on two caches run at the same time and give the serial gradients.
- State carried from call to call (h, c) belongs to the caller: models used at once from
  several threads never see each other's state.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
from lstmx import _engine

WORKERS = 4


def _problem(m, T, B, seed):
    cfg = m.config
    rng = np.random.default_rng(seed)
    LD = cfg.num_layers * cfg.num_directions
    x = rng.standard_normal((T, B, cfg.input_size)).astype(cfg.dtype)
    state = (rng.standard_normal((LD, B, cfg.output_size)).astype(cfg.dtype),
             rng.standard_normal((LD, B, cfg.hidden_size)).astype(cfg.dtype))
    lengths = rng.integers(1, T + 1, size=B)
    dy = rng.standard_normal((T, B, cfg.num_directions * cfg.output_size)).astype(cfg.dtype)
    return x, state, lengths, dy


def _train_step(m, problem):
    x, state, lengths, dy = problem
    y, (h, c), cache = m.forward_train(x, state, lengths)
    dx, (dh0, dc0), grads = m.backward(cache, dy)
    y_inf, (h_inf, c_inf) = m(x, state, lengths)
    return [y, h, c, dx, dh0, dc0, y_inf, h_inf, c_inf, *grads.values()]


def _assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert_array_equal(u, v, strict=True)


# ----------------------------------------------------------------------------- the GIL

def _engine_window_and_other_thread_ticks(monkeypatch, entry, run):
    """Run ``run`` in a worker thread while this thread counts; return the time windows
    spent inside ``_engine.<entry>`` (the kernels and a little NumPy around them) and the
    times at which this thread ran Python meanwhile."""
    windows = []
    real = getattr(_engine, entry)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            windows.append((t0, time.perf_counter()))

    monkeypatch.setattr(_engine, entry, timed)
    worker = threading.Thread(target=run)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    return windows, np.array(ticks)


@pytest.mark.parametrize("kernel", ["inference", "forward_train", "backward"])
def test_kernels_release_the_gil(kernel, monkeypatch):
    # One engine call long enough (~0.1-1 s) that, if its kernel held the GIL, this thread
    # could not run a single bytecode in the middle of it; with the GIL released it ticks
    # throughout. The check is on the middle third of the window, away from the Python
    # (argument handling, allocation) on either side.
    m = lstmx.LSTM(8, 32, dtype=np.float64, seed=0)
    # Inference, which keeps no cache, takes ~3 us a step here: it gets the longer sequence.
    T = 24_000 if kernel == "inference" else 6000
    x = np.random.default_rng(0).standard_normal((T, 8, 8))
    if kernel == "backward":
        y, _, cache = m.forward_train(x)
        run = lambda: m.backward(cache, np.ones_like(y))  # noqa: E731
    elif kernel == "forward_train":
        run = lambda: m.forward_train(x)  # noqa: E731
    else:
        run = lambda: m(x)  # noqa: E731
    entry = "backward" if kernel == "backward" else "forward"
    windows, ticks = _engine_window_and_other_thread_ticks(monkeypatch, entry, run)
    assert len(windows) == 1
    t0, t1 = windows[0]
    third = (t1 - t0) / 3
    assert third > 0.01, "the kernel call is too short to tell"
    inside = np.count_nonzero((ticks > t0 + third) & (ticks < t1 - third))
    assert inside > 0, f"no Python ran during {1e3 * (t1 - t0):.0f} ms inside {kernel}"


# ----------------------------------------------------------------------------- thread pools

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(num_layers=2, bidirectional=True),
                                     dict(peephole=True, proj_size=3,
                                          output_activation="identity", batch_first=False)],
                         ids=["plain", "bidir2", "peephole_proj_identity"])
def test_same_model_from_a_thread_pool_equals_serial(dtype, options):
    m = lstmx.LSTM(5, 6, dtype=dtype, seed=0, **options)
    problems = [_problem(m, T=3 + k % 7, B=1 + k % 4, seed=k) for k in range(24)]
    serial = [_train_step(m, p) for p in problems]
    with ThreadPoolExecutor(WORKERS) as pool:
        threaded = list(pool.map(lambda p: _train_step(m, p), problems))
    for s, t in zip(serial, threaded):
        _assert_same(s, t)


def test_cell_from_a_thread_pool_equals_serial():
    cell = lstmx.LSTMCell(5, 6, peephole=True, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    inputs = [(rng.standard_normal((3, 5)), (rng.standard_normal((3, 6)),
                                             rng.standard_normal((3, 6)))) for _ in range(32)]

    def step(args):
        x, state = args
        (h, c), cache = cell.forward_train(x, state)
        dx, (dh, dc), grads = cell.backward(cache, (np.ones_like(h), np.ones_like(c)))
        return [h, c, dx, dh, dc, *grads.values(), *cell(x, state)]

    serial = [step(a) for a in inputs]
    with ThreadPoolExecutor(WORKERS) as pool:
        threaded = list(pool.map(step, inputs))
    for s, t in zip(serial, threaded):
        _assert_same(s, t)


def test_two_backward_passes_on_two_caches_run_concurrently():
    m = lstmx.LSTM(6, 16, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    p1, p2 = _problem(m, 400, 4, seed=1), _problem(m, 300, 3, seed=2)
    y1, _, cache1 = m.forward_train(*p1[:3])
    y2, _, cache2 = m.forward_train(*p2[:3])
    want1, want2 = m.backward(cache1, p1[3]), m.backward(cache2, p2[3])
    barrier = threading.Barrier(2)
    results = [None, None]

    def run(k, cache, dy):
        barrier.wait()  # both start together, so their kernels overlap
        results[k] = m.backward(cache, dy)

    threads = [threading.Thread(target=run, args=(0, cache1, p1[3])),
               threading.Thread(target=run, args=(1, cache2, p2[3]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in ((results[0], want1), (results[1], want2)):
        dx, (dh0, dc0), grads = got
        wdx, (wdh0, wdc0), wgrads = want
        _assert_same([dx, dh0, dc0, *grads.values()], [wdx, wdh0, wdc0, *wgrads.values()])
    # The same cache back-propagated twice at once is also fine: backward only reads it.
    with ThreadPoolExecutor(2) as pool:
        again = list(pool.map(lambda _: m.backward(cache1, p1[3]), range(2)))
    for dx, _, grads in again:
        _assert_same([dx, *grads.values()], [want1[0], *want1[2].values()])


def test_state_carried_between_calls_never_leaks_between_models():
    # Two models, each stepping through its own sequence one chunk at a time and carrying
    # (h, c) between calls, from several threads at once: each must end exactly where its
    # serial run ends. The models keep no state; the state is whatever the caller passes.
    models = [lstmx.LSTM(4, 5, num_layers=2, dtype=np.float64, seed=s) for s in range(2)]
    models += [lstmx.LSTM(4, 5, num_layers=2, dtype=np.float64, seed=0)]  # a twin of model 0
    rng = np.random.default_rng(3)
    seqs = [rng.standard_normal((40, 2, 4)) for _ in models]

    def stepwise(k):
        state, ys = None, []
        for t in range(0, 40, 4):
            y, state = models[k](seqs[k][t:t + 4], state)
            ys.append(y)
        return np.concatenate(ys), state

    serial = [stepwise(k) for k in range(len(models))]
    with ThreadPoolExecutor(WORKERS) as pool:
        threaded = list(pool.map(stepwise, [k for k in range(len(models)) for _ in range(3)]))
    for j, (y, (h, c)) in enumerate(threaded):
        k = j // 3
        _assert_same([y, h, c], [serial[k][0], *serial[k][1]])
    # The twin of model 0 on another sequence differs from model 0: nothing is shared.
    assert not np.array_equal(serial[2][0], serial[0][0])
    whole = [models[k](seqs[k])[1] for k in range(len(models))]
    for k in range(len(models)):
        np.testing.assert_allclose(serial[k][1][0], whole[k][0], rtol=1e-12, atol=1e-14)
