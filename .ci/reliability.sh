#!/usr/bin/env bash
# Reliability checks (issue 6; what they guarantee is in docs/guarantees.md):
#
#   debug     build lstmx with LSTMX_DEBUG=1 (bounds, wraparound and initialisation checks on,
#             -O0 -g) in a copy of the tree, prove the checks are live, run the whole suite on it
#   memcheck  valgrind memcheck over every kernel path (.ci/memcheck_paths.py) on that build;
#             fails on any invalid read/write/free, and on any error or definite leak with an
#             lstmx frame on its stack (.ci/valgrind_report.py, .ci/valgrind-python.supp)
#   fuzz      the fuzz target tests/fuzz_validation.py (hostile inputs and hostile files) on it
#
# The checkout's own compiled modules are never touched: everything is built in the copy.
#
#   bash .ci/reliability.sh                          # CI size: a few minutes on 2 cores
#   RELIABILITY_FULL=1 bash .ci/reliability.sh       # full size (roughly an hour): every option
#       combination and the property tests under valgrind, the fuzz target at 2000 examples
#       per target
#   RELIABILITY_STEPS="memcheck fuzz" bash .ci/reliability.sh   # some steps only
#   RELIABILITY_WORKDIR=/tmp/lstmx-debug ...         # keep (and reuse) the debug tree there
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The real interpreter, not a pyenv shim: valgrind must run Python itself.
PY="$(python -c 'import sys; print(sys.executable)')"
FULL="${RELIABILITY_FULL:-0}"
STEPS="${RELIABILITY_STEPS:-debug memcheck fuzz}"
if [[ -n "${RELIABILITY_WORKDIR:-}" ]]; then
    WORK="$RELIABILITY_WORKDIR"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/lstmx-reliability.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
fi
TREE="$WORK/debug"

say() { printf '\n=== reliability: %s\n' "$*"; }

build_debug_tree() {
    say "debug build (LSTMX_DEBUG=1) in $TREE"
    mkdir -p "$TREE"
    # The tracked files as they are in the work tree; no build products, no .git.
    (cd "$ROOT" && git ls-files -z | xargs -0 tar -cf - --) | tar -xf - -C "$TREE"
    (cd "$TREE" && LSTMX_DEBUG=1 "$PY" setup.py -q build_ext --inplace >"$WORK/build.log" 2>&1) \
        || { cat "$WORK/build.log"; exit 1; }
    # Prove that Python imports the copy and that its checks are live: an out-of-bounds
    # buffer access, which the optimised build never checks, must raise IndexError here.
    (cd "$TREE" && PYTHONPATH="$TREE" "$PY" - "$TREE" <<'EOF'
import sys
import numpy as np
import lstmx
from lstmx import _kernels

tree = sys.argv[1]
assert lstmx.__file__.startswith(tree) and _kernels.__file__.startswith(tree), (
    lstmx.__file__, _kernels.__file__)
empty, one = np.empty((0, 1)), np.zeros((1, 1))
try:
    _kernels.forward(empty, np.zeros((4, 1)), np.zeros((4, 1)), np.zeros(4), np.empty((0, 0)),
                     np.empty((0, 0)), np.ones(1, np.intp), one.copy(), one.copy(),
                     np.zeros((1, 1, 1)), 0, False, False)
except IndexError as err:
    print(f"debug build is live: {_kernels.__file__} ({err})")
else:
    sys.exit("the debug build did not check bounds: is LSTMX_DEBUG honoured by setup.py?")
EOF
    )
}

ensure_debug_tree() {
    if [[ ! -d "$TREE/lstmx" ]] || ! ls "$TREE"/lstmx/_kernels*.so >/dev/null 2>&1; then
        build_debug_tree
    fi
}

step_debug() {
    build_debug_tree
    say "the whole test suite on the debug build"
    (cd "$TREE" && PYTHONPATH="$TREE" "$PY" -m pytest -q -p no:cacheprovider)
}

step_memcheck() {
    ensure_debug_tree
    command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
    local xml="$WORK/memcheck.xml" full_flag=()
    [[ "$FULL" == 1 ]] && full_flag=(--full)
    say "valgrind memcheck: the detector itself (a deliberate out-of-bounds read must fail)"
    (PYTHONMALLOC=malloc valgrind --tool=memcheck --xml=yes --xml-file="$WORK/control.xml" \
        --suppressions="$ROOT/.ci/valgrind-python.supp" "$PY" -c '
import ctypes
buf = ctypes.create_string_buffer(16)
ctypes.string_at(ctypes.addressof(buf), 64)  # 48 bytes past the end of a malloc block
') >/dev/null 2>&1 || true
    if "$PY" "$ROOT/.ci/valgrind_report.py" "$WORK/control.xml" >"$WORK/control.txt"; then
        cat "$WORK/control.txt"
        echo "valgrind did not report a deliberate invalid read: the memcheck step is blind" >&2
        exit 1
    fi
    echo "control caught: $(grep -c '^InvalidRead' "$WORK/control.txt") invalid read(s)"

    say "valgrind memcheck over every kernel path ($(valgrind --version))"
    # PYTHONMALLOC=malloc: every Python and NumPy allocation is a malloc valgrind can track.
    # One BLAS thread: the kernels' BLAS calls run on the calling thread, so every stack
    # reaches back into lstmx and is attributed.
    (cd "$TREE" && PYTHONPATH="$TREE" PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 \
        OMP_NUM_THREADS=1 valgrind --tool=memcheck --num-callers=60 --error-limit=no \
        --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        --suppressions="$ROOT/.ci/valgrind-python.supp" --xml=yes --xml-file="$xml" \
        "$PY" "$ROOT/.ci/memcheck_paths.py" "${full_flag[@]}")
    "$PY" "$ROOT/.ci/valgrind_report.py" "$xml"
    if [[ "$FULL" == 1 ]]; then
        say "valgrind memcheck over the property, error and robustness tests (full size)"
        (cd "$TREE" && PYTHONPATH="$TREE" PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 \
            OMP_NUM_THREADS=1 HYPOTHESIS_PROFILE=dev valgrind --tool=memcheck \
            --num-callers=60 --error-limit=no --leak-check=full --show-leak-kinds=definite \
            --errors-for-leak-kinds=definite --suppressions="$ROOT/.ci/valgrind-python.supp" \
            --xml=yes --xml-file="$WORK/memcheck-tests.xml" \
            "$PY" -m pytest -q -p no:cacheprovider tests/test_properties.py tests/test_errors.py \
            tests/test_concurrency.py)
        "$PY" "$ROOT/.ci/valgrind_report.py" "$WORK/memcheck-tests.xml"
    fi
}

step_fuzz() {
    ensure_debug_tree
    local profile=ci
    [[ "$FULL" == 1 ]] && profile=fuzz
    say "fuzz target tests/fuzz_validation.py (hypothesis profile '$profile') on the debug build"
    (cd "$TREE" && PYTHONPATH="$TREE" HYPOTHESIS_PROFILE="$profile" \
        "$PY" -m pytest -q -p no:cacheprovider tests/fuzz_validation.py)
}

for step in $STEPS; do
    case "$step" in
        debug) step_debug ;;
        memcheck) step_memcheck ;;
        fuzz) step_fuzz ;;
        *) echo "unknown step: $step (known: debug memcheck fuzz)" >&2; exit 2 ;;
    esac
done
say "all passed ($STEPS)"
