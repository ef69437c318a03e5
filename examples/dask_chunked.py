"""Training on a dataset stored chunked on disk, with lstmx.dask and a Dask progress bar.

The dataset: N sequences of T steps of I noise channels, written to disk by Dask as ``.npy``
chunks of ``--chunk`` sequences (``dask.array.to_npy_stack``) and read back lazily
(``from_npy_stack``); nothing holds the whole dataset in memory. The target at each step is
an exponential moving average of channel 0, ``y_t = 0.9 y_{t-1} + 0.1 x_t``: answering 0
scores an MSE of about its variance, 0.01 / (1 - 0.81) ~ 0.053 (0.048 over T = 50 steps,
which start from 0), and a network has to carry a decaying sum through time to do better.

Model: ``LSTM(I, hidden)`` and a ``Linear(hidden, 1)`` readout at every step, trained with
``lstmx.dask.train_step`` (MSE, Adam): each minibatch of ``--batch`` sequences is a slice of
the on-disk array, its chunks are the shards, the gradients are reduced by Dask and the
optimiser steps here. The held-out test set is scored with ``lstmx.dask.predict``. Writing
the dataset (always on Dask's threaded scheduler) and scoring show Dask's progress bars:
``dask.diagnostics.ProgressBar``, or ``distributed.progress`` for scoring with ``--workers``.

Measured (float32, 2 busy shared cores, defaults: N 8192 of which 1024 test, T 50, I 4,
hidden 32, chunks of 128, batches of 256, Adam lr 1e-2, 3 epochs): the test MSE falls from
0.0475 (answering 0) to 0.0029, 0.00038 and 0.00018 after each epoch, 84 steps in 10 s on
the threaded scheduler. With ``--workers 2`` the losses are the same and two epochs took
47 s, most of it the cluster's start and the model's transfer at every step, which a model
this small (5 k parameters, 1 ms a shard) cannot repay (see docs/scaling.md).

Run::

    python examples/dask_chunked.py                    # threaded scheduler
    python examples/dask_chunked.py --workers 2        # a LocalCluster of 2 processes
"""
from __future__ import annotations

import os

import numpy as np

import _common
import lstmx
import lstmx.dask

DECAY = 0.9


def write_dataset(path, n, T, features, chunk, seed, progress):
    """Write inputs (T, n, I) and targets (T, n, 1) as .npy chunks along the batch; returns
    them read back, lazily, as dask arrays."""
    import dask.array as da
    from scipy.signal import lfilter

    x = da.random.default_rng(seed).standard_normal((T, n, features), chunks=(T, chunk,
                                                                              features),
                                                    dtype=np.float32)
    # y_t = DECAY y_{t-1} + (1 - DECAY) x_t along time, chunk by chunk (chunks hold whole
    # sequences).
    y = x[..., :1].map_blocks(lambda b: lfilter([1 - DECAY], [1, -DECAY], b, axis=0)
                              .astype(np.float32), dtype=np.float32)
    os.makedirs(path, exist_ok=True)
    with _dask_progress(progress):
        da.to_npy_stack(os.path.join(path, "x"), x, axis=1)
        da.to_npy_stack(os.path.join(path, "y"), y, axis=1)
    return (da.from_npy_stack(os.path.join(path, "x")),
            da.from_npy_stack(os.path.join(path, "y")))


class _dask_progress:
    """Dask's progress bar for the local schedulers' computations, or nothing."""

    def __init__(self, enabled):
        from dask.diagnostics import ProgressBar
        self.bar = ProgressBar() if enabled else None

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def test_mse(model, x, y, client, progress):
    """The MSE of the model on x, y (dask arrays), with a progress bar."""
    import dask.array as da
    err = da.mean((lstmx.dask.predict(model, x, client=client) - y) ** 2)
    if client is None:
        with _dask_progress(progress):
            return float(err.compute())
    from distributed import progress as dprogress
    future = client.compute(err)
    if progress:
        with client.as_current():
            dprogress(future)
            print()
    return float(future.result(timeout=600))


def train(path, n=8192, test=1024, T=50, features=4, hidden=32, chunk=128, batch=256,
          epochs=3, lr=1e-2, seed=0, workers=0, progress=True):
    """Write the dataset, train, score; returns a dict of the result and the curve."""
    clock = _common.Stopwatch()
    client = cluster = None
    if workers:
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                               dashboard_address=":0")
        client = Client(cluster, set_as_default=False)
    try:
        x, y = write_dataset(path, n, T, features, chunk, seed, progress)
        x_train, y_train = x[:, test:], y[:, test:]
        x_test, y_test = x[:, :test], y[:, :test]
        baseline = float((y_test ** 2).mean().compute())  # the MSE of answering 0
        lstm = lstmx.LSTM(features, hidden, seed=seed)
        head = lstmx.Linear(hidden, 1, seed=seed)
        model = [lstm, head]
        opt = lstmx.optim.Adam([lstm.parameters(), head.parameters()], lr=lr)
        curve = {"step": [0], "test_mse": [test_mse(model, x_test, y_test, client, progress)]}
        losses, step = [], 0
        order = np.random.default_rng(seed).permutation(range(0, n - test, batch))
        for epoch in range(epochs):
            for start in order:
                losses.append(lstmx.dask.train_step(
                    model, opt, x_train[:, start:start + batch],
                    y_train[:, start:start + batch], lstmx.losses.mse_loss, client=client,
                    timeout=600))
                step += 1
            curve["step"].append(step)
            curve["test_mse"].append(test_mse(model, x_test, y_test, client, progress))
            print(f"epoch {epoch + 1}: train MSE {np.mean(losses[-len(order):]):.5f}, "
                  f"test MSE {curve['test_mse'][-1]:.5f}", flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return {"test_mse": curve["test_mse"][-1], "baseline": baseline, "steps": step,
            "seconds": clock(), "curve": curve, "train_losses": losses}


def main(argv=None):
    parser = _common.make_parser(__doc__)
    parser.add_argument("--data", default=None,
                        help="directory of the dataset's chunks (default: OUT/dask_chunked)")
    parser.add_argument("--n", type=int, default=8192, help="sequences on disk")
    parser.add_argument("--test", type=int, default=1024, help="of which held out")
    parser.add_argument("--T", type=int, default=50, help="sequence length")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM hidden size")
    parser.add_argument("--chunk", type=int, default=128, help="sequences a chunk on disk")
    parser.add_argument("--batch", type=int, default=256, help="sequences a step")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes of a LocalCluster (0: threaded scheduler)")
    args = parser.parse_args(argv)
    path = args.data or os.path.join(args.out, "dask_chunked")
    with _common.blas_threads(args.threads):
        r = train(path, args.n, args.test, args.T, 4, args.hidden, args.chunk, args.batch,
                  args.epochs, args.lr, args.seed, args.workers, not args.no_progress)
    r["plot"] = _common.save_curve(
        os.path.join(args.out, "dask_chunked.png"),
        {"train": (np.arange(1, len(r["train_losses"]) + 1), r["train_losses"]),
         "test": (r["curve"]["step"], r["curve"]["test_mse"])},
        "step", "MSE", "Moving average, data chunked on disk",
        hlines={"answering 0": r["baseline"]})
    print(f"plot: {r['plot']}")
    print(f"dask chunked: test MSE {r['test_mse']:.5f} (baseline {r['baseline']:.4f}) "
          f"after {r['steps']} steps in {r['seconds']:.0f} s")
    return r


if __name__ == "__main__":
    main()
