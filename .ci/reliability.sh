#!/usr/bin/env bash
# Reliability checks (issue 6; what they guarantee is in docs/guarantees.md):
#
#   debug     build lstmx with LSTMX_DEBUG=1 (bounds, wraparound and initialisation checks on,
#             -O0 -g) in a copy of the tree, prove the checks are live, run the suite on it
#             (less the slow suites listed at DEBUG_IGNORE)
#   memcheck  valgrind memcheck over every kernel path (.ci/memcheck_paths.py) on that build;
#             fails on any invalid read/write/free, and on any error or definite leak that
#             lstmx's compiled code caused (.ci/valgrind_report.py, .ci/valgrind-python.supp)
#   asan      build the optimised variants (-O3, every ISA) with AddressSanitizer in a second
#             copy and run every kernel path and the reliability tests natively on them: this
#             is what checks the AVX-512 variant, which valgrind cannot execute, and the
#             threaded kernels at their sizes
#   fuzz      the fuzz target tests/fuzz_validation.py (hostile inputs, caches and files) on
#             the debug build
#   portable  import and run lstmx on valgrind's virtual CPU, an x86-64 without AVX-512: the
#             build must never execute an instruction the CPU lacks (the kernel variants
#             compiled for AVX2/AVX-512 may only be loaded where the CPU has them)
#
# The checkout's own compiled modules are never touched: everything is built in the copy.
#
#   bash .ci/reliability.sh                          # CI size: about 7 minutes on 2 cores
#   RELIABILITY_FULL=1 bash .ci/reliability.sh       # full size (tens of minutes): every option
#       combination and the property tests under valgrind, the fuzz target at 2000 examples
#       per target
#   RELIABILITY_STEPS="memcheck fuzz" bash .ci/reliability.sh   # some steps only
#   RELIABILITY_WORKDIR=/tmp/lstmx-debug ...         # keep (and reuse) the debug tree there
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The real interpreter, not a pyenv shim: valgrind must run Python itself.
PY="$(python -c 'import sys; print(sys.executable)')"
FULL="${RELIABILITY_FULL:-0}"
STEPS="${RELIABILITY_STEPS:-debug memcheck asan fuzz portable}"
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
    # Prove that the checks are compiled in (Cython emits a bounds check, and its IndexError,
    # at every buffer access of the kernels only with boundscheck=True) and that Python
    # imports the copy, not the checkout's optimised build.
    local checks
    checks=$(grep -c "__Pyx_RaiseBufferIndexError" "$TREE/lstmx/_kernels.c" || true)
    if [[ "$checks" -lt 1 ]]; then
        echo "the debug build has no bounds checks: is LSTMX_DEBUG honoured by setup.py?" >&2
        exit 1
    fi
    (cd "$TREE" && PYTHONPATH="$TREE" "$PY" -c '
import sys
import lstmx
from lstmx import _blas, _kernels
for m in (lstmx, _blas, _kernels):
    assert m.__file__.startswith(sys.argv[1]), f"{m.__name__} imported from {m.__file__}"
print(f"debug build in use: {_kernels.__file__}")
' "$TREE")
    echo "bounds-checked buffer accesses in _kernels.c: $checks"
}

ensure_debug_tree() {
    if [[ ! -d "$TREE/lstmx" ]] || ! ls "$TREE"/lstmx/_kernels*.so >/dev/null 2>&1; then
        build_debug_tree
    fi
}

# Left out of the debug build's run: suites that train or time models for seconds to minutes
# through kernel paths the others already cover (scikit-learn's estimator checks, Dask
# clusters, the bench's command line, the examples, the docs' build); at -O0 they would take
# most of CI's time. The optimised build runs them in the README's test command.
DEBUG_IGNORE=(tests/test_sklearn.py tests/test_dask.py tests/test_bench.py
              tests/test_bench_regularised.py tests/test_bench_quantized.py
              tests/test_examples.py tests/test_example_sunspots.py tests/test_docs.py)

step_debug() {
    build_debug_tree
    say "the test suite on the debug build (less ${DEBUG_IGNORE[*]})"
    (cd "$TREE" && PYTHONPATH="$TREE" "$PY" -m pytest -q -p no:cacheprovider \
        "${DEBUG_IGNORE[@]/#/--ignore=}")
}

step_memcheck() {
    ensure_debug_tree
    command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
    local xml="$WORK/memcheck.xml" full_flag=()
    if [[ "$FULL" == 1 ]]; then full_flag=(--full); fi
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
    # Valgrind 3.19 cannot execute AVX-512, so the AVX-512 kernel variant is set aside for
    # this step (it runs the same source as the others, and runs bounds-checked natively in
    # the debug step); every other variant is checked, but not at the sizes that take the
    # threaded kernels (--no-threaded: hours on valgrind's serialised threads; the asan step
    # runs them).
    local hidden=() status=0 so
    for so in "$TREE"/lstmx/_kernels_avx512*.so; do
        if [[ -e "$so" ]]; then mv "$so" "$so.no-valgrind"; hidden+=("$so"); fi
    done
    # PYTHONMALLOC=malloc: every Python and NumPy allocation is a malloc valgrind can track.
    # One BLAS thread: the kernels' BLAS calls run on the calling thread, so every stack
    # reaches back into lstmx and is attributed. Two OpenMP threads: the kernels' own
    # parallel loops split their work as they do in use (their frames are ours).
    (cd "$TREE" && PYTHONPATH="$TREE" PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 \
        OMP_NUM_THREADS=2 valgrind --tool=memcheck --num-callers=60 --error-limit=no \
        --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        --suppressions="$ROOT/.ci/valgrind-python.supp" --xml=yes --xml-file="$xml" \
        "$PY" "$ROOT/.ci/memcheck_paths.py" --no-threaded "${full_flag[@]}") || status=$?
    for so in "${hidden[@]}"; do mv "$so.no-valgrind" "$so"; done
    [[ "$status" == 0 ]] || { echo "the memcheck workload failed ($status)" >&2; exit 1; }
    "$PY" "$ROOT/.ci/valgrind_report.py" "$xml"
    if [[ "$FULL" == 1 ]]; then
        say "valgrind memcheck over the property, error and concurrency tests (full size)"
        for so in "${hidden[@]}"; do mv "$so" "$so.no-valgrind"; done
        (cd "$TREE" && PYTHONPATH="$TREE" PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 \
            OMP_NUM_THREADS=2 HYPOTHESIS_PROFILE=dev valgrind --tool=memcheck \
            --num-callers=60 --error-limit=no --leak-check=full --show-leak-kinds=definite \
            --errors-for-leak-kinds=definite --suppressions="$ROOT/.ci/valgrind-python.supp" \
            --xml=yes --xml-file="$WORK/memcheck-tests.xml" \
            "$PY" -m pytest -q -p no:cacheprovider tests/test_properties.py tests/test_errors.py \
            tests/test_concurrency.py) || status=$?
        for so in "${hidden[@]}"; do mv "$so.no-valgrind" "$so"; done
        [[ "$status" == 0 ]] || { echo "the tests failed under valgrind" >&2; exit 1; }
        "$PY" "$ROOT/.ci/valgrind_report.py" "$WORK/memcheck-tests.xml"
    fi
}

step_portable() {
    ensure_debug_tree
    command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
    say "lstmx on a CPU without AVX-512 (valgrind's virtual CPU): import, forward, backward"
    (cd "$TREE" && PYTHONPATH="$TREE" valgrind --tool=none -q "$PY" -c '
import numpy as np
import lstmx
m = lstmx.LSTM(3, 4, bidirectional=True)
y, _, cache = m.forward_train(np.ones((5, 2, 3), np.float32))
m.backward(cache, np.ones_like(y))
kernels = getattr(lstmx._engine, "_kernels", None)
print("runs without AVX-512; kernel module:", getattr(kernels, "__name__", "?"))
') || { echo "lstmx cannot run on an x86-64 CPU without AVX-512 (SIGILL above?)" >&2; exit 1; }
}

step_asan() {
    local tree="$WORK/asan" asan full_flag=()
    if [[ "$FULL" == 1 ]]; then full_flag=(--full); fi
    asan="$(gcc -print-file-name=libasan.so)"
    if [[ ! -e "$asan" ]]; then
        apt-get update -qq && apt-get install -y -qq libasan8
        asan="$(gcc -print-file-name=libasan.so)"
    fi
    say "AddressSanitizer build of the optimised kernels in $tree"
    mkdir -p "$tree"
    (cd "$ROOT" && git ls-files -z | xargs -0 tar -cf - --) | tar -xf - -C "$tree"
    (cd "$tree" && CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" \
        LDFLAGS="-fsanitize=address" "$PY" setup.py -q build_ext --inplace \
        >"$WORK/asan-build.log" 2>&1) || { cat "$WORK/asan-build.log"; exit 1; }
    # The interpreter is not instrumented, so the runtime is preloaded. Leaks are valgrind's
    # job (CPython's exit-time leaks would drown ASan's report); a forged file's absurd size
    # must come back as NULL (MemoryError), as from the real malloc, not abort the run.
    local opts="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0"
    say "AddressSanitizer: the detector itself (a deliberate overflow must be reported)"
    if LD_PRELOAD="$asan" ASAN_OPTIONS="$opts" PYTHONMALLOC=malloc "$PY" -c '
import ctypes
buf = ctypes.create_string_buffer(16)
ctypes.string_at(ctypes.addressof(buf), 64)  # 48 bytes past the end of a malloc block
' >"$WORK/asan-control.txt" 2>&1 || ! grep -q "heap-buffer-overflow" "$WORK/asan-control.txt"; then
        cat "$WORK/asan-control.txt"
        echo "AddressSanitizer did not report a deliberate overflow: the asan step is blind" >&2
        exit 1
    fi
    echo "control caught: heap-buffer-overflow"
    say "AddressSanitizer: every kernel path in every variant, and the reliability tests"
    (cd "$tree" && PYTHONPATH="$tree" LD_PRELOAD="$asan" ASAN_OPTIONS="$opts" \
        PYTHONMALLOC=malloc "$PY" "$ROOT/.ci/memcheck_paths.py" "${full_flag[@]}")
    (cd "$tree" && PYTHONPATH="$tree" LD_PRELOAD="$asan" ASAN_OPTIONS="$opts" \
        PYTHONMALLOC=malloc "$PY" -m pytest -q -p no:cacheprovider tests/test_properties.py \
        tests/test_errors.py tests/test_robustness.py tests/test_concurrency.py \
        tests/test_small_gemm.py tests/test_regularised_contract.py tests/test_plan.py \
        tests/fuzz_validation.py)
}

step_fuzz() {
    ensure_debug_tree
    local profile=ci
    if [[ "$FULL" == 1 ]]; then profile=fuzz; fi
    say "fuzz target tests/fuzz_validation.py (hypothesis profile '$profile') on the debug build"
    (cd "$TREE" && PYTHONPATH="$TREE" HYPOTHESIS_PROFILE="$profile" \
        "$PY" -m pytest -q -p no:cacheprovider tests/fuzz_validation.py)
}

for step in $STEPS; do
    case "$step" in
        debug) step_debug ;;
        memcheck) step_memcheck ;;
        fuzz) step_fuzz ;;
        portable) step_portable ;;
        asan) step_asan ;;
        *) echo "unknown step: $step (known: debug memcheck asan fuzz portable)" >&2; exit 2 ;;
    esac
done
say "all passed ($STEPS)"
