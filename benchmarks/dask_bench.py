"""Bench of lstmx.dask on one machine: predict throughput and the cost of a training step.

Measures, at M (T=50, B=32, I=128, H=256) and L (T=100, B=64, I=512, H=512), float32:

- predict: sequences a second of ``lstmx.dask.predict`` over a dataset of ``--batches``
  batches of B sequences already held by the workers (the outputs stay there, as before a
  write to disk), on a LocalCluster of 1 and of 2 worker processes, each with one thread and
  one OpenMP/BLAS thread; against ``model(x)`` batch by batch in this process with 1 and
  with 2 threads.
- train step: ``lstmx.dask.train_step`` (MSE loss, SGD) with the data on the workers, one
  shard per worker, against the same step in this process (1 thread) on what one worker
  computes (the whole batch for one worker, half of it for two); the difference is the
  cluster's overhead. Also the local step at B/8 and B/64 (what one worker of 8 or 64
  computes), and the two constants of docs/scaling.md's cost model measured here: the round
  trip of an empty task and the time to move an array of the model's size.

The machine is shared and its load changes from minute to minute, so the contenders take
turns round by round (``--repeat`` rounds after a warm-up) and ratios are medians of the
per-round ratios; the load average is recorded with each size, and so is how many cores two
CPU-bound processes of this session got together, before and after (the ceiling of any
2-over-1 speed-up on a busy machine, which Linux shares between sessions).

Writes JSON to benchmarks/results/dask-<date>.json (or --out). Takes a minute or two::

    python benchmarks/dask_bench.py [--repeat 3] [--batches 8] [--sizes M L] [--quiet-workers]

with lstmx (and lstmx.dask) importable: installed, or ``PYTHONPATH=.`` from a checkout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time

import numpy as np

SIZES = {"M": dict(T=50, B=32, I=128, H=256), "L": dict(T=100, B=64, I=512, H=512)}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TIMEOUT = 600
# Dask's own periodic work made less frequent (--quiet-workers; docs/scaling.md): the workers'
# statistical profiler off (it samples every thread's stack 100 times a second), and the event
# loops' tick and the memory and system monitors at 1-5 s instead of 20-500 ms. On a machine
# whose cores all compute, each wake-up takes its time from a worker's task.
QUIET_WORKERS = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s",
                 "distributed.worker.memory.monitor-interval": "1s",
                 "distributed.admin.system-monitor.interval": "5s"}


def cpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return {k: fields.get(k, "").strip() for k in ("Model name", "CPU(s)", "CPU family",
                                                      "Model", "Hypervisor vendor")}
    except (OSError, subprocess.CalledProcessError):
        return {"processor": platform.processor(), "cpus": os.cpu_count()}


def best(times):
    """The median and the minimum of a list of seconds (the minimum is the least disturbed by
    the other users of a shared machine; both are reported)."""
    return {"median_s": statistics.median(times), "min_s": min(times), "all_s": times}


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return best(times)


_BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2: pass"


def parallel_capacity():
    """How many cores two CPU-bound processes of this session get together: the wall time of
    one alone against two side by side (2.0 on two idle cores). Linux shares the CPU between
    sessions (autogroup), so on a busy machine this can be near 1, and then no second worker
    or thread can be faster than one; this is the ceiling of every 2-over-1 ratio here."""
    import sys

    def wall(n):
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(n)]
        for p in procs:
            p.wait(timeout=TIMEOUT)
        return time.perf_counter() - t
    one, two = wall(1), wall(2)
    return {"one_s": one, "two_s": two, "cores": 2 * one / two}


def rounds(runners, repeat):
    """Seconds of each runner, all taking turns round by round after one warm-up call each:
    on a shared machine the load changes from minute to minute, and paired rounds meet the
    same load, so their ratios (medians of per-round ratios) are what to compare."""
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(repeat):
        for name, run in runners.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    return {name: best(t) for name, t in times.items()}


def paired(times, a, b):
    """Median over rounds of a's time over b's (b's speed-up over a)."""
    return statistics.median(x / y for x, y in zip(times[a]["all_s"], times[b]["all_s"]))


def local_predict(lstm, batches, threads):
    from threadpoolctl import threadpool_limits

    def run():
        with threadpool_limits(threads):
            for x in batches:
                lstm(x)
    return run


def local_step(lstm, x, target):
    import lstmx
    from threadpoolctl import threadpool_limits
    opt = lstmx.optim.SGD([lstm.parameters()], lr=1e-6)

    def run():
        with threadpool_limits(1):
            y, _, cache = lstm.forward_train(x)
            _, dy = lstmx.losses.mse_loss(y, target)
            _, _, grads = lstm.backward(cache, dy)
            opt.step([grads])
    return run


def cluster(n_workers):
    from dask.distributed import Client, LocalCluster
    lc = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", timeout=TIMEOUT)
    client = Client(lc, set_as_default=False, timeout=TIMEOUT)
    client.wait_for_workers(n_workers, timeout=TIMEOUT)
    return lc, client


def worker_threads(client):
    from threadpoolctl import threadpool_info
    info = client.run(lambda: sorted({(p["user_api"], p["num_threads"])
                                      for p in threadpool_info()}))
    return {w: [list(p) for p in v] for w, v in info.items()}


def on_workers(client, shape, chunks, seed):
    """A float32 normal array made and kept by the workers (not sent from here)."""
    import dask.array as da
    from distributed import futures_of, wait
    x = da.random.default_rng(seed).standard_normal(shape, chunks=chunks, dtype=np.float32)
    x = client.persist(x)
    with client.as_current():
        wait(futures_of(x), timeout=TIMEOUT)
    return x


def cluster_predict(client, lstm, s, n_batches):
    """predict over a dataset made and kept by the workers; the outputs stay there."""
    from distributed import futures_of, wait
    import lstmx.dask
    X = on_workers(client, (s["T"], s["B"] * n_batches, s["I"]), (s["T"], s["B"], s["I"]), 1)

    def run():
        y = client.persist(lstmx.dask.predict(lstm, X, client=client))
        with client.as_current():
            wait(futures_of(y), timeout=TIMEOUT)
    return run


def cluster_step(client, lstm, s, n_shards):
    import lstmx
    import lstmx.dask
    opt = lstmx.optim.SGD([lstm.parameters()], lr=1e-6)
    shard = -(-s["B"] // n_shards)
    X = on_workers(client, (s["T"], s["B"], s["I"]), (s["T"], shard, s["I"]), 2)
    Y = on_workers(client, (s["T"], s["B"], s["H"]), (s["T"], shard, s["H"]), 3)

    def run():
        lstmx.dask.train_step(lstm, opt, X, Y, lstmx.losses.mse_loss, client=client,
                              timeout=TIMEOUT)
    return run


def comm_constants(client, nbytes, repeat):
    """The round trip of an empty task, and the seconds to scatter ``nbytes`` to one worker
    and bring them back (two transfers through the scheduler each way: 4 moves)."""
    from distributed import wait
    worker = sorted(client.scheduler_info()["workers"])[0]
    empty = timed(lambda: client.submit(int, 0, pure=False).result(timeout=TIMEOUT), repeat * 5)
    payload = np.ones(nbytes // 4, np.float32)

    def roundtrip():
        f = client.scatter(payload, workers=[worker], hash=False)
        f.result(timeout=TIMEOUT)
        del f

    move = timed(roundtrip, repeat)
    return {"empty_task_roundtrip": empty, "scatter_and_gather": move, "nbytes": nbytes,
            "bandwidth_Bps": 4 * nbytes / move["median_s"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["M", "L"], choices=sorted(SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8, help="batches of B in the dataset")
    parser.add_argument("--out", default=None, help="JSON path")
    parser.add_argument("--quiet-workers", action="store_true",
                        help="make Dask's periodic work less frequent (QUIET_WORKERS)")
    args = parser.parse_args(argv)

    import dask
    import distributed
    import lstmx
    if args.quiet_workers:
        # Before the clusters start: the scheduler reads it here, and each nanny passes its
        # process's configuration on to its worker.
        dask.config.set(QUIET_WORKERS)

    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "cpu": cpu(), "versions": {"lstmx": lstmx.__version__, "dask": dask.__version__,
                                         "distributed": distributed.__version__,
                                         "numpy": np.__version__},
              "repeat": args.repeat, "batches": args.batches, "sizes": {},
              "dask_config": {k: dask.config.get(k) for k in QUIET_WORKERS},
              # The machine is shared: how busy it was, before and after.
              "loadavg_start": os.getloadavg()}
    rng = np.random.default_rng(0)
    clusters = [cluster(n) for n in (1, 2)]
    (_, c1), (_, c2) = clusters
    try:
        for name in args.sizes:
            s = SIZES[name]
            lstm = lstmx.LSTM(s["I"], s["H"], seed=0)
            batches = [rng.standard_normal((s["T"], s["B"], s["I"]), dtype=np.float32)
                       for _ in range(args.batches)]
            target = rng.standard_normal((s["T"], s["B"], s["H"]), dtype=np.float32)
            nparams = sum(v.size for v in lstm.parameters().values())
            r = result["sizes"][name] = {"shape": s, "parameters": int(nparams),
                                         "parameter_bytes": int(4 * nparams),
                                         "loadavg": os.getloadavg(),
                                         "capacity_before": parallel_capacity()}
            seqs = s["B"] * args.batches
            t = rounds({"local_1_thread": local_predict(lstm, batches, 1),
                        "local_2_thread": local_predict(lstm, batches, 2),
                        "1_worker": cluster_predict(c1, lstm, s, args.batches),
                        "2_worker": cluster_predict(c2, lstm, s, args.batches)}, args.repeat)
            r["predict"] = {k: {**v, "seq_per_s": seqs / v["median_s"]} for k, v in t.items()}
            r["predict_speedup"] = {"2_over_1_worker": paired(t, "1_worker", "2_worker"),
                                    "1_worker_over_local": paired(t, "local_1_thread",
                                                                  "1_worker"),
                                    "2_worker_over_local": paired(t, "local_1_thread",
                                                                  "2_worker")}
            half = s["B"] // 2
            t = rounds({"local_B": local_step(lstm, batches[0], target),
                        "local_B/2": local_step(lstm, batches[0][:, :half], target[:, :half]),
                        "1_worker": cluster_step(c1, lstm, s, 1),
                        "2_worker": cluster_step(c2, lstm, s, 2)}, args.repeat)
            r["step"] = t
            # Against what one worker computes: the whole batch for one, half for two.
            r["step_overhead_s"] = {
                "1_worker": statistics.median(
                    x - y for x, y in zip(t["1_worker"]["all_s"], t["local_B"]["all_s"])),
                "2_worker": statistics.median(
                    x - y for x, y in zip(t["2_worker"]["all_s"], t["local_B/2"]["all_s"]))}
            # What one worker of 8 or 64 would compute (the cost model's t_c(B/N)).
            r["step_shard"] = {}
            for n in (8, 64):
                b = max(1, s["B"] // n)
                r["step_shard"][f"B/{n}"] = {"batch": b, **rounds(
                    {"local": local_step(lstm, batches[0][:, :b], target[:, :b])},
                    args.repeat)["local"]}
            r["comm"] = comm_constants(c1, r["parameter_bytes"], args.repeat)
            r["capacity_after"] = parallel_capacity()
            print(name, json.dumps(r["predict_speedup"]), flush=True)
        # After the work, so that lstmx's OpenMP runtime is loaded and listed too.
        for n, c in ((1, c1), (2, c2)):
            result[f"worker_threads_{n}"] = worker_threads(c)
    finally:
        for lc, client in clusters:
            client.close(timeout=60)
            lc.close(timeout=60)

    result["loadavg_end"] = os.getloadavg()
    out = args.out or os.path.join(
        RESULTS, f"dask-{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    for name in args.sizes:
        r = result["sizes"][name]
        p, sp = r["predict"], r["predict_speedup"]
        print(f"{name}: predict seq/s local 1 thread {p['local_1_thread']['seq_per_s']:.0f}, "
              f"2 threads {p['local_2_thread']['seq_per_s']:.0f}; cluster 1 worker "
              f"{p['1_worker']['seq_per_s']:.0f}, 2 workers {p['2_worker']['seq_per_s']:.0f}; "
              f"2 over 1 worker {sp['2_over_1_worker']:.2f}x (paired rounds; the session had "
              f"{r['capacity_before']['cores']:.2f} and {r['capacity_after']['cores']:.2f} "
              f"cores before and after); step local "
              f"{1e3 * r['step']['local_B']['median_s']:.1f} ms, overhead "
              + ", ".join(f"{k} {1e3 * v:+.1f} ms" for k, v in r["step_overhead_s"].items()))
    print("wrote", out)
    return result


if __name__ == "__main__":
    main()
