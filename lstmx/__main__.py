"""Command line: ``python -m lstmx check`` (and ``bench``)."""
import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstmx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="kernels vs the NumPy reference: errors and times")
    check.add_argument("--repeat", type=int, default=5, help="timed calls per measurement")
    args = parser.parse_args(argv)
    if args.command == "check":
        from lstmx._check import main as check_main
        return check_main(repeat=args.repeat)
    return 2


if __name__ == "__main__":
    sys.exit(main())
