"""Argument checks shared by the public functions of more than one module.

Every setting fcnn validates goes through these, so one kind of mistake gets one
wording everywhere: the message names the argument, what was expected and what
arrived. Also the training lock, which refuses a second thread training one net.
"""

from __future__ import annotations

import math
import operator
import threading

import numpy as np
import numpy.typing as npt

#: The BLAS fcnn links and the IDX file format both use 32-bit signed sizes.
INT32_MAX = 2**31 - 1
#: The C core takes step counts and sizes as int64.
INT64_MAX = 2**63 - 1

# Chunks of this many values bound the memory of a scan for non-finite values.
_CHUNK = 1 << 20


def check_int(
    value: object, name: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as a Python int, or an error naming ``name`` and the expected range.

    Accepts Python and NumPy integers (anything with ``__index__``) and refuses
    bool: ``epochs=True`` is a mistake, not 1.

    Parameters
    ----------
    value : object
        The argument to check.
    name : str
        Its name, for the message.
    minimum, maximum : int, optional
        Inclusive bounds; ``None`` for none.

    Returns
    -------
    int
        The value as a Python int.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (or is a bool).
    ValueError
        If it lies outside ``[minimum, maximum]``.

    Examples
    --------
    >>> check_int(3, "epochs", minimum=1)
    3
    >>> check_int(0, "epochs", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: epochs must be an integer >= 1, got 0
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = []
        if minimum is not None:
            bounds.append(f">= {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        raise ValueError(f"{name} must be an integer {' and '.join(bounds)}, got {value!r}")
    return number


def check_real(
    value: object,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    finite: bool = True,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
) -> float:
    """``value`` as a float, or an error naming ``name`` and what was expected.

    Accepts Python and NumPy reals (anything ``float()`` takes but a string or a
    bool). NaN fails every bound.

    Parameters
    ----------
    value : object
        The argument to check.
    name : str
        Its name, for the message.
    minimum, maximum : float, optional
        Inclusive bounds; ``None`` for none.
    finite : bool, default=True
        Refuse NaN and infinities.
    exclusive_minimum, exclusive_maximum : bool, default=False
        Make that bound exclusive (``> minimum``, ``< maximum``).

    Returns
    -------
    float
        The value as a Python float.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is not finite (when required) or lies outside the bounds.

    Examples
    --------
    >>> check_real(0.5, "lr", minimum=0)
    0.5
    >>> check_real(float("nan"), "lr", minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be finite and >= 0, got nan
    """
    if isinstance(value, (bool, np.bool_, str, bytes, bytearray)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    above = minimum is None or (number > minimum if exclusive_minimum else number >= minimum)
    below = maximum is None or (number < maximum if exclusive_maximum else number <= maximum)
    if (finite and not math.isfinite(number)) or not above or not below:
        bounds = ["finite"] if finite else []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum}")
        if maximum is not None:
            bounds.append(f"{'<' if exclusive_maximum else '<='} {maximum}")
        raise ValueError(f"{name} must be {' and '.join(bounds)}, got {value!r}")
    return number


def check_n_jobs(n_jobs: object, name: str = "n_jobs") -> int | None:
    """A worker count: a non-zero integer (-1: every core, as in joblib) or None.

    Raises
    ------
    ValueError
        For anything else, naming ``name``.
    """
    if n_jobs is None:
        return None
    if isinstance(n_jobs, (bool, np.bool_)) or not hasattr(n_jobs, "__index__") or n_jobs == 0:
        raise ValueError(
            f"{name} must be a non-zero integer (-1: every core) or None, got {n_jobs!r}"
        )
    return operator.index(n_jobs)


def check_threads(threads: object, name: str = "threads_per_worker") -> int | str | None:
    """A BLAS thread count per worker: an integer >= 1, ``"auto"`` or None (no limit).

    Raises
    ------
    ValueError
        For anything else, naming ``name``.
    """
    if threads is None or (isinstance(threads, str) and threads == "auto"):
        return threads
    if (
        isinstance(threads, (bool, np.bool_))
        or not hasattr(threads, "__index__")
        or operator.index(threads) < 1
    ):
        raise ValueError(f"{name} must be an integer >= 1, 'auto' or None, got {threads!r}")
    return operator.index(threads)


def check_labels(name: str, labels: npt.ArrayLike) -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array of non-negative class indices.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    labels : array_like
        Class indices.

    Returns
    -------
    numpy.ndarray
        The labels as a 1-D ``np.int64`` array (a view or copy of the input).

    Raises
    ------
    TypeError
        If the labels are not integers (bool and float are refused: a float
        label is most often a forgotten ``argmax``).
    ValueError
        If the labels are not 1-D, are empty or hold a negative value.
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of class indices, got {array.ndim}-D "
            f"array of shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got an array of shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    if (
        array.dtype.kind == "u"
        and array.dtype.itemsize >= 8
        and array.max() > np.iinfo(np.int64).max
    ):
        raise ValueError(f"{name} holds a label larger than int64 can hold: {array.max()}")
    array = array.astype(np.int64, copy=False)
    smallest = array.min()
    if smallest < 0:
        raise ValueError(f"{name} must hold non-negative class indices, got minimum {smallest}")
    return array


def require_finite(images: np.ndarray, name: str = "images") -> None:
    """Raises a ValueError naming the first NaN or inf of float ``images`` (N, ...) and where.

    A NaN pixel makes every logit NaN, and NaN's argmax is class 0: refused, never predicted.
    Scans in chunks: no temporary array the size of ``images``.
    """
    if images.dtype.kind != "f" or images.size == 0:
        return
    flat = images.reshape(-1)
    features = images.size // images.shape[0]
    for first in range(0, flat.shape[0], _CHUNK):
        chunk = flat[first : first + _CHUNK]
        # min and max propagate NaN and show inf.
        if np.isfinite(chunk.min()) and np.isfinite(chunk.max()):
            continue
        bad = first + int(np.flatnonzero(~np.isfinite(chunk))[0])
        sample, feature = divmod(bad, features)
        raise ValueError(
            f"{name} must be finite, got {flat[bad]} at sample {sample}, feature {feature}"
        )


def acquire_training_lock(net: object, action: str) -> threading.RLock:
    """Takes the net's training lock for ``action``, or raises if another thread holds it.

    Returns the (re-entrant) lock, acquired: the caller releases it. Forward, backward,
    ``loss.backward()`` and ``optimizer.step()`` each hold it while they run, so two
    threads that train one net fail at once instead of mixing their batches' caches.
    Created on first use: subclasses in the original project's style skip ``__init__``.
    """
    lock = net.__dict__.get("_training_lock")
    if lock is None:
        lock = net.__dict__.setdefault("_training_lock", threading.RLock())
    if not lock.acquire(blocking=False):
        raise RuntimeError(
            f"{action} while another thread runs forward, backward or an optimizer step on "
            "this net: a net trains from one thread at a time (net.inference, net.logits "
            "and fcnn.predict may run from many)"
        )
    return lock


def check_dropout_rate(value: object, name: str = "p") -> float:
    """A dropout rate: ``value`` as a float in [0, 1), or an error naming ``name``.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is NaN or outside [0, 1) (1 would drop every unit and scale by 1 / 0).
    """
    number = check_real(value, name, finite=False)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return number
