from setuptools import setup, Extension
from Cython.Build import cythonize
import numpy as np
setup(ext_modules=cythonize([Extension("gemmbench", ["rows-tile-gemmbench.pyx"], include_dirs=[np.get_include(), "/work/main/lstmx", "/work/main"],
  extra_compile_args=["-O3","-fno-trapping-math","-fno-math-errno","--param=vect-max-version-for-alias-checks=256","-mavx2","-mfma","--param=max-completely-peel-times=7"])],
  include_path=["/work/main"]))
