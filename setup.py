"""Build the Cython extensions of lstmx.

Compiler directives are set here, once for every module. ``LSTMX_DEBUG=1`` turns bounds,
wraparound and initialisation checks back on (and drops optimisation) for a debug build.
"""
import os
import platform
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LSTMX_DEBUG", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}
# Portable by default: no flags tuned to the build host, so the build runs on any x86-64 CPU.
# -fno-trapping-math lets GCC vectorise the branch-free selects of the activations (we never
# read floating-point exception flags); -fno-math-errno drops errno bookkeeping of libm calls.
# Neither changes a result, unlike -ffast-math. The element-wise loops read and write a dozen
# row pointers that Cython cannot mark restrict; GCC's default of 10 run-time alias checks
# would leave them scalar (backward needs ~100).
compile_args = ["-O0", "-g"] if DEBUG else [
    "-O3", "-fno-trapping-math", "-fno-math-errno",
    "--param=vect-max-version-for-alias-checks=256"]
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]

# The kernels are also built for AVX2 and AVX-512 where the compiler targets x86-64;
# lstmx._dispatch loads the best one the CPU supports, so the default build still runs on
# any x86-64 CPU.
kernel_variants = {"_kernels": []}
# OpenMP splits the AVX-512 kernels' hidden units across cores (threadpoolctl controls it).
openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
if platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32":
    # GCC unrolls loops of up to max-completely-peel-times iterations before vectorising:
    # micro_tile's pass of 16 floats (8 doubles) must reach the vectoriser as a loop (see
    # _gemm.pxd), or GCC vectorises across the tile's rows with shuffles, many times slower.
    kernel_variants["_kernels_avx2"] = ["-mavx2", "-mfma", "--param=max-completely-peel-times=7"]
    kernel_variants["_kernels_avx512"] = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl",
                                          "-mavx512bw", "-mavx512dq",
                                          "-mprefer-vector-width=512"]
# The quantised kernels are built per instruction set in the same way, with the same flags.
kernel_variants.update({name.replace("_kernels", "_quantized"): flags
                        for name, flags in kernel_variants.items()})
# _cpu and _peak pick their instruction set at run time: no ISA flags for them.
# _random fills masks on a team of threads, in plain x86-64.
modules = {"_blas": [], "_cpu": [], "_peak": [], "_random": [], **kernel_variants}
threaded = set(kernel_variants) | {"_random"}

extensions = [
    Extension(
        f"lstmx.{name}",
        [f"lstmx/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args + isa_flags + (openmp if name in threaded else []),
        extra_link_args=openmp if name in threaded else [],
        # The C headers the kernels include: a change to one rebuilds them.
        depends=(["lstmx/_int8_dot.h", "lstmx/_dot_tiles.h", "lstmx/_dot_avx512.h",
                  "lstmx/_dot_amx.h", "lstmx/_amx.h", "lstmx/_dot_avx2.h",
                  "lstmx/_vector_width.h", "lstmx/_quantize_row.h"]
                 if name.startswith("_quantized") else
                 ["lstmx/_small_rows.h", "lstmx/_rows_tile.h", "lstmx/_transpose.h",
                  "lstmx/_lane_sums.h", "lstmx/_vector_width.h"]
                 if name.startswith("_kernels")
                 else ["lstmx/_amx.h"] if name == "_peak"
                 else []),
    )
    for name, isa_flags in modules.items()
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
