"""fcnn: fully-connected neural networks on NumPy arrays, with the work done in C."""

# Loads libscipy_openblas into the process before _core, which links against it.
import scipy_openblas32 as _scipy_openblas32  # noqa: F401

from . import _core
from ._backend import get_backend, set_backend

__version__ = "0.1.0"

__all__ = ["get_backend", "set_backend", "__version__"]
