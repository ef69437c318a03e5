"""Command line: ``python -m lstmx check`` (and ``bench``)."""
import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstmx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="kernels vs the NumPy reference: errors and times")
    check.add_argument("--repeat", type=int, default=5, help="timed calls per measurement")
    bench = sub.add_parser("bench", help="lstmx vs the reference, torch and onnxruntime: "
                                         "times, ratios and the performance targets")
    from lstmx._bench import add_arguments as bench_arguments
    bench_arguments(bench)
    args = parser.parse_args(argv)
    if args.command == "check":
        from lstmx._check import main as check_main
        return check_main(repeat=args.repeat)
    if args.command == "bench":
        from lstmx._bench import main as bench_main
        return bench_main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
