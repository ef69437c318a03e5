"""Read a valgrind memcheck XML log and fail on what lstmx is responsible for.

Fails (exit 1) on:
- any invalid read, write or free, overlapping copy or bad syscall parameter that survived the
  suppressions, wherever it happened: with PYTHONMALLOC=malloc, CPython and NumPy themselves
  produce none, and one inside BLAS or NumPy is what a wrong pointer or size of ours looks like;
- any error of any kind (uninitialised values included) that lstmx's compiled modules caused;
- any definitely lost block that lstmx's compiled modules allocated.

"Caused" and "allocated" mean: an lstmx frame on the stack *below the interpreter*, that is
between the top of the stack and the first frame of CPython's bytecode loop. C code that our
modules call (BLAS, NumPy's and CPython's C API, malloc) is ours to answer for; Python code
that they call (``import scipy.linalg.cython_blas`` at module init, ``np.empty(...)``) is the
interpreter's, and its uninitialised-value noise is not.

Everything else (uninitialised-value reports and leaks inside CPython, NumPy, SciPy or
OpenBLAS) is counted and summarised, not failed on.

    python .ci/valgrind_report.py memcheck.xml
"""
import collections
import sys
import xml.etree.ElementTree as ET

OURS = ("/lstmx/_kernels", "/lstmx/_blas")
ALWAYS_FATAL = ("InvalidRead", "InvalidWrite", "InvalidFree", "MismatchedFree", "Overlap",
                "SyscallParam", "InvalidJump", "ClientCheck", "InvalidMemPool",
                "FishyValue")


def frames(error):
    for frame in error.iter("frame"):
        yield {child.tag: (child.text or "") for child in frame}


# The bytecode loop: frames below it run Python code, whoever called that code.
INTERPRETER = ("_PyEval_EvalFrameDefault", "_PyEval_EvalFrame", "_PyEval_Vector",
               "PyEval_EvalCode")


def ours(error):
    for f in frames(error):
        if any(s in f.get("obj", "") for s in OURS):
            return True
        if f.get("fn") in INTERPRETER:
            return False
    return False


def describe(error, limit=14):
    what = error.findtext("what") or error.findtext("xwhat/text") or error.findtext("kind")
    lines = [f"{error.findtext('kind')}: {what}"]
    for f in list(frames(error))[:limit]:
        where = f.get("fn", "???")
        if f.get("file"):
            where += f" ({f['file']}:{f.get('line', '?')})"
        lines.append(f"    {where}  [{f.get('obj', '?')}]")
    return "\n".join(lines)


def main(path):
    root = ET.parse(path).getroot()
    fatal, tolerated = [], collections.Counter()
    for error in root.iter("error"):
        kind = error.findtext("kind")
        if kind.startswith("Leak_"):
            if kind == "Leak_DefinitelyLost" and ours(error):
                fatal.append(error)
            else:
                tolerated[kind] += 1
        elif kind in ALWAYS_FATAL or ours(error):
            fatal.append(error)
        else:
            tolerated[kind] += 1
    suppcounts = root.find("suppcounts")
    suppressed = sum(int(p.findtext("count")) for p in suppcounts.iter("pair")) \
        if suppcounts is not None else 0
    for error in fatal:
        print(describe(error), end="\n\n")
    tolerated_text = ", ".join(f"{k} x{v}" for k, v in sorted(tolerated.items())) or "none"
    print(f"valgrind: {len(fatal)} error(s) attributable to lstmx or invalid accesses; "
          f"{suppressed} suppressed; tolerated (no lstmx frame): {tolerated_text}")
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
