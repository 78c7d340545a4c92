"""``DataLoader``: mini-batches of (images, labels), rescaled to [0, 1] one batch at a time."""

from __future__ import annotations

import operator
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

__all__ = ["DataLoader"]


class DataLoader:
    """Iterates over ``(images, labels)`` in mini-batches.

    Images stay in their own dtype (uint8 for MNIST: 47 MB rather than 376 MB
    as float64) and each batch is converted on the fly: integer images are
    divided by 255 into ``dtype``; float images are only cast. Each image is
    flattened, so (N, 28, 28) and (N, 784) give the same batches.

    Args:
        dataset: a pair ``(images, labels)``: images (N, ...) and labels (N,).
        batch_size: samples per batch (the original used 64).
        shuffle: draw a new random order every epoch.
        seed: seed of the shuffling; the same seed gives the same batches run
            after run. ``None`` draws a fresh seed.
        drop_last: drop the last, smaller batch.
        dtype: dtype of the image batches (float32 by default).

    Yields:
        ``(x, y)``: x (B, features) of ``dtype``, y (B,) int64.

    Example:
        >>> loader = DataLoader((train_images, train_labels), batch_size=64, seed=0)
        >>> for images, labels in loader: ...
    """

    def __init__(self, dataset: tuple[np.ndarray, np.ndarray], batch_size: int = 64,
                 shuffle: bool = True, seed: int | None = None, drop_last: bool = False,
                 dtype: npt.DTypeLike = np.float32) -> None:
        if not isinstance(dataset, (tuple, list)) or len(dataset) != 2:
            raise TypeError("dataset must be a pair (images, labels)")
        images, labels = dataset
        for name, array in (("images", images), ("labels", labels)):
            if not isinstance(array, np.ndarray):
                raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
        if images.ndim < 2 or images.shape[0] == 0:
            raise ValueError(f"images must have shape (N, ...) with N >= 1, got {images.shape}")
        if images.dtype.kind not in "uif":
            raise TypeError(f"images must have an integer or float dtype, got {images.dtype}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, got {labels.shape}"
            )
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
        try:
            self.batch_size = operator.index(batch_size)
        except TypeError:
            raise TypeError(
                f"batch_size must be an integer, got {type(batch_size).__name__}"
            ) from None
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.images = images.reshape(images.shape[0], -1)
        self.labels = labels
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @property
    def num_samples(self) -> int:
        return self.images.shape[0]

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def epoch_order(self) -> np.ndarray:
        """The sample order of the next epoch (advances the shuffling state)."""
        if self.shuffle:
            return self._rng.permutation(self.num_samples)
        return np.arange(self.num_samples)

    def to_batch(self, images: np.ndarray) -> np.ndarray:
        """Converts raw images (B, features) to a float batch in [0, 1]."""
        batch = images.astype(self.dtype)
        if images.dtype.kind in "iu":
            batch /= 255
        return batch

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.epoch_order()
        for batch_index in range(len(self)):
            indices = order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]
            if self.shuffle:
                images, labels = self.images[indices], self.labels[indices]
            else:
                # A slice is a view: no gather needed in order.
                stop = indices[-1] + 1
                images, labels = self.images[indices[0]:stop], self.labels[indices[0]:stop]
            yield self.to_batch(images), labels.astype(np.int64, copy=False)
