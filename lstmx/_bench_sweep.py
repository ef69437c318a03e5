"""The shape sweep of ``python -m lstmx bench --sweep``: lstmx against torch and against its own
baseline kernel variant, one axis at a time around a base shape.

A full cross product of the axes (6 x 8 x 4 x 3 shapes, each forward and training) would take
hours; a cliff shows as well when one of I, H, B, T moves while the others stay at the base
shape, so the sweep runs the base shape and then each axis's other values (``sweep_configs``).
lstmx, torch and lstmx on its baseline kernel variant (``lstmx-baseline``: the engine's
kernels swapped for each of its samples) are measured side by side in this process,
interleaved, and each ratio pairs the samples of a round (``ratios``). So all three run under
the same conditions: torch's threads spinning after its calls slow the next call of either
variant alike, which a baseline timed alone in another process did not share.
"""
from __future__ import annotations

import dataclasses

from lstmx._bench_impls import BenchConfig, UnavailableError, build_impl
from lstmx._bench_machine import limit_threads
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


def run_sweep(base=None, axes=None, impls=("lstmx", "torch"), dtype="float32", threads=2,
              baseline=True, retries=1, progress=None, **timing) -> dict:
    """Measure every shape of ``sweep_configs(base, axes)``, forward and training.

    ``timing`` goes to ``measure`` (repeat, warmup, min_time, warm_time, gap, max_time).
    Returns (JSON-ready) ``base``, ``axes``, ``baseline_variant`` (or ``baseline_error``) and
    ``rows``: one per shape with ``axis``, ``value``, ``config``, ``unavailable`` and, per
    mode, ``timings[mode][impl]`` (``median_s``, ``spread``, ``samples_s``, ``number``) and
    ``ratios[mode][impl]``: ``time(impl) / time(lstmx)``, paired by round (``lstmx-baseline``
    among them unless ``baseline`` is false).
    """
    from lstmx import _dispatch

    shapes = sweep_configs(base, axes)
    configs = [c for _, _, c in shapes]
    if baseline and BASELINE not in impls:
        impls = (*impls, BASELINE)
    limit_threads(threads)
    results, unavailable = _measure_shapes(configs, impls, dtype, threads, timing, retries,
                                           progress)
    out = {"base": dict(SWEEP_BASE if base is None else base),
           "axes": {k: list(v) for k, v in (SWEEP_AXES if axes is None else axes).items()},
           "variant": _dispatch.variant, "rows": []}
    if baseline:
        why = next((u[BASELINE] for u in unavailable.values() if BASELINE in u), None)
        if why is not None:
            out["baseline_error"] = why
        else:
            out["baseline_variant"] = "baseline"
    for axis, value, config in shapes:
        row = {"axis": axis, "value": value, "config": dataclasses.asdict(config),
               "unavailable": unavailable[config.name], "timings": {}, "ratios": {}}
        for mode, r in results[config.name].items():
            row["timings"][mode] = dict(r["timings"])
            row["ratios"][mode] = dict(r["ratios"])
        out["rows"].append(row)
    return out
