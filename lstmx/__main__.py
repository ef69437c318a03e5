"""Command line of lstmx: ``python -m lstmx check``, ``bench`` and ``plan``."""
import argparse
import sys

_DESCRIPTION = ("lstmx on this machine. 'check' compares the compiled kernels with the NumPy "
                "reference; 'bench' times lstmx against the reference, torch and onnxruntime. "
                "'python -m lstmx COMMAND --help' lists a command's options.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstmx", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="kernels vs the NumPy reference: errors and times")
    check.add_argument("--repeat", type=int, default=5, help="timed calls per measurement")
    bench = sub.add_parser("bench", help="lstmx vs the reference, torch and onnxruntime: "
                                         "times, ratios, the CPU's FMA peak, a shape sweep")
    from lstmx._bench import add_arguments as bench_arguments
    bench_arguments(bench)
    plan = sub.add_parser("plan", help="what the kernels choose for one layer of a shape on "
                                       "this machine: drivers, threads, products, and the "
                                       "costs measured to choose them")
    for name in ("T", "B", "I", "H"):
        plan.add_argument(f"-{name}", type=int, required=True)
    plan.add_argument("--proj-size", type=int, default=0)
    plan.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    plan.add_argument("--threads", type=int, default=None,
                      help="OpenMP threads (default: the pool's current limit)")
    args = parser.parse_args(argv)
    if args.command == "plan":
        from lstmx._plan_report import describe_plan, format_plan
        try:
            report = describe_plan(args.T, args.B, args.I, args.H, args.proj_size,
                                   args.dtype, args.threads)
        except (TypeError, ValueError) as err:
            parser.error(str(err))
        print(format_plan(report))
        return 0
    if args.command == "check":
        from lstmx._check import main as check_main
        return check_main(repeat=args.repeat)
    from lstmx._bench import main as bench_main
    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
