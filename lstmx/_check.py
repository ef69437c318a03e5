"""``python -m lstmx check``: the kernels against the NumPy reference on random data."""
from __future__ import annotations

import time

import numpy as np

from lstmx import reference
from lstmx.layers import LSTM

# (name, constructor options, T, B): each feature of the kernels, at a size that runs in seconds.
CASES = [
    ("1 layer", dict(input_size=32, hidden_size=64), 50, 16),
    ("2 layers, bidirectional, lengths",
     dict(input_size=32, hidden_size=64, num_layers=2, bidirectional=True), 50, 16),
    ("peephole, h = o*c, projection",
     dict(input_size=32, hidden_size=64, peephole=True, output_activation="identity",
          proj_size=16), 50, 16),
]


def _median_time(fn, repeat):
    # NumPy and SciPy each bundle an OpenBLAS whose threads spin for ~0.1 s after their work;
    # on 2 cores the spinning threads of the function timed before (the reference uses
    # NumPy's) took a core from this one's BLAS calls, which then waited at every step: the
    # projection case read 12 ms instead of 0.5. Let them sleep, then warm up.
    time.sleep(0.2)
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def rel_err(got, want) -> float:
    """max |got - want| / max |want| in float64: one number per array, comparable across
    scales (also the bench's measure of agreement)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), np.finfo(float).tiny))


def check_case(options, T, B, dtype, repeat=5, seed=0):
    """Errors of forward and backward against the float64 reference, and median times."""
    rng = np.random.default_rng(seed)
    lstm = LSTM(dtype=dtype, seed=seed, **options)
    cfg = lstm.config
    x = rng.standard_normal((T, B, cfg.input_size)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B) if cfg.bidirectional else None
    params64 = {k: v.astype(np.float64) for k, v in lstm.parameters().items()}

    y, (h, c), cache = lstm.forward_train(x, lengths=lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy)
    y_ref, (h_ref, c_ref), saved = reference.lstm_forward(params64, cfg, x.astype(np.float64),
                                                          lengths=lengths)
    dx_ref, (dh0_ref, dc0_ref), grads_ref = reference.lstm_backward(
        params64, cfg, saved, dy.astype(np.float64))
    fwd_err = max(rel_err(y, y_ref), rel_err(h, h_ref), rel_err(c, c_ref))
    bwd_err = max([rel_err(dx, dx_ref), rel_err(dh0, dh0_ref), rel_err(dc0, dc0_ref)]
                  + [rel_err(grads[k], grads_ref[k]) for k in grads])

    def lstmx_train():
        _, _, cache = lstm.forward_train(x, lengths=lengths)
        lstm.backward(cache, dy)

    def reference_train():
        _, _, saved = reference.lstm_forward(params64, cfg, x, lengths=lengths)
        reference.lstm_backward(params64, cfg, saved, dy)

    return {
        "forward_error": fwd_err,
        "backward_error": bwd_err,
        "lstmx_forward_s": _median_time(lambda: lstm(x, lengths=lengths), repeat),
        "reference_forward_s": _median_time(
            lambda: reference.lstm_forward(params64, cfg, x, lengths=lengths), repeat),
        "lstmx_train_s": _median_time(lstmx_train, repeat),
        "reference_train_s": _median_time(reference_train, repeat),
    }


def _setup_line() -> str:
    """Which kernel variant runs and on how many threads: what the times depend on."""
    from threadpoolctl import threadpool_info

    from lstmx import _dispatch
    from lstmx._bench_machine import pool_label

    pools = "; ".join(pool_label(p) for p in threadpool_info())
    return (f"kernel variant: {_dispatch.variant} (available: {', '.join(_dispatch.available())};"
            f" LSTMX_KERNELS chooses); threads: {pools or 'no thread pool found'}")


def main(repeat=5) -> int:
    """Print the table; return 1 if an error is far above the dtype's precision."""
    header = (f"{'dtype':8} {'case':34} {'fwd err':>9} {'bwd err':>9} {'fwd ms':>8} "
              f"{'ref fwd':>8} {'train ms':>9} {'ref train':>9} {'speed-up':>8}")
    print("lstmx check: kernels vs the NumPy reference (float64), relative max errors, "
          "median times")
    print(_setup_line())
    print(header)
    print("-" * len(header))
    ok = True
    for dtype in (np.float32, np.float64):
        # Far above rounding: a wrong answer, not float noise.
        limit = 1e-4 if dtype == np.float32 else 1e-10
        for name, options, T, B in CASES:
            r = check_case(options, T, B, dtype, repeat)
            ok &= r["forward_error"] < limit and r["backward_error"] < limit
            print(f"{np.dtype(dtype).name:8} {name:34} {r['forward_error']:9.1e} "
                  f"{r['backward_error']:9.1e} {1e3 * r['lstmx_forward_s']:8.3f} "
                  f"{1e3 * r['reference_forward_s']:8.3f} {1e3 * r['lstmx_train_s']:9.3f} "
                  f"{1e3 * r['reference_train_s']:9.3f} "
                  f"{r['reference_train_s'] / r['lstmx_train_s']:7.1f}x")
    print("OK: errors at float precision" if ok else "FAILED: an error is above precision")
    return 0 if ok else 1
