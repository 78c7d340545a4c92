"""fcnn: fully-connected neural networks on NumPy arrays, with the work done in C.

The modules keep the original project's names: ``fcnn.nn`` (Module),
``fcnn.functional`` (Linear, ReLU, Softmax, CrossEntropyLoss), ``fcnn.optim``
(SGD, ExponentialScheduler) and ``fcnn.dataloader`` (DataLoader). Data sets are
in ``fcnn.datasets``, the training loop and evaluation in ``fcnn.training``,
metrics in ``fcnn.metrics`` and figures in ``fcnn.plot`` (needs matplotlib).
"""

from . import _cli_startup  # noqa: F401  (first: Ctrl-C while the fcnn command starts)

# Loads libscipy_openblas into the process before _core, which links against it.
import scipy_openblas32 as _scipy_openblas32  # noqa: F401

from ._backend import get_backend, set_backend
from ._core import get_num_threads, set_num_threads
from .nn import Module
from .onnx_export import export_onnx
from .serialization import load, load_checkpoint, save
from .training import TrainConfig, evaluate, fit, predict, predict_proba, train

__version__ = "0.1.0"

__all__ = [
    "Module", "TrainConfig", "evaluate", "fit", "get_backend", "get_num_threads", "load",
    "load_checkpoint", "predict", "predict_proba", "save", "set_backend", "set_num_threads",
    "train", "__version__",
]
