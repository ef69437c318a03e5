"""Which compiled kernel variant runs.

``_kernels`` is built for baseline x86-64 (or whatever the compiler targets), and on x86-64
also as ``_kernels_avx2`` and ``_kernels_avx512`` from the same source. The fastest variant
this CPU supports is used, unless the environment variable ``LSTMX_KERNELS`` names one
(``baseline``, ``avx2`` or ``avx512``). The quantised kernels (``_quantized``,
``_quantized_avx2``, ``_quantized_avx512``) follow the same choice; within them, ``vpdpbusd``
(AVX512_VNNI in the AVX-512 one, AVX-VNNI in the AVX2 one) and ``vdpbf16ps`` run where the CPU
has them (``LSTMX_DOT_PRODUCTS=generic`` turns them off, see ``_quantized.pyx``).
"""
from __future__ import annotations

import importlib
import os

from lstmx._cpu import cpu_supports

__all__ = ["available", "load", "kernels", "variant", "quantized"]

_MODULES = {"baseline": "lstmx._kernels", "avx2": "lstmx._kernels_avx2",
            "avx512": "lstmx._kernels_avx512"}


def available() -> list[str]:
    """Variants that are built and that this CPU can run, fastest first."""
    names = []
    for name in ("avx512", "avx2"):
        # Ask the CPU first: the variant's own module initialisation is compiled for its
        # instruction set, so even importing it on a CPU without it could fault.
        if not cpu_supports(name):
            continue
        try:
            importlib.import_module(_MODULES[name])
        except ImportError:
            continue
        names.append(name)
    return names + ["baseline"]


def load(name: str = "auto"):
    """The kernel module ``name``, or the fastest available one for ``"auto"``."""
    runnable = available()
    if name == "auto":
        name = runnable[0]
    if name not in _MODULES:
        raise ValueError(f"LSTMX_KERNELS must be one of auto, {', '.join(_MODULES)}; "
                         f"got {name!r}")
    if name not in runnable:
        raise ValueError(f"kernel variant {name!r} is not available here "
                         f"(available: {', '.join(runnable)})")
    return importlib.import_module(_MODULES[name])


variant = os.environ.get("LSTMX_KERNELS", "auto")
kernels = load(variant)
variant = {v: k for k, v in _MODULES.items()}[kernels.__name__]


def quantized(name: str | None = None):
    """The quantised kernels (``lstmx._quantized``) of the variant in use, or of variant
    ``name`` (checked as ``load`` checks it); imported on first use, so that the float models
    do not depend on them."""
    module = _MODULES[variant] if name is None else load(name).__name__
    return importlib.import_module(module.replace("_kernels", "_quantized"))
