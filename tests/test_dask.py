"""lstmx.dask: predict, gradients and training steps on Dask's threaded scheduler and on a
process cluster (two spawned workers, so models and shards are also pickled).

Oracles: predict against each shard's ``model(x)`` bit for bit (the kernels' rounding depends on
the batch size, so the whole batch in one call agrees to rounding only, and is checked so);
gradients and steps against one process's ``backward`` over the whole batch, to float rounding.
One LocalCluster serves the module; every cluster operation has a timeout.
"""
import contextlib
import gc
import os
import signal
import threading
import time

import numpy as np
import pytest

import lstmx
from _helpers import require, tolerances

da = require("dask.array")
distributed = require("distributed")
dask = require("dask")
from dask._task_spec import convert_legacy_graph  # noqa: E402
ldask = require("lstmx.dask")

TIMEOUT = 60  # seconds for any one cluster operation; a healthy one takes well under 5
# Frames above this size are split: the test models (hundreds of KiB to MiB) are larger
# than one message, so every transfer of a model runs through the splitting and joining.
SHARD = "64KiB"


@pytest.fixture(scope="module")
def client():
    # allowed-failures=1: a task may lose its worker once and be retried; the second loss is
    # a KilledWorker error (the default, 3, would make the always-failing test slow).
    # connect=10s: a worker that asks a killed peer for data is refused at once and retries
    # until this timeout (30 s by default) before the scheduler finds the data elsewhere.
    with dask.config.set({"distributed.comm.shard": SHARD,
                          "distributed.scheduler.allowed-failures": 1,
                          "distributed.comm.timeouts.connect": "10s"}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", timeout=TIMEOUT)
        with cluster, distributed.Client(cluster, set_as_default=False,
                                         timeout=TIMEOUT) as c:
            c.wait_for_workers(2, timeout=TIMEOUT)
            yield c


def compute(client, *arrays):
    return [f.result(timeout=TIMEOUT) for f in client.compute(list(arrays))]


@contextlib.contextmanager
def memory_manager_stopped(client):
    """Dask's active memory manager (on by default) stopped in the block: at any of its
    rounds (every 2 s) it may drop the replicas of a broadcast that no task waits for yet
    (dask/dask#11148), and Dask's scatter documents broadcasting with it stopped."""
    assert client.amm.running()
    client.amm.stop()
    try:
        yield
    finally:
        client.amm.start()


def shards_of(x, axis, chunks):
    bounds = np.cumsum((0,) + tuple(chunks))
    return [np.take(x, np.arange(a, b), axis=axis) for a, b in zip(bounds[:-1], bounds[1:])]


def per_shard(fn, x, axis, chunks, state=None, lengths=None, state_axis=1):
    """``fn`` on each batch shard (with its slice of state and lengths), outputs joined."""
    outs = []
    for i, xs in enumerate(shards_of(x, axis, chunks)):
        lo = sum(chunks[:i])
        sl = slice(lo, lo + chunks[i])
        st = None if state is None else tuple(np.take(s, np.arange(lo, lo + chunks[i]),
                                                      axis=state_axis) for s in state)
        outs.append(fn(xs, st, None if lengths is None else lengths[sl]))
    return outs


def lstm_problem(dtype=np.float32, batch_first=False, T=6, B=10, I=5, H=7, **kw):
    lstm = lstmx.LSTM(I, H, batch_first=batch_first, dtype=dtype, seed=0, **kw)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    LD = lstm.config.num_layers * lstm.config.num_directions
    state = (rng.standard_normal((LD, B, lstm.config.output_size)).astype(dtype),
             rng.standard_normal((LD, B, H)).astype(dtype))
    lengths = rng.integers(1, T + 1, size=B)
    return lstm, x, state, lengths, rng


CHUNKS = (4, 4, 2)


def check_predict(client, lstm, x, state, lengths, batch_first=False):
    b_axis = 0 if batch_first else 1
    X = da.from_array(x, chunks={b_axis: CHUNKS})
    y, (h, c) = ldask.predict(lstm, X, state, lengths, return_state=True, client=client)
    assert y.chunks[b_axis] == CHUNKS and h.chunks[1] == CHUNKS and c.chunks[1] == CHUNKS
    got = compute(client, y, h, c) if client is not None else dask.compute(y, h, c)
    parts = per_shard(lambda xs, st, ln: lstm(xs, st, ln), x, b_axis, CHUNKS, state, lengths)
    want = (np.concatenate([p[0] for p in parts], axis=b_axis),
            np.concatenate([p[1][0] for p in parts], axis=1),
            np.concatenate([p[1][1] for p in parts], axis=1))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    whole_y, (whole_h, whole_c) = lstm(x, state, lengths)
    for g, w in zip(got, (whole_y, whole_h, whole_c)):
        np.testing.assert_allclose(g, w, **tolerances(lstm.dtype))


def local_gradients(mods, x, dy, state=None, lengths=None):
    """backward through ``mods`` over the whole batch in one process."""
    caches, out = [], x
    for m in mods:
        if isinstance(m, lstmx.LSTM):
            out, _, cache = m.forward_train(out, state, lengths)
        else:
            out, cache = m.forward_train(out)
        caches.append(cache)
    grads = [None] * len(mods)
    for i in range(len(mods) - 1, -1, -1):
        m = mods[i]
        if isinstance(m, lstmx.LSTM):
            dy, _, grads[i] = m.backward(caches[i], dy)
        elif isinstance(m, lstmx.Linear):
            dy, grads[i] = m.backward(caches[i], dy)
        else:
            grads[i] = m.backward(caches[i], dy)
    return out, grads


def assert_grads_close(got, want, dtype):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for k in w:
            np.testing.assert_allclose(g[k], w[k], **tolerances(dtype), err_msg=k)


# --- threaded scheduler ----------------------------------------------------------------------

@pytest.mark.parametrize("batch_first", [False, True])
def test_predict_threads_bidirectional_lengths(batch_first):
    lstm, x, state, lengths, _ = lstm_problem(batch_first=batch_first, num_layers=2,
                                              bidirectional=True, proj_size=3)
    with dask.config.set(scheduler="threads"):
        check_predict(None, lstm, x, state, lengths, batch_first)


def test_predict_threads_pipeline_embedding_lstm_linear():
    emb = lstmx.Embedding(11, 5, seed=0)
    lstm = lstmx.LSTM(5, 8, batch_first=True, seed=1)
    head = lstmx.Linear(8, 3, seed=2)
    tokens = np.random.default_rng(0).integers(0, 11, size=(9, 6))  # (B, T)
    X = da.from_array(tokens, chunks=(4, 6))
    with dask.config.set(scheduler="threads"):
        y = ldask.predict([emb, lstm, head], X).compute()
    want = np.concatenate([head(lstm(emb(t))[0]) for t in shards_of(tokens, 0, (4, 4, 1))])
    np.testing.assert_array_equal(y, want)
    assert y.shape == (9, 6, 3) and y.dtype == np.float32


def test_predict_threads_lstmcell_loop():
    cell = lstmx.LSTMCell(5, 7, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 10, 5)).astype(np.float32)
    state = (rng.standard_normal((10, 7)).astype(np.float32),
             rng.standard_normal((10, 7)).astype(np.float32))
    X = da.from_array(x, chunks=(6, 4, 5))
    with dask.config.set(scheduler="threads"):
        y, (h, c) = dask.compute(*_flat(ldask.predict(cell, X, state, return_state=True)))
    hs, st = [], state
    for t in range(6):
        st = cell(x[t], st)
        hs.append(st[0])
    np.testing.assert_allclose(y, np.stack(hs), **tolerances(np.float32))
    np.testing.assert_allclose(h, st[0], **tolerances(np.float32))
    np.testing.assert_allclose(c, st[1], **tolerances(np.float32))


def _flat(result):
    y, (h, c) = result
    return y, (h, c)


def test_predict_uses_the_weights_of_the_call():
    lstm, x, _, _, _ = lstm_problem()
    X = da.from_array(x, chunks=(6, 5, 5))
    want = np.concatenate([lstm(s)[0] for s in shards_of(x, 1, (5, 5))], axis=1)
    y = ldask.predict(lstm, X)
    lstm.weight_ih_l0[...] = 0  # after the call: must not reach the lazy result
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(y.compute(), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_threads_equal_local(dtype):
    lstm, x, state, lengths, rng = lstm_problem(dtype, num_layers=2, bidirectional=True)
    head = lstmx.Linear(2 * 7, 3, dtype=dtype, seed=3)
    y = head(lstm(x, state, lengths)[0])
    dy = rng.standard_normal(y.shape).astype(dtype)
    _, want = local_gradients([lstm, head], x, dy, state, lengths)
    X = da.from_array(x, chunks={1: CHUNKS})
    with dask.config.set(scheduler="threads"):
        got = ldask.gradients([lstm, head], X, dy, state, lengths, split_every=2)
    assert_grads_close(got, want, dtype)


def test_gradients_lstmcell_loop_equal_lstm():
    # An LSTMCell run over time is a one-layer LSTM with the same weights: the same gradient.
    cell = lstmx.LSTMCell(5, 7, dtype=np.float64, seed=0)
    lstm = lstmx.LSTM(5, 7, dtype=np.float64, seed=1)
    lstm.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 10, 5))
    dy = rng.standard_normal((6, 10, 7))
    X = da.from_array(x, chunks=(6, 3, 5))
    with dask.config.set(scheduler="threads"):
        got = ldask.gradients(cell, X, dy)
    _, want = local_gradients([lstm], x, dy)
    assert_grads_close([{k + "_l0": v for k, v in got.items()}], want, np.float64)


def local_step(mods, x, target, opt, loss):
    out, caches = x, []
    for m in mods:
        if isinstance(m, lstmx.LSTM):
            out, _, cache = m.forward_train(out)
        else:
            out, cache = m.forward_train(out)
        caches.append(cache)
    value, dy = loss(out, target)
    _, grads = local_gradients(mods, x, dy)
    opt.step(grads)
    return value


def two_models(dtype=np.float64):
    pairs = []
    for _ in range(2):
        pairs.append((lstmx.LSTM(5, 7, dtype=dtype, seed=0),
                      lstmx.Linear(7, 2, dtype=dtype, seed=1)))
    return pairs


def test_train_step_threads_equals_local_step():
    (l1, h1), (l2, h2) = two_models()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 10, 5))
    target = rng.standard_normal((6, 10, 2))
    opt1 = lstmx.optim.Adam([l1.parameters(), h1.parameters()], lr=1e-2)
    opt2 = lstmx.optim.Adam([l2.parameters(), h2.parameters()], lr=1e-2)
    X, Y = da.from_array(x, chunks=(6, 3, 5)), da.from_array(target, chunks=(6, 3, 2))
    with dask.config.set(scheduler="threads"):
        for _ in range(3):
            got = ldask.train_step([l1, h1], opt1, X, Y, lstmx.losses.mse_loss)
            want = local_step([l2, h2], x, target, opt2, lstmx.losses.mse_loss)
            assert got == pytest.approx(want, rel=1e-12)
    for a, b in ((l1, l2), (h1, h2)):
        for k, v in b.parameters().items():
            np.testing.assert_allclose(a.parameters()[k], v, **tolerances(np.float64))


def test_wrong_inputs_are_refused_before_any_work():
    lstm, x, state, lengths, _ = lstm_problem()
    X = da.from_array(x, chunks=(6, 5, 5))
    with pytest.raises(TypeError, match=r"model\[1\] must be one of"):
        ldask.predict([lstm, "head"], X)
    with pytest.raises(ValueError, match="must contain an LSTM or an LSTMCell"):
        ldask.predict(lstmx.Linear(5, 2), X)
    with pytest.raises(ValueError, match="exactly one LSTM or LSTMCell"):
        ldask.predict([lstm, lstmx.LSTM(7, 3)], X, return_state=True)
    with pytest.raises(ValueError, match="lengths needs an LSTM"):
        ldask.predict(lstmx.LSTMCell(5, 7), X, lengths=lengths)
    with pytest.raises(ValueError, match=r"lengths must have the batch size 10 on axis 0"):
        ldask.predict(lstm, X, lengths=lengths[:4])
    with pytest.raises(ValueError, match=r"state\[h0\] must have 3 dimensions"):
        ldask.predict(lstm, X, state=(state[0][0], state[1]))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        ldask.predict(lstm, X[0])
    with pytest.raises(ValueError, match="split_every must be >= 2"):
        ldask.gradients(lstm, X, np.zeros((6, 10, 7), np.float32), split_every=1)
    before = lstm.state_dict()
    other = lstmx.LSTM(5, 7)
    opt = lstmx.optim.SGD([other.parameters()], lr=0.1)
    with pytest.raises(ValueError, match="not the live parameters"):
        ldask.train_step(lstm, opt, X, np.zeros((6, 10, 7), np.float32),
                         lstmx.losses.mse_loss)
    with pytest.raises(TypeError, match="loss must be a callable"):
        ldask.train_step(lstm, lstmx.optim.SGD([lstm.parameters()], lr=0.1), X,
                         np.zeros((6, 10, 7), np.float32), "mse")
    for k, v in before.items():
        np.testing.assert_array_equal(lstm.parameters()[k], v)


# --- process cluster -------------------------------------------------------------------------

@pytest.mark.parametrize("batch_first", [False, True])
def test_predict_cluster_bidirectional_lengths(client, batch_first):
    lstm, x, state, lengths, _ = lstm_problem(batch_first=batch_first, num_layers=2,
                                              bidirectional=True, peephole=True)
    check_predict(client, lstm, x, state, lengths, batch_first)


def test_model_reaches_each_worker_once(client):
    with memory_manager_stopped(client):
        lstm, x, _, _, _ = lstm_problem()
        X = da.from_array(x, chunks=(6, 1, 5))  # ten tasks on two workers
        y = ldask.predict(lstm, X, client=client)
        graph = convert_legacy_graph(dict(y.__dask_graph__()))
        # The tasks' one dependency from outside the graph: the scattered model.
        (key,) = set().union(*(task.dependencies for task in graph.values())) - set(graph)
        holders = client.who_has()[key]
        assert len(holders) == 2  # broadcast: already on both workers, not fetched per task
        compute(client, y)
        transfers = client.run(lambda dask_worker: sum(
            key in entry["keys"] for entry in dask_worker.transfer_incoming_log))
        assert set(transfers.values()) == {0}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_cluster_equal_local(client, dtype):
    lstm, x, state, lengths, rng = lstm_problem(dtype, num_layers=2, bidirectional=True)
    head = lstmx.Linear(14, 3, dtype=dtype, seed=3)
    y = head(lstm(x, state, lengths)[0])
    dy = rng.standard_normal(y.shape).astype(dtype)
    _, want = local_gradients([lstm, head], x, dy, state, lengths)
    X = da.from_array(x, chunks={1: CHUNKS})
    got = ldask.gradients([lstm, head], X, dy, state, lengths, client=client,
                          timeout=TIMEOUT, split_every=2)
    assert_grads_close(got, want, dtype)


def test_model_larger_than_one_message(client):
    lstm = lstmx.LSTM(64, 128, num_layers=2, seed=0)
    size = sum(v.nbytes for v in lstm.parameters().values())
    assert size > 8 * dask.utils.parse_bytes(SHARD)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, 64)).astype(np.float32)
    X = da.from_array(x, chunks=(5, 3, 64))
    (y,) = compute(client, ldask.predict(lstm, X, client=client))
    want = np.concatenate([lstm(s)[0] for s in shards_of(x, 1, (3, 3))], axis=1)
    np.testing.assert_array_equal(y, want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    got = ldask.gradients(lstm, X, dy, client=client, timeout=TIMEOUT)
    _, local = local_gradients([lstm], x, dy)
    assert_grads_close([got], local, np.float32)


def test_default_client_is_found(client):
    lstm, x, _, _, _ = lstm_problem()
    X = da.from_array(x, chunks=(6, 5, 5))
    # scheduler=client: what a Client(set_as_default=True) does
    with dask.config.set(scheduler=client), memory_manager_stopped(client):
        y = ldask.predict(lstm, X)
        graph = convert_legacy_graph(dict(y.__dask_graph__()))
        (key,) = set().union(*(task.dependencies for task in graph.values())) - set(graph)
        assert len(client.who_has()[key]) == 2  # scattered, not in the graph
        got = y.compute()
    want = np.concatenate([lstm(s)[0] for s in shards_of(x, 1, (5, 5))], axis=1)
    np.testing.assert_array_equal(got, want)


def test_step_past_its_timeout_raises_and_leaves_model(client):
    (lstm, head), _ = two_models()
    opt = lstmx.optim.SGD([lstm.parameters(), head.parameters()], lr=0.1)
    before = [m.state_dict() for m in (lstm, head)]
    rng = np.random.default_rng(0)
    X = da.from_array(rng.standard_normal((6, 8, 5)), chunks=(6, 4, 5))
    Y = da.from_array(rng.standard_normal((6, 8, 2)), chunks=(6, 4, 2))
    t = time.perf_counter()
    with pytest.raises(TimeoutError):
        ldask.train_step([lstm, head], opt, X, Y, _slow(lstmx.losses.mse_loss, 2),
                         client=client, timeout=0.5)
    assert time.perf_counter() - t < 2
    assert opt.steps == 0
    for m, saved in zip((lstm, head), before):
        for k, v in saved.items():
            np.testing.assert_array_equal(m.parameters()[k], v)


def _slow(loss, seconds):
    # A closure, so that cloudpickle ships it by value to the workers.
    def slow_loss(out, target):
        time.sleep(seconds)
        return loss(out, target)
    return slow_loss


def test_worker_killed_during_step(client):
    (l1, h1), (l2, h2) = two_models()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 5))
    target = rng.standard_normal((6, 8, 2))
    opt1 = lstmx.optim.SGD([l1.parameters(), h1.parameters()], lr=0.1, momentum=0.9)
    opt2 = lstmx.optim.SGD([l2.parameters(), h2.parameters()], lr=0.1, momentum=0.9)
    X, Y = da.from_array(x, chunks=(6, 4, 5)), da.from_array(target, chunks=(6, 4, 2))
    pids = client.run(os.getpid)
    result = {}

    def step():
        try:
            result["loss"] = ldask.train_step([l1, h1], opt1, X, Y,
                                              _slow(lstmx.losses.mse_loss, 1.5),
                                              client=client, timeout=TIMEOUT)
        except Exception as err:  # reported below, in the test's thread
            result["error"] = err

    worker = threading.Thread(target=step)
    worker.start()
    victim = _wait_for_processing(client)
    os.kill(pids[victim], signal.SIGKILL)
    worker.join(2 * TIMEOUT)  # the step's own timeout (TIMEOUT) ends it first
    assert not worker.is_alive()
    want = local_step([l2, h2], x, target, opt2, lstmx.losses.mse_loss)
    # The step really ran through the loss of a worker: its process is gone from the cluster.
    assert victim not in client.scheduler_info()["workers"]
    if "error" in result:
        pytest.fail(f"Dask retries a task whose worker died once; got {result['error']!r}")
    assert result["loss"] == pytest.approx(want, rel=1e-12)
    for a, b in ((l1, l2), (h1, h2)):
        for k, v in b.parameters().items():
            np.testing.assert_allclose(a.parameters()[k], v, **tolerances(np.float64))
    client.wait_for_workers(2, timeout=TIMEOUT)


def _wait_for_processing(client):
    """The address of a worker running a task (polled; fails after TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items()
                if any("lstmx-step" in str(k) for k in keys)]
        if busy:
            time.sleep(0.3)  # inside the task's sleep, well before its end
            return busy[0]
        time.sleep(0.05)
    raise AssertionError("no worker started the step's tasks")


def test_step_that_keeps_losing_workers_raises_and_leaves_model(client):
    (lstm, head), _ = two_models()
    opt = lstmx.optim.Adam([lstm.parameters(), head.parameters()], lr=1e-2)
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((6, 8, 5)), rng.standard_normal((6, 8, 2))
    X, Y = da.from_array(x, chunks=(6, 4, 5)), da.from_array(target, chunks=(6, 4, 2))
    ldask.train_step([lstm, head], opt, X, Y, lstmx.losses.mse_loss, client=client,
                     timeout=TIMEOUT)
    before = [m.state_dict() for m in (lstm, head)]
    moments = [{k: {n: a.copy() for n, a in s.items()} for k, s in group.items()}
               for group in opt.state]

    def fatal_loss(out, target):
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies, every attempt

    with pytest.raises((distributed.scheduler.KilledWorker,
                        distributed.client.FutureCancelledError)):
        ldask.train_step([lstm, head], opt, X, Y, fatal_loss, client=client,
                         timeout=TIMEOUT)
    for m, saved in zip((lstm, head), before):
        for k, v in saved.items():
            np.testing.assert_array_equal(m.parameters()[k], v)
    assert opt.steps == 1
    for group, saved in zip(opt.state, moments):
        for k, s in saved.items():
            for n, a in s.items():
                np.testing.assert_array_equal(group[k][n], a)
    client.wait_for_workers(2, timeout=TIMEOUT)
    # The cluster recovers and the next step runs.
    assert np.isfinite(ldask.train_step([lstm, head], opt, X, Y, lstmx.losses.mse_loss,
                                        client=client, timeout=TIMEOUT))


def test_quiet_workers_configuration_reaches_the_workers():
    """The bench's --quiet-workers settings (docs/scaling.md): every key is one of Dask's, a
    nanny passes them to its worker, and predict runs under them as under the defaults."""
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "dask_bench.py")
    spec = importlib.util.spec_from_file_location("dask_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    defaults = {k: dask.config.get(k) for k in bench.QUIET_WORKERS}  # KeyError if renamed
    assert defaults != bench.QUIET_WORKERS
    with dask.config.set(bench.QUIET_WORKERS):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", timeout=TIMEOUT)
        with cluster, distributed.Client(cluster, set_as_default=False,
                                         timeout=TIMEOUT) as c:
            seen = c.run(lambda keys: {k: dask.config.get(k) for k in keys},
                         list(bench.QUIET_WORKERS))
            assert list(seen.values()) == [bench.QUIET_WORKERS]
            lstm = lstmx.LSTM(3, 5, seed=0)
            x = np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)
            graph = ldask.predict(lstm, da.from_array(x, chunks=(4, 3, 3)), client=c)
            (y,) = compute(c, graph)
            # The graph holds the scattered model's future: released while its client is
            # open, not by a later test's garbage collection.
            del graph
            gc.collect()
    np.testing.assert_array_equal(y, np.concatenate(
        [lstm(x[:, :3])[0], lstm(x[:, 3:])[0]], axis=1))


def test_example_trains_on_chunks_from_disk(tmp_path, capsys):
    require("matplotlib")
    import sys
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples")
    sys.path.insert(0, examples)
    try:
        import dask_chunked
        r = dask_chunked.main(["--n", "1536", "--test", "512", "--T", "20", "--epochs", "2",
                               "--chunk", "32", "--batch", "64",
                               "--out", str(tmp_path), "--no-progress"])
    finally:
        sys.path.remove(examples)
    assert sorted(os.listdir(tmp_path / "dask_chunked" / "x"))[:2] == ["0.npy", "1.npy"]
    # Answering 0 scores ~0.04; two short epochs already do ten times better.
    assert r["test_mse"] < r["baseline"] / 10
    assert os.path.getsize(r["plot"]) > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("dask chunked: test MSE")
