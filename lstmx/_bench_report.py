"""The text report of a bench result: machine, times, ratios, reduced-precision speedups and
errors, fractions of the FMA and dot-product peaks, sweep, targets."""
from __future__ import annotations

from lstmx._bench_impls import IMPLEMENTATIONS, BenchConfig
from lstmx._bench_machine import pool_label
from lstmx._bench_quantized import QUANTIZED_IMPLS
from lstmx._bench_sweep import BASELINE
from lstmx._bench_targets import format_targets, speedup
from lstmx._bench_timing import NOISY

__all__ = ["fmt_time", "format_report", "format_sweep"]

# The libraries whose rates are reported against the FMA peak.
_PEAK_IMPLS = ("lstmx", "torch", "onnxruntime")
_NOISY_MARK = (f"* = noisy: the interquartile range of lstmx's or the other's samples is above "
               f"{NOISY:.0%} of the median")


def fmt_time(seconds) -> str:
    if seconds is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_ratio(ratio, timings, impl) -> str:
    """``1.23x``, with ``*`` when either side of it was noisy."""
    if ratio is None:
        return "n/a"
    noisy = any(timings.get(i, {}).get("spread", 0) > NOISY for i in ("lstmx", impl))
    return f"{ratio:.2f}x" + ("*" if noisy else "")


def _load_line(machine) -> str:
    load = machine.get("loadavg_1min") or {}
    before, after = load.get("before"), load.get("after")
    if before is None or after is None:
        return "load average: n/a"
    line = f"load average (1 min) before/after: {before:.2f}/{after:.2f}"
    if max(before, after) > 0.5 * (machine["cpu_count"] or 1):
        line += " -- the machine was busy: times are noisy, threaded ones most"
    return line


def _peak_lines(peak, threads) -> list:
    if not peak:
        return []
    if "error" in peak:
        return [f"FMA peak: n/a ({peak['error']})"]
    parts = [f"{dtype} " + ", ".join(f"{g:.1f} on {k} thread{'s' if k != '1' else ''}"
                                     for k, g in rates.items())
             for dtype, rates in peak["gflops"].items()]
    return [f"FMA peak ({peak['isa']} loop, {peak['accumulators']} accumulators, best of "
            f"its runs), GFLOP/s: " + "; ".join(parts),
            f"rates below are fractions of the peak on {threads} thread"
            f"{'s' if threads != 1 else ''}; flops: the matrix products, "
            "2 T B 4H (I + H) per layer and direction forward, 3x that for training"]


def _machine_lines(res) -> list:
    m, s = res["machine"], res["settings"]
    qp = m.get("quantized_products")
    products = f" (int8 on {qp['int8']}, bfloat16 on {qp['bfloat16']})" if qp else ""
    return [f"machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['platform']}; lstmx kernels: "
            f"{m.get('kernel_variant', 'n/a')}{products}",
            "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
            f"threads: {s['threads']} (torch: {m['torch_threads'] or 'n/a'}); pools: "
            + "; ".join(pool_label(p) for p in m["threadpools"]),
            f"dtype {s['dtype']}, up to {s['repeat']} interleaved repetitions (fewer past "
            f"{s['max_time_s']} s a measurement, at least {min(5, s['repeat'])}) after "
            f"{s['warmup']} warm-up round, zero initial state",
            _load_line(m)] + _plan_line(m)


def _plan_line(machine) -> list:
    costs = machine.get("plan_costs")
    if not costs or "1" not in costs:
        return []
    teams = "; ".join(f"{n} threads: {c['fma_s'] * 1e12:.0f} ps a thread, barrier "
                      f"{c['barrier_s'] * 1e6:.1f} us" for n, c in costs.items() if n != "1")
    off = machine.get("teams_turned_off")
    return [f"lstmx's plan costs (last measured): one thread {costs['1']['fma_s'] * 1e12:.0f} "
            f"ps a multiply-add" + (f"; {teams}" if teams else "")
            + (f"; teams turned off {off} times (a call that waited most of its time)"
               if off else "")]


def _times_table(res) -> list:
    impls = [i for i in IMPLEMENTATIONS + QUANTIZED_IMPLS if i in res["settings"]["impls"]]
    others = [i for i in impls if i != "lstmx"]
    header = (f"{'config':7} {'mode':8} " + " ".join(f"{i:>11}" for i in impls) + "  "
              + " ".join(f"{i + '/lstmx':>17}" for i in others))
    lines = [header, "-" * len(header)]
    for cname, modes in res["results"].items():
        for mode, timings in modes.items():
            times = " ".join(f"{fmt_time(timings.get(i, {}).get('median_s')):>11}"
                             for i in impls)
            rs = " ".join(f"{_fmt_ratio(res['ratios'][cname][mode].get(i), timings, i):>17}"
                          for i in others)
            lines.append(f"{cname:7} {mode:8} {times}  {rs}")
    lines.append(_NOISY_MARK)
    again = [f"{c} {m} ({len(ds)} discarded)" for c, modes in res.get("discarded", {}).items()
             for m, ds in modes.items()]
    if again:
        lines.append("measured again after a noisy attempt (the first attempt without a "
                     "noisy timing is kept, else the least noisy): " + ", ".join(again))
    return lines


# The comparisons of the reduced-precision table: (faster candidate, slower one).
_SPEEDUPS = (("lstmx-int8", "lstmx"), ("lstmx-int8", "onnxruntime-int8"),
             ("lstmx-int8", "onnxruntime-int8r"), ("lstmx-bf16", "lstmx"),
             ("onnxruntime-int8", "onnxruntime"))
_SHORT = {"lstmx": "f32", "lstmx-int8": "int8", "lstmx-bf16": "bf16", "onnxruntime": "ort",
          "onnxruntime-int8": "ort-int8", "onnxruntime-int8r": "ort-int8r"}


def _quantized_table(res) -> list:
    """Forward speedups of the reduced-precision implementations and their max abs errors
    against lstmx's float32 output."""
    asked = res["settings"]["impls"]
    if not any(i in asked for i in QUANTIZED_IMPLS):
        return []
    pairs = [(a, b) for a, b in _SPEEDUPS if a in asked and b in asked]
    errs = [i for i in ("onnxruntime",) + QUANTIZED_IMPLS if i in asked]
    cols = [f"{_SHORT[a]}/{_SHORT[b]}" for a, b in pairs]
    header = (f"{'config':7} " + " ".join(f"{c:>13}" for c in cols) + "  "
              + " ".join(f"{'err ' + _SHORT[i]:>13}" for i in errs))
    lines = ["", f"reduced precision, forward on {res['settings']['threads']} thread(s): "
                 "speedup a/b = time(b) / time(a) within a round, median over the rounds "
                 "(above 1: a is faster); err = max abs difference from lstmx float32's "
                 "output; " + ", ".join(f"{v} = {k}" for k, v in _SHORT.items()),
              header, "-" * len(header)]
    for cname in res["results"]:
        cells = []
        for a, b in pairs:
            r = speedup(res, cname, "forward", a, b)
            cells.append(f"{'n/a' if r is None else f'{r:.2f}x':>13}")
        errors = res.get("max_abs_error", {}).get(cname, {})
        cells.append(" " + " ".join(
            f"{'n/a' if errors.get(i) is None else f'{errors[i]:.2e}':>13}" for i in errs))
        lines.append(f"{cname:7} " + " ".join(cells))
    flags = res["machine"].get("cpu_flags")
    if flags is not None:
        have = [f for f, on in flags.items() if on]
        lines.append("CPU features: " + (", ".join(have) or "none of "
                                         + ", ".join(flags)) + "; lacking: "
                     + (", ".join(f for f, on in flags.items() if not on) or "none"))
    return lines


def _rate_rows(res, fractions, impls, unit, per_flop, width) -> list:
    """A header, a rule and a row per configuration and mode: each implementation's rate (its
    flop rate times ``per_flop``, in ``unit``) and its fraction of a peak."""
    header = (f"{'config':7} {'mode':8} "
              + " ".join(f"{i + ' ' + unit:>{width}} {'peak':>5}" for i in impls))
    lines = [header, "-" * len(header)]
    for cname, modes in fractions.items():
        for mode, per_impl in modes.items():
            cells = []
            for i in impls:
                rate = res["rates_gflops"][cname][mode].get(i)
                frac = per_impl.get(i)
                cells.append(f"{'n/a' if rate is None else f'{rate * per_flop:.1f}':>{width}} "
                             f"{'n/a' if frac is None else f'{frac:.0%}':>5}")
            lines.append(f"{cname:7} {mode:8} " + " ".join(cells))
    return lines


def _peak_table(res) -> list:
    fractions = res.get("peak_fraction") or {}
    impls = [i for i in _PEAK_IMPLS if i in res["settings"]["impls"]]
    if not fractions or not impls:
        return []
    return (["", "rate and fraction of the FMA peak"]
            + _rate_rows(res, fractions, impls, "GFLOP/s", 1, 19))


def _dot_peak_table(res) -> list:
    """The reduced-precision forwards' multiply-adds a second and their fractions of the peak
    of the instruction the kernels' products use (AMX's tdpbusd or tdpbf16ps where they run
    them, else vpdpbusd for int8, vdpbf16ps for bfloat16)."""
    fractions = res.get("dot_peak_fraction") or {}
    dots = (res.get("peak") or {}).get("dot") or {}
    impls = [i for i in QUANTIZED_IMPLS if i in res["settings"]["impls"]]
    if not dots or not impls:
        return []
    threads = str(res["settings"]["threads"])
    lines = ["", "rate and fraction of the dot-product peak (multiply-adds: half the flops; "
             + "; ".join(f"{kind}: {d['instruction']} {d['gmacs'][threads]:.1f} GMAC/s"
                         if "gmacs" in d else f"{kind}: n/a ({d['error']})"
                         for kind, d in dots.items()) + ")"]
    return lines + (_rate_rows(res, fractions, impls, "GMAC/s", 0.5, 24) if fractions else [])


def _memory_line(mem) -> list:
    if not mem:
        return []
    parts = []
    for impl in IMPLEMENTATIONS:
        r = mem.get(impl)
        if r is None:
            continue
        parts.append(f"{impl} error ({r['error']})" if "error" in r
                     else f"{impl} {r['growth_mib']:.0f} MiB "
                          f"({r['step_growth_mib']:.0f} MiB in the steps alone)")
    method = next((r["method"] for r in mem.values()
                   if isinstance(r, dict) and "method" in r), "")
    return [f"training memory ({mem['config']}, {mem['steps']} steps in a fresh process, peak "
            f"RSS above the post-import RSS, {method}): " + ", ".join(parts)]


def format_sweep(sweep: dict) -> str:
    """The sweep's table: lstmx's time and the ratios, per shape and mode."""
    b = sweep["base"]
    others = ["torch", BASELINE]
    lines = [f"shape sweep around T={b['T']} B={b['B']} I={b['I']} H={b['H']}, one axis at "
             f"a time; lstmx kernels: {sweep['variant']}; ratio = time(other) / time(lstmx), "
             "above 1: lstmx is faster"]
    if "baseline_error" in sweep:
        lines.append(f"baseline kernels: n/a ({sweep['baseline_error']})")
    elif "baseline_variant" in sweep:
        lines.append(f"{BASELINE}: lstmx on its {sweep['baseline_variant']} kernel variant, "
                     "interleaved with the others in this process")
    header = (f"{'axis':5} {'shape':22} " + " ".join(
        f"{m + ' ' + c:>21}" for m in ("forward", "train") for c in ["lstmx"] + others))
    lines += [header, "-" * len(header)]
    for row in sweep["rows"]:
        cells = []
        for mode in ("forward", "train"):
            timings = row["timings"].get(mode, {})
            cells.append(f"{fmt_time(timings.get('lstmx', {}).get('median_s')):>21}")
            cells += [f"{_fmt_ratio(row['ratios'].get(mode, {}).get(o), timings, o):>21}"
                      for o in others]
        lines.append(f"{row['axis']:5} {row['config']['name']:22} " + " ".join(cells))
    lines.append(_NOISY_MARK)
    worst = []
    for mode in ("forward", "train"):
        for o in others:
            rs = [(row["ratios"][mode][o], row["config"]["name"]) for row in sweep["rows"]
                  if o in row["ratios"].get(mode, {})]
            if rs:
                r, name = min(rs)
                worst.append(f"{mode} vs {o} {r:.2f}x ({name})")
    if worst:
        lines.append("worst: " + ", ".join(worst))
    return "\n".join(lines)


def format_report(res) -> str:
    """The human-readable report of a bench result (``lstmx._bench_run``)."""
    lines = ["lstmx bench: median time per call; ratio = time(other) / time(lstmx) within a "
             "round, median over the rounds; above 1 means lstmx is faster"]
    lines += _machine_lines(res)
    lines += _peak_lines(res.get("peak"), res["settings"]["threads"])
    if res["results"]:
        lines += [""] + _times_table(res)
        noisy = [f"{c} {m} {i} ({t['spread']:.0%})" for c, modes in res["results"].items()
                 for m, ts in modes.items() for i, t in ts.items() if t["spread"] > NOISY]
        if noisy:
            lines.append("noisy timings: " + ", ".join(noisy))
        lines += _quantized_table(res)
        lines += _peak_table(res)
        lines += _dot_peak_table(res)
        lines.append("")
        lines.append("configurations: " + "; ".join(
            f"{n}: {BenchConfig(**c).describe()}" for n, c in res["configs"].items()))
        for cname, agree in res["agreement"].items():
            if agree:
                lines.append(f"forward outputs vs lstmx, {cname}: " + ", ".join(
                    f"{k} {v:.1e}" + (" (vs lstmx-layernorm)" if k == "torch-layernorm"
                                      else "")
                    for k, v in agree.items()) + " (relative max difference)")
    unavailable = {(i, why) for u in res["unavailable"].values() for i, why in u.items()}
    if res.get("sweep"):
        unavailable |= {(i, why) for row in res["sweep"]["rows"]
                        for i, why in row["unavailable"].items()}
    for impl, why in sorted(unavailable):
        lines.append(f"n/a: {impl}: {why}")
    lines += _memory_line(res.get("memory"))
    if res.get("sweep"):
        lines += ["", format_sweep(res["sweep"])]
    if res.get("targets") is not None:
        lines += ["", format_targets(res["targets"])]
    return "\n".join(lines)
