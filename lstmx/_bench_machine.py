"""The machine a bench runs on: CPU model, versions, thread pools, load, and the peaks of its
FMA and dot-product instructions."""
from __future__ import annotations

import os
import platform
import sys
import threading
import time

import numpy as np

__all__ = ["limit_threads", "cpu_model", "pool_label", "machine_info", "loadavg", "fma_peak",
           "dot_peak"]


def limit_threads(threads: int) -> list:
    """Limit every BLAS/OpenMP pool in the process (threadpoolctl) and torch to ``threads``.

    The limit stays in force for the rest of the process (asv runs each benchmark in its own).
    Returns threadpoolctl's view of the pools, for the report.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    return threadpool_info()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pool_label(pool: dict) -> str:
    """A thread pool as the report names it: the package that ships its library ("scipy: "
    for scipy.libs/, the BLAS that lstmx calls), the library, its version and kernels when
    threadpoolctl knows them, and its threads."""
    parent = os.path.basename(os.path.dirname(pool.get("filepath") or ""))
    owner = parent[:-len(".libs")] + ": " if parent.endswith(".libs") else ""
    name = " ".join(str(pool[k]) for k in ("internal_api", "version") if pool.get(k))
    kernels = f" {pool['architecture']} kernels" if pool.get("architecture") else ""
    return f"{owner}{name}{kernels} ({pool['user_api']}, {pool['num_threads']} threads)"


def machine_info(threads) -> dict:
    """CPU, versions, the kernel variant and the BLAS/OpenMP pools (threadpoolctl) after
    limiting threads."""
    import scipy

    import lstmx
    from lstmx import _dispatch

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "scipy": scipy.__version__, "lstmx": lstmx.__version__}
    for name in ("torch", "onnxruntime", "onnx"):
        mod = sys.modules.get(name)
        if mod is not None:  # imported, and not blocked (a None entry)
            versions[name] = mod.__version__
    pools = [{k: info.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                       "architecture", "prefix", "filepath")}
             for info in limit_threads(threads)]
    from lstmx._bench_quantized import cpu_flags

    quantized = _dispatch.quantized()
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "cpu_flags": cpu_flags(),
            "kernel_variant": _dispatch.variant,
            # Which instructions the quantised models' products run on (vpdpbusd of either
            # width or the generic tiles; vdpbf16ps or BLAS).
            "quantized_products": {"int8": quantized.INT8_PRODUCTS,
                                   "bfloat16": quantized.BF16_PRODUCTS},
            "versions": versions, "threadpools": pools,
            "threads": threads,
            "torch_threads": (sys.modules["torch"].get_num_threads()
                              if sys.modules.get("torch") is not None else None)}


def loadavg():
    """The 1-minute load average, or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _rate(loop, per_iteration, threads, iterations) -> float:
    """Billions of operations a second of ``threads`` threads each running ``loop(iterations)``
    at once (wall time from a common start to the last one's end), ``per_iteration`` of them
    an iteration."""
    start = threading.Barrier(threads + 1)

    def run():
        start.wait()
        loop(iterations)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - t0
    return threads * iterations * per_iteration / seconds / 1e9


def _best_rates(loop, per_iteration, threads, seconds, repeat) -> dict:
    """``{str(k): best rate of repeat runs}`` on 1 and ``threads`` threads, each run about
    ``seconds`` long."""
    # Calibrate: iterations that last about `seconds` on one thread.
    n = 1 << 16
    while True:
        t0 = time.perf_counter()
        loop(n)
        took = time.perf_counter() - t0
        if took > 0.02 or n >= 1 << 40:
            break
        n *= 4
    n = max(1, int(n * seconds / max(took, 1e-9)))
    return {str(k): max(_rate(loop, per_iteration, k, n) for _ in range(repeat))
            for k in sorted({1, threads})}


def fma_peak(threads, seconds=0.2, repeat=3) -> dict:
    """This CPU's fused multiply-add peak (``lstmx._peak``) in float32 and float64, on one
    thread and on ``threads``: the best of ``repeat`` runs of about ``seconds`` each (a peak
    is what the CPU can do, so the fastest run is the one least disturbed).

    Returns ``{"isa", "accumulators", "gflops": {dtype: {str(threads): GFLOP/s}}}``, or
    ``{"error": why}`` when the module is not built.
    """
    try:
        from lstmx import _peak
    except ImportError as err:
        return {"error": f"lstmx._peak does not import: {err}"}
    out = {"isa": _peak.best_isa(), "accumulators": _peak.accumulators(), "gflops": {}}
    for dtype in ("float32", "float64"):
        is_double = dtype == "float64"
        out["gflops"][dtype] = _best_rates(
            lambda n, d=is_double: _peak.fma_loop(d, n), _peak.flops_per_iteration(is_double),
            threads, seconds, repeat)
    return out


def dot_peak(threads, seconds=0.2, repeat=3) -> dict:
    """The peak of the quantised kernels' products (``lstmx._peak``): AMX's ``tdpbusd`` and
    ``tdpbf16ps`` where the kernels run them, else ``vpdpbusd`` for int8 and ``vdpbf16ps``
    for bfloat16 on 512-bit vectors, in billions of multiply-adds a second, on one thread and
    on ``threads``, measured as ``fma_peak``.

    Returns ``{kind: {"instruction", "gmacs": {str(threads): GMAC/s}} or {"error": why}}``
    for kind ``"int8"`` and ``"bfloat16"``.
    """
    try:
        from lstmx import _peak
    except ImportError as err:
        return {kind: {"error": f"lstmx._peak does not import: {err}"}
                for kind in ("int8", "bfloat16")}
    from lstmx._dispatch import quantized

    kernels = quantized()
    running = {"int8": kernels.INT8_PRODUCTS, "bfloat16": kernels.BF16_PRODUCTS}
    out = {}
    for kind in ("int8", "bfloat16"):
        if running[kind] == _peak.tile_instruction(kind):
            instruction, loop = running[kind], _peak.tile_loop
            per_iteration = _peak.tile_macs_per_iteration(kind)
        elif _peak.dot_instruction(kind) is not None:
            instruction, loop = _peak.dot_instruction(kind), _peak.dot_loop
            per_iteration = _peak.macs_per_iteration(kind)
        else:
            out[kind] = {"error": "this CPU has no 512-bit dot-product instruction for it"}
            continue
        out[kind] = {"instruction": instruction, "gmacs": _best_rates(
            lambda n, k=kind, f=loop: f(k, n), per_iteration, threads, seconds, repeat)}
    return out
