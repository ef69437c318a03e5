"""One bench run: every implementation on every configuration, side by side, as JSON-ready data.

Round-robin over the implementations at each repetition, after warm-up, with the same thread
count for every library; medians and the ratios ``time(other) / time(lstmx)`` (within each
round, median over the rounds; above 1: lstmx is faster); each rate as a fraction of this
CPU's FMA peak; the peak memory of a training step in a fresh subprocess per implementation;
optionally the shape sweep. What each number means: ``docs/performance.md``.

The result (``SCHEMA``; what ``--json`` writes):

- ``schema``, ``settings`` (dtype, threads, repeat, warmup, min_time_s, warm_time_s, gap_s,
  max_time_s, retries, seed, impls, modes), ``configs`` (name -> ``BenchConfig`` fields),
  ``machine`` (cpu, cpu_count, platform, kernel_variant, versions, threadpools, threads,
  torch_threads, cpu_flags, loadavg_1min before/after).
- ``results[config][mode][impl]``: ``median_s``, ``spread`` (interquartile range / median),
  ``samples_s``, ``number`` (calls per sample); mode is ``forward`` or ``train``.
- ``ratios[config][mode][impl]`` (paired by round) and ``ratios_of_medians`` likewise;
  ``discarded[config][mode]``: the noisy attempts measured again, each
  ``{impl: {median_s, spread}}``.
- ``peak``: ``{isa, accumulators, gflops: {dtype: {threads: GFLOP/s}}}`` or ``{error}``, or
  None when not measured; ``rates_gflops[config][mode][impl]`` and
  ``peak_fraction[config][mode][impl]`` (of the peak on ``settings.threads``, in the dtype).
  With reduced-precision implementations also ``peak["dot"]``, what
  ``lstmx._bench_machine.dot_peak`` returns, and ``dot_peak_fraction[config][mode][impl]``:
  each one's multiply-adds a second (half its ``rates_gflops``) as a fraction of its
  instruction's peak on ``settings.threads`` (``_bench_quantized.DOT_KIND``).
- ``agreement[config][impl]``: relative max difference of the forward output from that of
  the implementation computing the same function (lstmx's; lstmx-layernorm's for
  torch-layernorm; none for lstmx-layernorm and lstmx-zoneout, other functions);
  ``max_abs_error[config][impl]``: its max abs difference (the error of a reduced-precision
  implementation against lstmx's float32 output);
  ``unavailable[config][impl]``: why an implementation could not run.
- ``memory``: None, or ``{config, steps, impl: {growth_mib, step_growth_mib, baseline_mib,
  method, steps} or {error}}``.
- ``sweep``: None, or what ``lstmx._bench_sweep.run_sweep`` returns.
- ``targets`` (only with ``--check``): rows of ``lstmx._bench_targets.evaluate_targets``.

Version 3 dropped ``gemm`` and the built-in targets, and added ``peak``, ``rates_gflops``,
``peak_fraction``, ``sweep`` and ``machine.kernel_variant`` (later, ``peak["dot"]`` and
``dot_peak_fraction``).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from lstmx._bench_impls import (DEFAULT_CONFIGS, DEFAULT_IMPLS, REGULARISED_IMPLS,
                                UnavailableError, build_impl)
from lstmx._bench_machine import dot_peak, fma_peak, limit_threads, loadavg, machine_info
from lstmx._bench_memory import measure_memory
from lstmx._bench_quantized import DOT_KIND, QUANTIZED_IMPLS, max_abs_error
from lstmx._bench_sweep import run_sweep
from lstmx._bench_timing import measure_settled, ratios, ratios_of_medians
from lstmx._check import rel_err

__all__ = ["SCHEMA", "run_benchmarks", "jsonable"]

SCHEMA = "lstmx-bench/3"


def _log(progress, msg):
    if progress is not None:
        progress(msg)


def _rates(out, cname, config, mode, dtype, threads):
    """Flop rates of a mode's timings and their fractions of the FMA peak (of the dot-product
    peak for the reduced-precision implementations)."""
    flops = config.forward_flops() if mode == "forward" else config.train_flops()
    rates = {n: flops / t["median_s"] / 1e9 for n, t in out["results"][cname][mode].items()}
    out["rates_gflops"].setdefault(cname, {})[mode] = rates
    peak = (out["peak"] or {}).get("gflops", {}).get(dtype.name, {}).get(str(threads))
    if peak:
        out["peak_fraction"].setdefault(cname, {})[mode] = {
            n: r / peak for n, r in rates.items() if n not in DOT_KIND}
    dots = (out["peak"] or {}).get("dot", {})
    fractions = {n: r / 2 / dots[DOT_KIND[n]]["gmacs"][str(threads)] for n, r in rates.items()
                 if n in DOT_KIND and "gmacs" in dots.get(DOT_KIND[n], {})}
    if fractions:
        out["dot_peak_fraction"].setdefault(cname, {})[mode] = fractions


def run_benchmarks(configs=None, impls=DEFAULT_IMPLS, dtype=np.float32, threads=2,
                   repeat=11, warmup=1, min_time=0.02, warm_time=0.5, gap=0.2,
                   max_time=60.0, retries=2, memory_config="L", memory_steps=2,
                   peak=True, peak_time=0.2, sweep=None, seed=0, progress=None,
                   modes=("forward", "train")) -> dict:
    """Time every implementation on every configuration; see the module docstring.

    Parameters
    ----------
    configs : dict of name -> BenchConfig, optional
        Default: ``DEFAULT_CONFIGS``; ``{}`` for none (a sweep alone).
    impls : sequence of str
        Among ``IMPLEMENTATIONS`` and ``QUANTIZED_IMPLS``; those that cannot run here are
        reported as unavailable. Each one's forward output is compared with that of the
        implementation it computes the same as (``same_output_as``), when that one runs too.
    retries : int
        How many times a measurement with a noisy timing is measured again (see
        ``measure_settled``).
    memory_config : str or None
        Name in ``configs`` on which to measure the training memory (subprocesses); None
        (or a name not in ``configs``) skips it.
    peak, peak_time : bool, float
        Measure the FMA peak (runs of about ``peak_time`` seconds).
    sweep : dict, optional
        Run the shape sweep too, with these ``run_sweep`` options (``base``, ``axes``,
        ``baseline``); its timing settings are the run's.
    progress : callable(str), optional
        Receives a line before each measurement.
    modes : tuple of str
        What to time: ``"forward"`` (inference) and/or ``"train"`` (forward and backward).
    """
    configs = dict(DEFAULT_CONFIGS if configs is None else configs)
    dtype = np.dtype(dtype)
    limit_threads(threads)
    load_before = loadavg()
    t_start = time.perf_counter()
    timing = dict(repeat=repeat, warmup=warmup, min_time=min_time, warm_time=warm_time,
                  gap=gap, max_time=max_time)
    out = {"schema": SCHEMA, "settings": {
        "dtype": dtype.name, "threads": threads, "repeat": repeat, "warmup": warmup,
        "min_time_s": min_time, "warm_time_s": warm_time, "gap_s": gap,
        "max_time_s": max_time, "retries": retries, "seed": seed, "impls": list(impls),
        "modes": list(modes)},
        "configs": {n: dataclasses.asdict(c) for n, c in configs.items()},
        "results": {}, "ratios": {}, "ratios_of_medians": {}, "discarded": {},
        "rates_gflops": {}, "peak_fraction": {}, "dot_peak_fraction": {}, "agreement": {},
        "max_abs_error": {},
        "unavailable": {},
        "peak": None, "memory": None, "sweep": None}

    def log(msg):
        _log(progress, f"{time.perf_counter() - t_start:6.0f} s  {msg}")

    if peak:
        log(f"FMA peak on 1 and {threads} threads")
        out["peak"] = fma_peak(threads, seconds=peak_time)
        if "error" not in out["peak"] and any(i in DOT_KIND for i in impls):
            log(f"dot-product peaks on 1 and {threads} threads")
            out["peak"]["dot"] = dot_peak(threads, seconds=peak_time)
    available = set()
    for cname, config in configs.items():
        built, unavailable = {}, {}
        for impl in impls:
            try:
                built[impl] = build_impl(impl, config, dtype, seed, threads)
            except UnavailableError as err:
                unavailable[impl] = str(err)
        limit_threads(threads)  # torch may have been imported just now
        available.update(built)
        out["unavailable"][cname] = unavailable
        outputs = {n: o.output() for n, o in built.items()}
        same = {n: o.same_output_as for n, o in built.items()
                if n != "lstmx" and o.same_output_as in outputs}
        out["agreement"][cname] = {n: rel_err(outputs[n], outputs[s]) for n, s in same.items()}
        out["max_abs_error"][cname] = {n: max_abs_error(outputs[n], outputs[s])
                                       for n, s in same.items()}
        ops_of = {"forward": {n: (o.forward, lambda o=o: o.context("forward"))
                             for n, o in built.items()},
                 "train": {n: (o.train, lambda o=o: o.context("train"))
                           for n, o in built.items() if o.trainable}}
        for key in ("results", "ratios", "ratios_of_medians", "discarded"):
            out[key][cname] = {}
        for mode, ops in ops_of.items():
            if not ops or mode not in modes:
                continue
            log(f"{cname} {mode}: {', '.join(ops)}")
            timings, discarded = measure_settled(
                ops, retries, lambda noisy, cname=cname, mode=mode: log(
                    f"{cname} {mode}: noisy (" + ", ".join(
                        f"{n} {v:.0%}" for n, v in noisy.items()) + "), measuring again"),
                **timing)
            if discarded:
                out["discarded"][cname][mode] = [
                    {n: {"median_s": t.median, "spread": t.spread} for n, t in d.items()}
                    for d in discarded]
            out["results"][cname][mode] = {
                n: {"median_s": t.median, "spread": t.spread, "samples_s": t.samples,
                    "number": t.number}
                for n, t in timings.items()}
            out["ratios"][cname][mode] = ratios(timings)
            out["ratios_of_medians"][cname][mode] = ratios_of_medians(timings)
            _rates(out, cname, config, mode, dtype, threads)
        del built
    if memory_config in configs:
        mem = {"config": memory_config, "steps": memory_steps}
        for impl in impls:
            if (impl in ("onnxruntime", "lstmx-peephole") + QUANTIZED_IMPLS + REGULARISED_IMPLS
                    or impl not in available):
                continue  # inference only, not compared, or n/a in this process
            log(f"{memory_config} training memory: {impl} (subprocess)")
            mem[impl] = measure_memory(impl, configs[memory_config], dtype, threads,
                                       memory_steps)
        out["memory"] = mem
    if sweep is not None:
        out["sweep"] = run_sweep(dtype=dtype.name, threads=threads, retries=retries,
                                 progress=log, **sweep, **timing)
    out["machine"] = machine_info(threads)
    # Other work on a shared machine slows multi-threaded code most (OpenMP barriers).
    out["machine"]["loadavg_1min"] = {"before": load_before, "after": loadavg()}
    # The costs lstmx's plan chose its teams from: measured in a burst of other work, they
    # put the threaded drivers on one thread (until measured again; docs/performance.md).
    from lstmx._dispatch import kernels
    out["machine"]["plan_costs"] = {str(n): c for n, c in kernels.plan_costs().items()}
    # How often a team's call waited most of its time (another process or the host had a
    # core) and the next calls ran on one thread: in this process, the run and its sweep.
    out["machine"]["teams_turned_off"] = kernels.teams_off()[1]
    return out


def jsonable(obj):
    """``obj`` with NumPy scalars made Python ones and keys made strings, for ``json``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
