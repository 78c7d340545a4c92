"""``DataLoader``: mini-batches of (images, labels), rescaled to [0, 1] one batch at a time."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ._backend import kernels
from ._checks import check_int, require_finite
from .augmentation import Augmentation

__all__ = ["DataLoader"]


class DataLoader:
    """Iterates over ``(images, labels)`` in mini-batches.

    Images stay in their own dtype (uint8 for MNIST: 47 MB rather than 376 MB
    as float64) and each batch is converted on the fly: integer images are
    divided by 255 into ``dtype``; float images are only cast. Each image is
    flattened, so (N, 28, 28) and (N, 784) give the same batches. Every batch
    is a new array: keeping one across iterations is safe.

    The data are checked once, here, before any batch: integer images of a
    dtype other than uint8 must lie in [0, 255] (16-bit scans are refused, not
    divided by 255 into values above 1), float images must be finite, labels
    must be non-negative integers (their upper bound, the number of classes, is
    checked by the loss).

    Parameters
    ----------
    dataset : tuple[np.ndarray, np.ndarray]
        a pair ``(images, labels)``: images (N, ...) and labels (N,).
    batch_size : int
        samples per batch (the original used 64).
    shuffle : bool
        draw a new random order every epoch.
    seed : int | None
        seed of the shuffling; the same seed gives the same batches run
        after run. ``None`` draws a fresh seed.
    drop_last : bool
        drop the last, smaller batch.
    dtype : npt.DTypeLike
        dtype of the image batches (float32 by default).
    augment : Augmentation | None
        warp every batch's images at random (see :class:`fcnn.Augmentation`),
        before they are divided by 255; ``None`` (default) leaves them as they
        are. Needs uint8 images of shape (N, height, width), or (N, side**2) for
        square ones. Sample ``p`` of epoch ``e`` (its ``p``-th in that epoch's
        order, epochs counted from 0 by the loader) is warped with the random
        stream ``e * N + p`` of :attr:`augment_seed` (``seed``, or a fresh one
        when ``seed`` is None): the batches are the same run after run, on any
        thread count, and the same through the fused epoch of
        :func:`fcnn.train`.

    Yields
    ------
    tuple[np.ndarray, np.ndarray]
        ``(x, y)``: x (B, features) of ``dtype``, y (B,) int64.

    Raises
    ------
    TypeError
        a non-array, a float or bool ``batch_size``, labels that are not
        integers, images that are not numbers, ``augment`` that is not an
        Augmentation, or augmented images that are not uint8.
    ValueError
        mismatched or empty shapes, ``batch_size < 1``, pixels or labels
        out of range (see above), augmented images whose height and width are
        not known; the message names the argument and the value.

    Examples
    --------
    >>> loader = DataLoader((train_images, train_labels), batch_size=64, seed=0)
    >>> for images, labels in loader: ...
    """

    def __init__(
        self,
        dataset: tuple[np.ndarray, np.ndarray],
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int | None = None,
        drop_last: bool = False,
        dtype: npt.DTypeLike = np.float32,
        augment: Augmentation | None = None,
    ) -> None:
        if not isinstance(dataset, (tuple, list)) or len(dataset) != 2:
            raise TypeError("dataset must be a pair (images, labels)")
        images, labels = dataset
        for name, array in (("images", images), ("labels", labels)):
            if not isinstance(array, np.ndarray):
                raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
        if images.ndim < 2 or images.shape[0] == 0:
            raise ValueError(f"images must have shape (N, ...) with N >= 1, got {images.shape}")
        if images.size == 0:
            raise ValueError(
                f"images must have at least one feature per sample, got shape {images.shape}"
            )
        if images.dtype.kind not in "uif":
            raise TypeError(f"images must have an integer or float dtype, got {images.dtype}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, got {labels.shape}"
            )
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.images = images.reshape(images.shape[0], -1)
        _check_image_values(self.images)
        self.labels = labels
        # int64 once, not per batch; checked here so that no batch is ever yielded from
        # labels a loss would misread (a uint64 2**64 - 1 must not wrap to -1).
        self._labels = _class_indices(labels)
        self._integer_images = self.images.dtype.kind in "iu"
        self._divisor = self.dtype.type(255)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.augment = augment
        #: Epochs whose order was drawn; the epoch being iterated is the last, counted from 0.
        self.epochs_started = 0
        if augment is not None:
            self.image_shape = _augmented_image_shape(images, augment)
            # Contiguous once here, not copied by the kernel at every batch.
            self.images = np.ascontiguousarray(self.images)
            self._image_stack = self.images.reshape(-1, *self.image_shape)
            if seed is None:
                seed = np.random.SeedSequence().entropy
            self.augment_seed = int(seed) % 2**64

    @property
    def num_samples(self) -> int:
        return self.images.shape[0]

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def epoch_order(self) -> np.ndarray:
        """The sample order of the next epoch (advances the shuffling state and
        :attr:`epochs_started`)."""
        self.epochs_started += 1
        if self.shuffle:
            return self._rng.permutation(self.num_samples)
        return np.arange(self.num_samples)

    def to_batch(self, images: np.ndarray) -> np.ndarray:
        """Converts raw images (B, features) to a new float batch (integers divided by 255)."""
        return self._converted(images, owned=False)

    def _converted(self, images: np.ndarray, owned: bool) -> np.ndarray:
        """``owned``: ``images`` is a gathered copy nobody else holds, usable as the batch."""
        if images.dtype.kind in "iu":
            # One pass into one new array; the same float division as astype() then /= 255.
            return np.divide(images, self._divisor, dtype=self.dtype)
        return images.astype(self.dtype, copy=not owned)

    def augmented(self, indices: np.ndarray, first_stream: int) -> np.ndarray:
        """Images ``indices`` warped by :attr:`augment`, sample b with the stream
        ``first_stream + b``: uint8 (B, features)."""
        warped = kernels().augment(
            self._image_stack, indices, self.augment_seed, first_stream, *self.augment.strengths()
        )
        return warped.reshape(indices.shape[0], -1)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.epoch_order()
        images, labels, size = self.images, self._labels, self.batch_size
        for start in range(0, len(self) * size, size):
            if self.augment is not None:
                indices = order[start : start + size]
                first_stream = (self.epochs_started - 1) * self.num_samples + start
                yield (
                    self._converted(self.augmented(indices, first_stream), owned=True),
                    labels[indices],
                )
            elif self.shuffle:
                indices = order[start : start + size]
                yield self._converted(images[indices], owned=True), labels[indices]
            else:
                # A slice is a view: no gather needed in order.
                yield (
                    self._converted(images[start : start + size], owned=False),
                    labels[start : start + size],
                )


def _augmented_image_shape(images: np.ndarray, augment: object) -> tuple[int, int]:
    """(height, width) of the images an Augmentation warps, or a clear error."""
    if not isinstance(augment, Augmentation):
        raise TypeError(
            f"augment must be an fcnn.Augmentation or None, got {type(augment).__name__}"
        )
    if images.dtype != np.uint8:
        raise TypeError(f"augment needs uint8 images, got {images.dtype}")
    if images.ndim == 3:
        return images.shape[1], images.shape[2]
    side = math.isqrt(images.shape[1]) if images.ndim == 2 else 0
    if images.ndim != 2 or side * side != images.shape[1]:
        raise ValueError(
            "augment needs images of shape (N, height, width), or (N, side**2) for square "
            f"ones, got {images.shape}"
        )
    return side, side


# Chunks of this many values bound the memory of the checks below.
_CHECK_CHUNK = 1 << 20


def _check_image_values(images: np.ndarray) -> None:
    """Refuses pixels DataLoader would turn silently into wrong batches, before any batch.

    Integer images are divided by 255, so any other integer dtype must hold values in
    [0, 255] (uint16 scans up to 65535 would become pixels up to 257); float images
    must be finite (a NaN pixel makes every logit NaN, and NaN's argmax is class 0).
    """
    if images.dtype == np.uint8:
        return
    require_finite(images)
    flat = images.reshape(-1)
    integer = images.dtype.kind in "iu"
    for first in range(0, flat.shape[0] if integer else 0, _CHECK_CHUNK):
        chunk = flat[first : first + _CHECK_CHUNK]
        low, high = chunk.min(), chunk.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"images of dtype {images.dtype} must lie in [0, 255] (DataLoader divides "
                f"integer images by 255), got values from {low} to {high}; give float "
                "images already scaled as you want them"
            )


def _class_indices(labels: np.ndarray) -> np.ndarray:
    """``labels`` as int64 class indices, or a ValueError naming the first one that is not."""
    if labels.dtype == np.int64:
        converted = labels
    else:
        if (
            labels.dtype.kind == "u"
            and labels.dtype.itemsize == 8
            and labels.size
            and labels.max() > np.iinfo(np.int64).max
        ):
            index = int(np.argmax(labels > np.iinfo(np.int64).max))
            raise ValueError(
                f"labels must be class indices >= 0, got {labels[index]} at index {index}"
            )
        converted = labels.astype(np.int64)
    if converted.size and converted.min() < 0:
        index = int(np.argmax(converted < 0))
        raise ValueError(f"labels must be class indices >= 0, got {labels[index]} at index {index}")
    return converted
