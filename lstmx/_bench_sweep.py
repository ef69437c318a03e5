"""The shape sweep of ``python -m lstmx bench --sweep``: lstmx against torch and against its own
baseline kernel variant, one axis at a time around a base shape.

A full cross product of the axes (6 x 8 x 4 x 3 shapes, each forward and training) would take
hours; a cliff shows as well when one of I, H, B, T moves while the others stay at the base
shape, so the sweep runs the base shape and then each axis's other values (``sweep_configs``).
lstmx and torch are measured side by side in this process, interleaved, and their ratio
pairs the samples of each round (``ratios``). The baseline variant (``LSTMX_KERNELS=baseline``,
chosen when lstmx is imported) runs in one child process, shape after shape, after this
process has finished; its ratio is one of medians, measured minutes apart, so it carries the
drift of the machine that the paired ratios cancel.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

from lstmx._bench_impls import BenchConfig, UnavailableError, build_impl
from lstmx._bench_machine import limit_threads
from lstmx._bench_memory import child_env
from lstmx._bench_timing import measure_settled, ratios

__all__ = ["SWEEP_BASE", "SWEEP_AXES", "ASV_AXES", "BASELINE", "sweep_configs", "parse_grid",
           "run_sweep"]

# Base shape: a mid-size layer of the sizes papers and tutorials use (H = 100 is not a
# multiple of any vector width), a small batch and a long sequence.
SWEEP_BASE = {"T": 200, "B": 8, "I": 32, "H": 100}
# Around and across multiples of the vector widths (1, 31, 32, 33, 63, 257), the sizes most
# used (50, 100, 300), one univariate series (I = 1), and T = 1 (all overhead).
SWEEP_AXES = {"I": (1, 3, 31, 32, 33, 100), "H": (1, 17, 32, 50, 63, 100, 257, 300),
              "B": (1, 3, 8, 33), "T": (1, 7, 200)}
# The asv suite's smaller sweep: one value on each side of a cliff per axis.
ASV_AXES = {"I": (1, 32, 33), "H": (17, 63, 100, 257), "B": (1, 33), "T": (1, 200)}
BASELINE = "lstmx-baseline"


def _name(shape) -> str:
    return f"T{shape['T']}-B{shape['B']}-I{shape['I']}-H{shape['H']}"


def sweep_configs(base=None, axes=None) -> list:
    """``(axis, value, BenchConfig)`` for the base shape (axis "base") and then, axis by axis,
    every value that differs from the base's."""
    base = dict(SWEEP_BASE if base is None else base)
    axes = SWEEP_AXES if axes is None else axes
    out = [("base", None, BenchConfig(_name(base), **base))]
    for axis, values in axes.items():
        for v in values:
            if v != base[axis]:
                shape = dict(base, **{axis: v})
                out.append((axis, v, BenchConfig(_name(shape), **shape)))
    return out


def parse_grid(text: str, default: dict) -> dict:
    """``"I=1,32 H=17"`` -> default with those axes replaced (values positive integers)."""
    out = dict(default)
    for part in text.replace(";", " ").split():
        axis, sep, values = part.partition("=")
        if not sep or axis not in SWEEP_BASE:
            raise ValueError(f"expected AXIS=v1,v2 with AXIS one of {', '.join(SWEEP_BASE)}; "
                             f"got {part!r}")
        try:
            parsed = tuple(int(v) for v in values.split(",") if v)
        except ValueError:
            parsed = ()
        if not parsed or min(parsed) < 1:
            raise ValueError(f"{axis} takes positive integers; got {values!r}")
        out[axis] = parsed
    return out


def _timing_dict(t):
    return {"median_s": t.median, "spread": t.spread, "samples_s": t.samples,
            "number": t.number}


def _measure_shapes(configs, impls, dtype, threads, timing, retries, progress):
    """{config name: {mode: {impl: timing dict}}} and {config name: {impl: why n/a}}."""
    results, unavailable = {}, {}
    for config in configs:
        built, missing = {}, {}
        for impl in impls:
            try:
                built[impl] = build_impl(impl, config, dtype, threads=threads)
            except UnavailableError as err:
                missing[impl] = str(err)
        limit_threads(threads)
        unavailable[config.name] = missing
        results[config.name] = {}
        for mode in ("forward", "train"):
            ops = {n: ((o.forward if mode == "forward" else o.train),
                       lambda o=o, mode=mode: o.context(mode)) for n, o in built.items()}
            if progress is not None:
                progress(f"sweep {config.name} {mode}: {', '.join(ops)}")
            timings, _ = measure_settled(ops, retries, **timing)
            results[config.name][mode] = {
                "timings": {n: _timing_dict(t) for n, t in timings.items()},
                "ratios": ratios(timings)}
    return results, unavailable


def _child_main():
    """The baseline child: measure lstmx alone on the shapes of argv[1]; print JSON."""
    from lstmx import _dispatch

    a = json.loads(sys.argv[1])
    limit_threads(a["threads"])
    configs = [BenchConfig(**c) for c in a["configs"]]
    results, unavailable = _measure_shapes(configs, ["lstmx"], a["dtype"], a["threads"],
                                           a["timing"], a["retries"], None)
    print(json.dumps({"variant": _dispatch.variant, "results": results,
                      "unavailable": unavailable}))


def _run_baseline(configs, dtype, threads, timing, retries, timeout):
    """Results of ``_child_main`` run with ``LSTMX_KERNELS=baseline``, or ``{"error"}``."""
    args = json.dumps({"configs": [dataclasses.asdict(c) for c in configs], "dtype": dtype,
                       "threads": threads, "timing": timing, "retries": retries})
    code = "from lstmx._bench_sweep import _child_main; _child_main()"
    try:
        proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True,
                              text=True, env=child_env(LSTMX_KERNELS="baseline"),
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the baseline process passed {timeout} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_sweep(base=None, axes=None, impls=("lstmx", "torch"), dtype="float32", threads=2,
              baseline=True, retries=1, timeout=3600, progress=None, **timing) -> dict:
    """Measure every shape of ``sweep_configs(base, axes)``, forward and training.

    ``timing`` goes to ``measure`` (repeat, warmup, min_time, warm_time, gap, max_time).
    Returns (JSON-ready) ``base``, ``axes``, ``baseline_variant`` (or ``baseline_error``) and
    ``rows``: one per shape with ``axis``, ``value``, ``config``, ``unavailable`` and, per
    mode, ``timings[mode][impl]`` (``median_s``, ``spread``, ``samples_s``, ``number``) and
    ``ratios[mode][impl]``: ``time(impl) / time(lstmx)``, paired by round for the
    implementations of this process, a ratio of medians for ``lstmx-baseline``.
    """
    from lstmx import _dispatch

    shapes = sweep_configs(base, axes)
    configs = [c for _, _, c in shapes]
    limit_threads(threads)
    results, unavailable = _measure_shapes(configs, impls, dtype, threads, timing, retries,
                                           progress)
    out = {"base": dict(SWEEP_BASE if base is None else base),
           "axes": {k: list(v) for k, v in (SWEEP_AXES if axes is None else axes).items()},
           "variant": _dispatch.variant, "rows": []}
    child = {}
    if baseline:
        if progress is not None:
            progress(f"sweep: the baseline kernels on {len(configs)} shapes (subprocess)")
        started = time.perf_counter()
        child = _run_baseline(configs, dtype, threads, timing, retries, timeout)
        out["baseline_seconds"] = time.perf_counter() - started
        if "error" in child:
            out["baseline_error"] = child["error"]
        else:
            out["baseline_variant"] = child["variant"]
    for axis, value, config in shapes:
        row = {"axis": axis, "value": value, "config": dataclasses.asdict(config),
               "unavailable": unavailable[config.name], "timings": {}, "ratios": {}}
        for mode, r in results[config.name].items():
            row["timings"][mode] = dict(r["timings"])
            row["ratios"][mode] = dict(r["ratios"])
            base_t = child.get("results", {}).get(config.name, {}).get(mode, {}).get(
                "timings", {}).get("lstmx")
            ours = r["timings"].get("lstmx")
            if base_t is not None and ours is not None:
                row["timings"][mode][BASELINE] = base_t
                row["ratios"][mode][BASELINE] = base_t["median_s"] / ours["median_s"]
        out["rows"].append(row)
    return out
