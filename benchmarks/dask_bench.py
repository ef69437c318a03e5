"""Bench of lstmx.dask on one machine: predict throughput and the cost of a training step.

Measures, at M (T=50, B=32, I=128, H=256) and L (T=100, B=64, I=512, H=512), float32:

- predict: sequences a second of ``lstmx.dask.predict`` over a dataset of ``--batches``
  batches of B sequences already held by the workers (the outputs stay there, as before a
  write to disk), on a LocalCluster of 1 and of 2 worker processes, each with one thread and
  one OpenMP/BLAS thread (both clusters up, taking turns round by round, so that the
  speed-up is also a median of paired rounds); against ``model(x)`` batch by batch in this
  process with 1 and with 2 threads.
- train step: ``lstmx.dask.train_step`` (MSE loss, SGD) with the data on the workers, one
  shard per worker, against the same step in this process on the whole batch (1 thread); the
  difference is the cluster's overhead. Also the local step at B/2, B/8 and B/64 (what one
  worker of 2, 8 or 64 computes), and the two constants of docs/scaling.md's cost model measured here:
  the round trip of an empty task and the bandwidth of moving an array of the model's size.

Writes JSON to benchmarks/results/dask-<date>.json (or --out). Takes a minute or two::

    python benchmarks/dask_bench.py [--repeat 3] [--batches 8] [--sizes M L]

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


def local_predict(lstm, batches, threads, repeat):
    from threadpoolctl import threadpool_limits
    with threadpool_limits(threads):
        lstm(batches[0])  # warm the workspace
        return timed(lambda: [lstm(x) for x in batches], repeat)


def local_step(lstm, x, target, repeat, threads=1):
    import lstmx
    from threadpoolctl import threadpool_limits
    opt = lstmx.optim.SGD([lstm.parameters()], lr=1e-6)

    def step():
        y, _, cache = lstm.forward_train(x)
        _, dy = lstmx.losses.mse_loss(y, target)
        _, _, grads = lstm.backward(cache, dy)
        opt.step([grads])

    with threadpool_limits(threads):
        step()
        return timed(step, repeat)


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


def cluster_predict(clients, lstm, s, n_batches, repeat):
    """Seconds of predict over the dataset on each cluster, the clusters taking turns round
    by round, so that a change in the machine's load hits both alike (paired rounds)."""
    from distributed import futures_of, wait
    import lstmx.dask
    Xs = [on_workers(c, (s["T"], s["B"] * n_batches, s["I"]), (s["T"], s["B"], s["I"]), 1)
          for c in clients]

    def run(client, X):
        t = time.perf_counter()
        y = client.persist(lstmx.dask.predict(lstm, X, client=client))
        with client.as_current():
            wait(futures_of(y), timeout=TIMEOUT)
        del y
        return time.perf_counter() - t

    for c, X in zip(clients, Xs):
        run(c, X)  # warm: imports and workspaces on the workers
    times = [[] for _ in clients]
    for _ in range(repeat):
        for i, (c, X) in enumerate(zip(clients, Xs)):
            times[i].append(run(c, X))
    return [best(t) for t in times]


def cluster_step(client, lstm, s, n_shards, repeat):
    import lstmx
    import lstmx.dask
    opt = lstmx.optim.SGD([lstm.parameters()], lr=1e-6)
    shard = -(-s["B"] // n_shards)
    X = on_workers(client, (s["T"], s["B"], s["I"]), (s["T"], shard, s["I"]), 2)
    Y = on_workers(client, (s["T"], s["B"], s["H"]), (s["T"], shard, s["H"]), 3)

    def run():
        lstmx.dask.train_step(lstm, opt, X, Y, lstmx.losses.mse_loss, client=client,
                              timeout=TIMEOUT)

    run()
    return timed(run, repeat)


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
    args = parser.parse_args(argv)

    import dask
    import distributed
    import lstmx

    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "cpu": cpu(), "versions": {"lstmx": lstmx.__version__, "dask": dask.__version__,
                                         "distributed": distributed.__version__,
                                         "numpy": np.__version__},
              "repeat": args.repeat, "batches": args.batches, "sizes": {},
              # The machine is shared: how busy it was, before and after.
              "loadavg_start": os.getloadavg()}
    rng = np.random.default_rng(0)
    models, data = {}, {}
    for name in args.sizes:
        s = SIZES[name]
        models[name] = lstmx.LSTM(s["I"], s["H"], seed=0)
        batches = [rng.standard_normal((s["T"], s["B"], s["I"]), dtype=np.float32)
                   for _ in range(args.batches)]
        target = rng.standard_normal((s["T"], s["B"], s["H"]), dtype=np.float32)
        data[name] = batches, target
        nparams = sum(v.size for v in models[name].parameters().values())
        r = result["sizes"][name] = {"shape": s, "parameters": int(nparams),
                                     "parameter_bytes": int(4 * nparams)}
        seqs = s["B"] * args.batches
        r["predict_local"] = {}
        for threads in (1, 2):
            t = local_predict(models[name], batches, threads, args.repeat)
            r["predict_local"][f"{threads}_thread"] = {**t, "seq_per_s": seqs / t["median_s"]}
        r["step_local"] = {"B": local_step(models[name], batches[0], target, args.repeat)}
        for n in (2, 8, 64):
            b = max(1, s["B"] // n)
            r["step_local"][f"B/{n}"] = {"batch": b, **local_step(
                models[name], batches[0][:, :b], target[:, :b], args.repeat)}
        print(name, "local", json.dumps({k: v for k, v in r.items() if k != "shape"},
                                        default=str)[:400], flush=True)

    clusters = [cluster(n) for n in (1, 2)]
    clients = [c for _, c in clusters]
    try:
        for name in args.sizes:
            s, r = SIZES[name], result["sizes"][name]
            seqs = s["B"] * args.batches
            times = cluster_predict(clients, models[name], s, args.batches, args.repeat)
            r["predict_cluster"] = {f"{n}_worker": {**t, "seq_per_s": seqs / t["median_s"]}
                                    for n, t in zip((1, 2), times)}
            rounds = zip(times[0]["all_s"], times[1]["all_s"])
            r["predict_speedup_paired_median"] = statistics.median(a / b for a, b in rounds)
            r["step_cluster"] = {f"{n}_worker": cluster_step(c, models[name], s, n,
                                                             args.repeat)
                                 for n, c in zip((1, 2), clients)}
            r["comm"] = comm_constants(clients[0], r["parameter_bytes"], args.repeat)
            print(name, r["predict_cluster"], flush=True)
        # After the work, so that lstmx's OpenMP runtime is loaded and listed too.
        for n, c in zip((1, 2), clients):
            result[f"worker_threads_{n}"] = worker_threads(c)
    finally:
        for lc, client in clusters:
            client.close(timeout=60)
            lc.close(timeout=60)

    for name in args.sizes:
        r = result["sizes"][name]
        pc = r["predict_cluster"]
        r["predict_speedup_2_over_1_worker"] = pc["2_worker"]["seq_per_s"] / \
            pc["1_worker"]["seq_per_s"]
        # Against what one worker computes: the whole batch for one worker, half for two.
        local = {"1_worker": r["step_local"]["B"]["median_s"],
                 "2_worker": r["step_local"]["B/2"]["median_s"]}
        r["step_overhead_s"] = {k: v["median_s"] - local[k]
                                for k, v in r["step_cluster"].items()}
    result["loadavg_end"] = os.getloadavg()
    out = args.out or os.path.join(
        RESULTS, f"dask-{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    for name in args.sizes:
        r = result["sizes"][name]
        print(f"{name}: predict seq/s local 1 thread "
              f"{r['predict_local']['1_thread']['seq_per_s']:.0f}, 2 threads "
              f"{r['predict_local']['2_thread']['seq_per_s']:.0f}; cluster 1 worker "
              f"{r['predict_cluster']['1_worker']['seq_per_s']:.0f}, 2 workers "
              f"{r['predict_cluster']['2_worker']['seq_per_s']:.0f} "
              f"({r['predict_speedup_2_over_1_worker']:.2f}x, paired rounds "
              f"{r['predict_speedup_paired_median']:.2f}x); step local "
              f"{1e3 * r['step_local']['B']['median_s']:.1f} ms, overhead "
              + ", ".join(f"{k} {1e3 * v:+.1f} ms" for k, v in r["step_overhead_s"].items()))
    print("wrote", out)
    return result


if __name__ == "__main__":
    main()
