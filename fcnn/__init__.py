"""fcnn: fully-connected neural networks on NumPy arrays, with the work done in C.

The modules keep the original project's names: ``fcnn.nn`` (Module),
``fcnn.functional`` (Linear, ReLU, Sigmoid, Tanh, Softmax, Dropout, CrossEntropyLoss; the
layers are also importable from ``fcnn`` itself), ``fcnn.optim``
(SGD, ExponentialScheduler) and ``fcnn.dataloader`` (DataLoader). Data sets are
in ``fcnn.datasets``, data augmentation in ``fcnn.augmentation``, the training loop
and evaluation in ``fcnn.training``, metrics in ``fcnn.metrics`` and figures in
``fcnn.plot`` (needs matplotlib).
"""

import os as _os

from . import _cli_startup  # noqa: F401  (first: Ctrl-C while the fcnn command starts)

# OpenMP threads that wait spin 300,000 times by default before sleeping: when another process
# holds one of the cores, fcnn's 2-thread epochs then ran up to 10x slower than on 1 thread
# (benchmarks/bench_contention.py). A short spin keeps the cost of waking a sleeping thread
# (a few microseconds, twice per fused step) and stops the collapse. Read by libgomp when it
# loads, so only if nothing loaded it before fcnn, and never over the user's own setting.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "1000")

# Loads libscipy_openblas into the process before _core, which links against it.
import scipy_openblas32 as _scipy_openblas32  # noqa: F401, E402

# Imported here only to fail early, with the message below, when the core is not built.
try:
    from . import _core  # noqa: F401
except ImportError:
    import importlib.util as _importlib_util

    if _importlib_util.find_spec(f"{__name__}._core") is not None:
        raise  # built, but it does not load: that message says why
    # Without this, the first import of _core (in _backend) fails with Python's
    # "partially initialized module ... circular import", which misleads.
    raise ImportError(
        "fcnn's C core (fcnn._core) is not built: this looks like a source checkout. "
        "Build and install it with `pip install .` (or `pip install -e .`), or build it in "
        "place with `python setup.py build_ext --inplace` to import fcnn from the checkout."
    ) from None

from ._backend import get_backend, set_backend  # noqa: E402
from ._core import get_num_threads, set_num_threads
from .augmentation import Augmentation, augment
from .functional import Dropout, Linear, ReLU, Sigmoid, Softmax, Tanh
from .nn import Module
from .onnx_export import export_onnx
from .serialization import load, load_checkpoint, save
from .training import TrainConfig, evaluate, fit, predict, predict_proba, train

__version__ = "0.1.0"

__all__ = [
    "Dropout",
    "Augmentation",
    "Linear",
    "Module",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "TrainConfig",
    "augment",
    "evaluate",
    "export_onnx",
    "fit",
    "get_backend",
    "get_num_threads",
    "load",
    "load_checkpoint",
    "predict",
    "predict_proba",
    "save",
    "set_backend",
    "set_num_threads",
    "train",
    "__version__",
]
