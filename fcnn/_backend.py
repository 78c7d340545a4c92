"""The kernel backend switch: the C core (default) or its pure-NumPy twin."""

from types import ModuleType

from . import _core, reference

_BACKENDS: dict[str, ModuleType] = {"c": _core, "numpy": reference}
_current = "c"


def set_backend(name: str) -> None:
    """Run the whole Python API on ``"c"`` (fcnn._core) or ``"numpy"`` (fcnn.reference)."""
    global _current
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, got {name!r}")
    _current = name


def get_backend() -> str:
    """Name of the backend in use: ``"c"`` or ``"numpy"``."""
    return _current


def kernels() -> ModuleType:
    """The module whose kernels the layers, the loss and the optimiser call now."""
    return _BACKENDS[_current]
