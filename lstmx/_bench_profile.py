"""``python -m lstmx bench --profile``: where lstmx's forward and backward passes spend their time.

The layer drivers carry phase timers (``_phases.pxi`` in the kernels), off unless asked for.
For each configuration this runs lstmx's inference forward, training forward and backward a
few times with the timers on, and splits each pass's wall time into the kernels' phases:

- input projection: x @ W.T (backward: dx = dz @ W), with the packing of W;
- recurrent products: h @ U.T and m @ R.T (backward: dz @ U and dh @ R), with the packing of U;
- cell (element-wise): the gates, c_t and h_t, and the bookkeeping of rows;
- weight gradients: dW, dU, dR and db (backward only), with the packing of their operands;
- synchronisation: time threads wait at barriers for each other;
- outside the drivers: the rest of the wall time (validation, allocation, copies, the
  Python layers, and the phases' own clock reads).

A phase's time is the mean over the threads that ran the drivers (two directions side by side
count as two threads). A product that runs on its own OpenMP team (the inference input
projection) is timed by the thread that called it.
"""
from __future__ import annotations

import time

import numpy as np

from lstmx._bench_impls import build_impl
from lstmx._bench_machine import cpu_model, limit_threads

__all__ = ["run_profile", "format_profile", "MODES"]

MODES = ("forward", "forward_train", "backward")


def _profile_call(kernels, fn, min_time: float, min_calls: int) -> dict:
    """Run ``fn`` until ``min_time`` seconds and ``min_calls`` calls have passed, with the
    phase timers on; per call: wall seconds and each phase's seconds (mean over threads)."""
    fn()  # warm: packing buffers, pools and caches as in a steady state
    kernels.profile_phases(True)
    try:
        calls, start = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - start < min_time:
            fn()
            calls += 1
        wall = (time.perf_counter() - start) / calls
        per_thread = kernels.phase_times()
    finally:
        kernels.profile_phases(False)
    rows = np.array(list(per_thread.values()), dtype=float).reshape(-1, len(kernels.PHASE_NAMES))
    phases = rows.mean(axis=0) / calls if len(rows) else np.zeros(len(kernels.PHASE_NAMES))
    busiest = rows.sum(axis=1).max() / calls if len(rows) else 0.0
    return {"calls": calls, "wall_s": wall, "threads_recorded": len(rows),
            "phases_s": dict(zip(kernels.PHASE_NAMES, phases.tolist())),
            "outside_s": max(wall - busiest, 0.0)}


def run_profile(configs: dict, threads: int = 2, dtype=np.float32, min_time: float = 0.5,
                min_calls: int = 3, seed: int = 0, progress=None) -> dict:
    """The phase split of lstmx's passes on each of ``configs`` (name -> BenchConfig).

    Returns ``{"threads", "dtype", "cpu", "variant", "configs": {name: {mode: {...}}}}`` with
    modes ``MODES`` (the cell configuration has no layer driver and is skipped).
    """
    from lstmx._dispatch import kernels, variant

    limit_threads(threads)
    out = {"threads": threads, "dtype": np.dtype(dtype).name, "cpu": cpu_model(),
           "variant": variant, "phases": list(kernels.PHASE_NAMES), "configs": {}}
    for name, config in configs.items():
        if config.cell:
            continue
        if progress is not None:
            progress(f"profile {name}")
        impl = build_impl("lstmx", config, dtype, seed, threads)
        impl.prepare_backward()
        calls = {"forward": impl.forward, "forward_train": impl.forward_train,
                 "backward": impl.backward}
        out["configs"][name] = {mode: _profile_call(kernels, calls[mode], min_time, min_calls)
                                for mode in MODES}
    return out


def format_profile(prof: dict) -> str:
    """The profile as a table: per configuration and pass, ms per call and % of wall time."""
    phases = prof["phases"]
    short = {"input projection": "input", "recurrent products": "recurrent",
             "cell (element-wise)": "cell", "weight gradients": "dW,dU,db",
             "synchronisation": "sync"}
    head = (f"{'config':8} {'pass':14} {'wall ms':>9} "
            + " ".join(f"{short.get(p, p):>15}" for p in phases) + f" {'outside':>15}")
    lines = [f"lstmx phase profile: {prof['cpu']}, {prof['variant']} kernels, "
             f"{prof['threads']} thread(s), {prof['dtype']}; ms per call (% of wall time), "
             "each phase the mean over the threads that ran it", head]
    for name, modes in prof["configs"].items():
        for mode, r in modes.items():
            wall = r["wall_s"]

            def cell(seconds):
                return f"{seconds * 1e3:7.3f} ({seconds / wall:4.0%})"

            lines.append(f"{name:8} {mode:14} {wall * 1e3:9.3f} "
                         + " ".join(f"{cell(r['phases_s'][p]):>15}" for p in phases)
                         + f" {cell(r['outside_s']):>15}")
    return "\n".join(lines)
