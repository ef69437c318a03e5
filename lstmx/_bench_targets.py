"""Checks a bench result against performance targets read from a JSON file.

The package holds no thresholds: a project keeps its own in a file (lstmx's are in
``benchmarks/targets.json``) and checks a run with ``python -m lstmx bench --check FILE``, or a
saved ``--json`` result with ``python benchmarks/check_targets.py RESULT``. Every target is a
ratio or a fraction measured side by side on one machine, never an absolute time.

A targets file is ``{"schema": "lstmx-targets/1", "targets": [...]}``; each target has a
``name``, a ``metric``, one bound (``">="`` or ``"<="``) and the fields its metric reads:

``ratio``
    ``ratios[config][mode][impl]``: ``time(impl) / time(lstmx)``, for each of ``configs``.
``peak_fraction``
    ``peak_fraction[config][mode][impl]``: the rate as a fraction of the FMA peak on the run's
    threads, for each of ``configs``; with ``threads``, only for a run on that many threads.
``memory_ratio``
    ``memory[impl]["growth_mib"] / memory[vs]["growth_mib"]``.
``sweep_min_ratio``
    The smallest ``ratios[mode][impl]`` over the shapes of a ``--sweep`` run, per mode of
    ``modes``.
``speedup``
    ``time(vs) / time(impl)`` within a round, median over the rounds (``results[config][mode]``
    samples), for each of ``configs``: how much faster ``impl`` is than ``vs``.
``error_ratio``
    ``max_abs_error[config][impl] / max_abs_error[config][vs]`` (errors against lstmx's
    float32 output), for each of ``configs``.

Any target may also have ``threads`` (only a run on that many threads is checked) and
``cpu_flag`` (a feature of ``/proc/cpuinfo``'s flags, e.g. ``avx512_bf16``: on a CPU without
it the target reads "n/a", and its name says why).

A target is listed only for what the run was asked to measure (its configurations and
implementations, a sweep, a memory measurement); asked for but not measurable (a library
missing here, say), it reads "n/a".
"""
from __future__ import annotations

import json

import numpy as np

__all__ = ["TARGETS_SCHEMA", "load_targets", "evaluate_targets", "format_targets",
           "any_failed", "speedup"]

TARGETS_SCHEMA = "lstmx-targets/1"
_METRICS = {"ratio", "peak_fraction", "memory_ratio", "sweep_min_ratio", "speedup",
            "error_ratio"}


def load_targets(path) -> list:
    """The targets of a file, checked for the fields their metric needs."""
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("schema") != TARGETS_SCHEMA:
        raise ValueError(f"{path}: expected a JSON object with schema {TARGETS_SCHEMA!r}; "
                         f"got schema {doc.get('schema') if isinstance(doc, dict) else None!r}")
    needs = {"ratio": ("configs", "mode", "impl"), "peak_fraction": ("configs", "mode", "impl"),
             "memory_ratio": ("impl", "vs"), "sweep_min_ratio": ("modes", "impl"),
             "speedup": ("configs", "mode", "impl", "vs"),
             "error_ratio": ("configs", "impl", "vs")}
    for i, t in enumerate(doc.get("targets", [])):
        where = f"{path}: target {i} ({t.get('name', 'unnamed')})"
        if t.get("metric") not in _METRICS:
            raise ValueError(f"{where}: metric must be one of {sorted(_METRICS)}; "
                             f"got {t.get('metric')!r}")
        missing = [k for k in ("name",) + needs[t["metric"]] if k not in t]
        bounds = [k for k in (">=", "<=") if k in t]
        if missing or len(bounds) != 1:
            raise ValueError(f"{where}: needs {missing or 'its fields'} and exactly one of "
                             f"'>=', '<='; got keys {sorted(t)}")
    return doc["targets"]


def _get(tree, *keys):
    for k in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(k)
    return tree


def _asked(res, impl) -> bool:
    return impl in (res.get("settings") or {}).get("impls", ())


def speedup(res, config, mode, impl, vs):
    """``time(vs) / time(impl)`` paired by round, median over the rounds (as
    ``_bench_timing.ratios``), from a result's samples; None if either was not timed."""
    timings = _get(res, "results", config, mode) or {}
    if impl not in timings or vs not in timings:
        return None
    num = np.asarray(timings[vs]["samples_s"], dtype=float)
    den = np.asarray(timings[impl]["samples_s"], dtype=float)
    if len(num) != len(den) or not len(num):
        return None
    return float(np.median(num / den))


def _measurements(target, res):
    """(label, value) pairs of one target on the result: value None when asked for but not
    measured; nothing for what the run did not ask for."""
    metric = target["metric"]
    if "threads" in target and _get(res, "settings", "threads") != target["threads"]:
        return []
    if metric in ("speedup", "error_ratio"):
        if not (_asked(res, target["impl"]) and _asked(res, target["vs"])):
            return []
        out = []
        for c in target["configs"]:
            if c not in (res.get("configs") or {}):
                continue
            if metric == "speedup":
                value = speedup(res, c, target["mode"], target["impl"], target["vs"])
            else:
                num, den = (_get(res, "max_abs_error", c, i)
                            for i in (target["impl"], target["vs"]))
                value = num / den if num is not None and den else None
            out.append((c, value))
        return out
    if metric in ("ratio", "peak_fraction"):
        if not _asked(res, target["impl"]):
            return []
        key = "ratios" if metric == "ratio" else "peak_fraction"
        return [(c, _get(res, key, c, target["mode"], target["impl"]))
                for c in target["configs"] if c in (res.get("configs") or {})]
    if metric == "memory_ratio":
        mem = res.get("memory")
        if not mem or not (_asked(res, target["impl"]) and _asked(res, target["vs"])):
            return []
        num, den = (_get(mem, k, "growth_mib") for k in (target["impl"], target["vs"]))
        value = num / den if num is not None and den is not None and den > 0 else None
        return [(mem.get("config", ""), value)]
    sweep = res.get("sweep")
    if not sweep:
        return []
    out = []
    for mode in target["modes"]:
        values = [r for row in sweep["rows"]
                  if (r := _get(row, "ratios", mode, target["impl"])) is not None]
        out.append((mode, min(values) if values else None))
    return out


def evaluate_targets(res: dict, targets: list) -> list:
    """One row per target and configuration (or mode) the run measured: ``name``,
    ``measured`` (None when not measurable here), ``threshold``, ``comparison`` and
    ``status`` ("PASS", "FAIL" or "n/a")."""
    rows = []
    flags = _get(res, "machine", "cpu_flags")
    for target in targets:
        comparison = ">=" if ">=" in target else "<="
        threshold = float(target[comparison])
        flag = target.get("cpu_flag")
        lacking = flag is not None and not (flags or {}).get(flag)
        for label, value in _measurements(target, res):
            if lacking:
                why = "has no" if flags is not None else "does not say if it has"
                status, value = "n/a", None
                label = f"{label} (n/a: the CPU {why} {flag})"
            elif value is None or not np.isfinite(value):
                status, value = "n/a", None
            elif comparison == ">=":
                status = "PASS" if value >= threshold else "FAIL"
            else:
                status = "PASS" if value <= threshold else "FAIL"
            rows.append({"name": f"{target['name']}, {label}" if label else target["name"],
                         "measured": value, "threshold": threshold,
                         "comparison": comparison, "status": status})
    return rows


def format_targets(rows: list) -> str:
    """The rows as the report prints them."""
    lines = ["targets:"]
    for t in rows:
        value = "n/a" if t["measured"] is None else f"{t['measured']:.3g}"
        lines.append(f"  {t['status']:4}  {t['name']:56} {value:>8}  "
                     f"(target {t['comparison']} {t['threshold']:g})")
    counts = {s: sum(t["status"] == s for t in rows) for s in ("PASS", "FAIL", "n/a")}
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def any_failed(rows: list) -> bool:
    """Whether a measured value missed its target (n/a rows do not count)."""
    return any(t["status"] == "FAIL" for t in rows)
