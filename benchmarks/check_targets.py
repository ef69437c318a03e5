"""Checks a saved bench result against lstmx's performance targets; exits 1 if one is missed.

    python -m lstmx bench --json bench.json
    python benchmarks/check_targets.py bench.json [--targets benchmarks/targets.json]

The targets (``targets.json`` beside this script) are the project's own acceptance bounds:
ratios measured side by side and fractions of the CPU's FMA peak, never absolute times. Their
format, and which rows are listed for a partial run: ``lstmx/_bench_targets.py``.
"""
import argparse
import json
import os
import sys

from lstmx._bench_targets import any_failed, evaluate_targets, format_targets, load_targets

TARGETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check a 'python -m lstmx bench --json' "
                                                 "result against performance targets.")
    parser.add_argument("result", help="the JSON written by python -m lstmx bench --json")
    parser.add_argument("--targets", default=TARGETS, help="targets file (default: %(default)s)")
    args = parser.parse_args(argv)
    with open(args.result) as f:
        res = json.load(f)
    rows = evaluate_targets(res, load_targets(args.targets))
    print(f"{args.result}: {res.get('schema')}, {res.get('machine', {}).get('cpu', 'CPU n/a')}, "
          f"{res.get('settings', {}).get('threads')} threads")
    print(format_targets(rows))
    return 1 if any_failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
