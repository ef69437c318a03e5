"""Peak memory of training steps, each implementation measured in a fresh subprocess."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np

from lstmx._bench_impls import build_impl
from lstmx._bench_machine import limit_threads

__all__ = ["measure_memory", "child_env"]


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(impl, config, dtype, threads, steps):
    """Peak RSS growth of ``steps`` training steps, in MiB, measured two ways.

    ``growth_mib``: above the RSS after the imports, so it
    includes the model, x and dy as this implementation holds them. ``step_growth_mib``:
    above the RSS once those exist, so only what the steps allocate (caches, gradients,
    workspaces).
    """
    import importlib
    import resource

    import lstmx.reference  # noqa: F401
    if impl == "torch":
        importlib.import_module("torch")
    limit_threads(threads)
    reset = _reset_peak()
    base = _rss_kib("VmRSS")
    obj = build_impl(impl, config, dtype, threads=threads)
    built_peak = _rss_kib("VmHWM") if reset else base
    reset = reset and _reset_peak()
    built = _rss_kib("VmRSS")
    for _ in range(steps):
        obj.train()
    if reset:
        peak, method = _rss_kib("VmHWM"), "VmHWM after clear_refs"
    else:  # ru_maxrss may include an earlier, higher peak: growth is then underestimated
        peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    return {"impl": impl, "growth_mib": max(built_peak, peak) / 1024 - base / 1024,
            "step_growth_mib": max(peak - built, 0) / 1024, "baseline_mib": base / 1024,
            "method": method, "steps": steps}


def child_env(**extra) -> dict:
    """The environment of a child Python that imports this copy of lstmx (a checkout's, say,
    rather than an installed one), with ``extra`` variables set."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def measure_memory(impl, config, dtype=np.float32, threads=2, steps=2, timeout=600):
    """Run ``_memory_child`` in a fresh Python; returns its dict, or one with ``error``."""
    code = ("import json, sys; from lstmx import _bench_impls, _bench_memory; "
            "a = json.loads(sys.argv[1]); c = _bench_impls.BenchConfig(**a.pop('config')); "
            "print(json.dumps(_bench_memory._memory_child(config=c, **a)))")
    args = json.dumps({"impl": impl, "config": dataclasses.asdict(config),
                       "dtype": np.dtype(dtype).name, "threads": threads, "steps": steps})
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True,
                          env=child_env(), timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"impl": impl, "error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])
