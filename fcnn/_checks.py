"""Argument checks shared by the public functions of more than one module."""

from __future__ import annotations

import numpy as np

# Chunks of this many values bound the memory of a scan for non-finite values.
_CHUNK = 1 << 20


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
