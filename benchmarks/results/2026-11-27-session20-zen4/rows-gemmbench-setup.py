"""Build rows-gemmbench.pyx against a tree: python rows-gemmbench-setup.py NAME ROOT build_ext --inplace (AVX2 flags as setup.py)."""
import sys
from setuptools import setup, Extension
from Cython.Build import cythonize
import numpy as np
args=["-O3","-fno-trapping-math","-fno-math-errno","--param=vect-max-version-for-alias-checks=256","-mavx2","-mfma","--param=max-completely-peel-times=7"]
name, root = sys.argv.pop(1), sys.argv.pop(1)
setup(ext_modules=cythonize([Extension(name, [name+".pyx"], include_dirs=[root+"/lstmx", np.get_include()], extra_compile_args=args)], include_path=[root]))
