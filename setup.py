"""Build the Cython extensions of lstmx.

Compiler directives are set here, once for every module. ``LSTMX_DEBUG=1`` turns bounds,
wraparound and initialisation checks back on (and drops optimisation) for a debug build.
"""
import os

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
# Portable by default: no -march=native, so the build runs on any x86-64 CPU.
# -fno-trapping-math lets GCC vectorise the branch-free selects of the activations (we never
# read floating-point exception flags); -fno-math-errno drops errno bookkeeping of libm calls.
# Neither changes a result, unlike -ffast-math.
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-trapping-math", "-fno-math-errno"]
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]

extensions = [
    Extension(
        f"lstmx.{name}",
        [f"lstmx/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for name in ("_blas", "_kernels")
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
