"""Command line of ``python -m lstmx bench``: its options, the run, the report and ``--check``.

The bench compares lstmx with the NumPy reference, torch and onnxruntime on *your* machine
(``--quantized``: its int8 and bfloat16 models with onnxruntime's int8 LSTM).
The pieces: ``_bench_impls`` (the problems and the implementations), ``_bench_timing`` (the
timing engine), ``_bench_memory`` (peak memory in subprocesses), ``_bench_machine`` (CPU,
pools, FMA peak), ``_bench_sweep`` (``--sweep``), ``_bench_run`` (one run, the JSON schema),
``_bench_report`` (the text), ``_bench_quantized`` (the reduced-precision implementations),
``_bench_targets`` (``--check`` against a targets file), ``_bench_profile`` (``--profile``,
the phase split).
"""
from __future__ import annotations

import argparse
import json
import sys

from lstmx._bench_impls import (ALL_CONFIGS, DEFAULT_CONFIGS, DEFAULT_IMPLS, IMPLEMENTATIONS,
                                REGULARISED_CONFIGS, REGULARISED_IMPLS)
from lstmx._bench_quantized import QUANTIZED_CONFIGS, QUANTIZED_IMPLS
from lstmx._bench_timing import NOISY

__all__ = ["add_arguments", "main"]

# What --quantized compares: lstmx float32 (the base of every ratio and error) and its int8
# and bfloat16 models, onnxruntime's float32 LSTM and its int8 DynamicQuantizeLSTM.
_QUANTIZED_RUN = ("lstmx", "onnxruntime") + QUANTIZED_IMPLS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m lstmx bench``."""
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and shorter samples (a few minutes)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed repetitions per measurement (default 11, quick 5; "
                             "fewer when a measurement passes 60 s, quick 10 s)")
    parser.add_argument("--configs", default=None,
                        help=f"comma-separated subset of {','.join(ALL_CONFIGS)} (default "
                             f"{','.join(DEFAULT_CONFIGS)}; with --quantized "
                             f"{','.join(QUANTIZED_CONFIGS)}, with --regularised "
                             f"{','.join(REGULARISED_CONFIGS)}); empty with --sweep for the "
                             "sweep alone")
    parser.add_argument("--impls", default=None,
                        help="comma-separated subset of "
                             f"{','.join(IMPLEMENTATIONS + QUANTIZED_IMPLS)} (default: "
                             f"{','.join(DEFAULT_IMPLS)}; with --quantized "
                             f"{','.join(_QUANTIZED_RUN)}; with --regularised "
                             f"lstmx,{','.join(REGULARISED_IMPLS)})")
    parser.add_argument("--quantized", action="store_true",
                        help="reduced-precision inference: lstmx float32, int8 and bfloat16 "
                             "against onnxruntime's float32 LSTM and its int8 "
                             "DynamicQuantizeLSTM (quantize_dynamic, with and without "
                             "reduce_range), forward times, speedups and max abs errors "
                             "against the float32 output")
    parser.add_argument("--regularised", action="store_true",
                        help="time the regularised and layer-normalised LSTMs against the "
                             "plain one, and torch's layer-norm composition: the default "
                             f"configurations become {','.join(REGULARISED_CONFIGS)} and "
                             f"the implementations lstmx,{','.join(REGULARISED_IMPLS)}")
    parser.add_argument("--threads", type=int, default=2, help="threads for every library")
    parser.add_argument("--retries", type=int, default=None,
                        help="times a measurement with a noisy timing (interquartile range "
                             f"above {NOISY:.0%}% of the median) is measured again "
                             "(default 2, quick 1)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the training-memory subprocesses (skipped with "
                             "--regularised too)")
    parser.add_argument("--no-peak", action="store_true",
                        help="skip measuring the CPU's FMA peak")
    parser.add_argument("--sweep", action="store_true",
                        help="also sweep the shape one axis at a time around a base shape, "
                             "lstmx vs torch and vs its baseline kernels, forward and "
                             "training (18 shapes: tens of minutes; with --quick and "
                             "--retries 0 about a minute a shape on 2 busy cores)")
    parser.add_argument("--sweep-axes", metavar="AXES", default="",
                        help="replace axes of the sweep, e.g. 'I=1,33 H=17,100' (default "
                             "I=1,3,31,32,33,100 H=1,17,32,50,63,100,257,300 B=1,3,8,33 "
                             "T=1,7,200)")
    parser.add_argument("--sweep-base", metavar="SHAPE", default="",
                        help="the sweep's base shape, e.g. 'T=200 B=8 I=32 H=100' (the "
                             "default)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="in the sweep, skip the baseline kernels' subprocess")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing against the other libraries, split lstmx's "
                             "forward and backward passes on --configs into phases (input "
                             "projection, recurrent products, cell, weight gradients, "
                             "synchronisation) with the kernels' phase timers")
    parser.add_argument("--check", metavar="TARGETS",
                        help="check the results against a targets file (lstmx's: "
                             "benchmarks/targets.json in the repository); exit 1 if one "
                             "fails")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def _sweep_options(args):
    """``run_sweep`` options from the command line; SystemExit on a malformed grid."""
    from lstmx._bench_sweep import SWEEP_AXES, SWEEP_BASE, parse_grid

    try:
        axes = parse_grid(args.sweep_axes, SWEEP_AXES)
        base = parse_grid(args.sweep_base, {k: (v,) for k, v in SWEEP_BASE.items()})
    except ValueError as err:
        raise SystemExit(f"--sweep-axes/--sweep-base: {err}") from err
    if any(len(v) != 1 for v in base.values()):
        raise SystemExit(f"--sweep-base takes one value per axis; got {args.sweep_base!r}")
    return {"base": {k: v[0] for k, v in base.items()}, "axes": axes,
            "baseline": not args.no_baseline}


def _profile(args, names) -> int:
    """``--profile``: the phase split of lstmx's passes on the named configurations."""
    from lstmx._bench_profile import format_profile, run_profile

    prof = run_profile({n: ALL_CONFIGS[n] for n in names}, threads=args.threads,
                       min_time=0.2 if args.quick else 1.0,
                       progress=lambda msg: print(f"[bench] {msg}", file=sys.stderr,
                                                  flush=True))
    print(format_profile(prof))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(prof, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


def main(args) -> int:
    """Run ``python -m lstmx bench`` with parsed ``args``; print the report. Returns 1 when
    ``--check`` finds a target missed, else 0."""
    from lstmx._bench_report import format_report
    from lstmx._bench_run import jsonable, run_benchmarks
    from lstmx._bench_targets import any_failed, evaluate_targets, load_targets

    configs = args.configs
    if configs is None:
        configs = ",".join(QUANTIZED_CONFIGS if args.quantized else REGULARISED_CONFIGS
                           if args.regularised else DEFAULT_CONFIGS)
    names = [c for c in configs.split(",") if c]
    bad = [c for c in names if c not in ALL_CONFIGS]
    impls = args.impls
    if impls is None:
        impls = ",".join(_QUANTIZED_RUN if args.quantized else ("lstmx",) + REGULARISED_IMPLS
                         if args.regularised else DEFAULT_IMPLS)
    impls = [i for i in impls.split(",") if i]
    known = IMPLEMENTATIONS + QUANTIZED_IMPLS
    bad_impls = [i for i in impls if i not in known]
    if bad or bad_impls or "lstmx" not in impls or not (names or args.sweep):
        raise SystemExit(f"--configs must name some of {list(ALL_CONFIGS)} (got {bad}; none "
                         f"only with --sweep), --impls some of {list(known)} "
                         f"including lstmx (got {impls})")
    if args.profile:
        return _profile(args, names)
    sweep = _sweep_options(args) if args.sweep else None
    targets = None
    if args.check:
        try:
            targets = load_targets(args.check)
        except (OSError, ValueError) as err:
            raise SystemExit(f"--check: {err}") from err
    repeat = args.repeat if args.repeat is not None else (5 if args.quick else 11)
    retries = args.retries if args.retries is not None else (1 if args.quick else 2)
    res = run_benchmarks(
        {n: ALL_CONFIGS[n] for n in names}, impls=impls, threads=args.threads, repeat=repeat,
        min_time=0.005 if args.quick else 0.02, warm_time=0.1 if args.quick else 0.5,
        max_time=10.0 if args.quick else 60.0, retries=retries,
        memory_config=None if args.no_memory or args.quantized or args.regularised else "L",
        peak=not args.no_peak, sweep=sweep,
        progress=lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True),
        modes=("forward",) if args.quantized else ("forward", "train"))
    if targets is not None:
        res["targets"] = evaluate_targets(res, targets)
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(jsonable(res), f, indent=1)
        print(f"\nwrote {args.json}")
    if targets is not None and any_failed(res["targets"]):
        print(f"\n--check: a target of {args.check} was missed", file=sys.stderr)
        return 1
    return 0
