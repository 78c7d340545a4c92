"""Builds the C extension fcnn._core from csrc/ against NumPy and scipy-openblas32.

Everything else about the package lives in pyproject.toml.
"""

from pathlib import Path

import numpy
import scipy_openblas32
from setuptools import Extension, setup

# Only the top-level kernel files are compiled; each includes template.h, which
# instantiates it for float32 and float64.
sources = sorted(str(path) for path in Path("csrc").glob("*.c"))

core = Extension(
    "fcnn._core",
    sources=sources,
    # The headers hold kernels too (first_layer.h, sgd_rule.h): a change to one rebuilds.
    depends=sorted(str(path) for path in Path("csrc").glob("*.h")),
    include_dirs=[numpy.get_include(), scipy_openblas32.get_include_dir(), "csrc"],
    library_dirs=[scipy_openblas32.get_lib_dir()],
    # No rpath: the build environment is temporary. fcnn/__init__.py imports
    # scipy_openblas32 first, which loads libscipy_openblas globally, and the
    # loader then resolves _core's dependency by its soname.
    libraries=[scipy_openblas32.get_library()],
    define_macros=[("BLAS_SYMBOL_PREFIX", "scipy_")],
    # -O3 without -ffast-math: NaN checks must keep working.
    # gnu11 rather than c11 lets the compiler fuse multiply-adds in the AVX2 clones.
    extra_compile_args=[
        "-O3",
        "-std=gnu11",
        "-fopenmp",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wno-psabi",
    ],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=[core])
