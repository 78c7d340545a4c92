"""Photos and scans of digits made to look like MNIST: reading image files, MNIST's preprocessing.

MNIST's digits are white on black, their ink fitted in a 20x20 box (aspect ratio
kept, anti-aliased) and placed in a 28x28 field so that the ink's centre of mass
is at the centre. :func:`mnist_preprocess` does the same to any grayscale image:

1. grayscale (colour images are converted with Pillow's ITU-R 601-2 luma; a
   transparent background counts as white);
2. invert when the background is light: the background is the median of the
   border pixels, and a median above mid-grey means dark ink on light paper;
3. subtract the background level and stretch the ink to 0..255, so a grey
   page or faint pencil looks like MNIST's black background and white ink;
4. crop to the bounding box of the ink (pixels above 10% of the brightest);
5. resize so that the longer side is 20 pixels, keeping the aspect ratio;
6. paste it into a 28x28 black field, shifted so that its centre of mass lands
   on the field's centre (kept inside the field).

Reading files needs Pillow: ``pip install fcnn[images]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "load_image", "mnist_preprocess"]

#: File suffixes read as images (by Pillow); anything else is not an image to ``fcnn predict``.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Ink is what is brighter than this share of the brightest pixel, once the
# background is removed: it keeps JPEG ringing and paper grain out of the box.
_INK_FRACTION = 0.1


def _import_pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ImportError(
            "reading image files needs Pillow: pip install fcnn[images] (or pip install pillow)"
        ) from None
    return Image, ImageOps


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file (PNG, JPEG, BMP, ...) as a 2-D uint8 grayscale array.

    The EXIF orientation of photos is applied; transparent pixels become white.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    np.ndarray
        The image as a 2-D uint8 grayscale array.

    Raises
    ------
    ImportError
        Pillow is not installed.
    FileNotFoundError
        There is no file at ``path``.
    ValueError
        The file is not an image Pillow can read (the message names it).
    """
    Image, ImageOps = _import_pillow()
    from PIL import UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: damaged or truncated image ({error})") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def mnist_preprocess(image: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """An image of one digit (or object) made to look like an MNIST image (see the module doc).

    Parameters
    ----------
    image : np.ndarray
        A 2-D grayscale image of any size (uint8 0..255, or float 0..1), dark ink
        on light paper or light ink on dark.
    size : int, default=28
        Side of the square output (MNIST: 28).
    box : int, default=20
        Side of the square the ink is fitted in (MNIST: 20), <= ``size``.

    Returns
    -------
    np.ndarray
        A ``(size, size)`` uint8 array, white ink on black, ready for
        ``fcnn.predict(net, result[np.newaxis])``.

    Raises
    ------
    TypeError
        ``image`` is not a numeric numpy array.
    ValueError
        ``image`` is not 2-D, is empty, holds NaN or infinity, is blank (one
        uniform colour, no ink to find), or ``box`` is not in [1, ``size``].

    Examples
    --------
        >>> from fcnn.images import load_image, mnist_preprocess
        >>> digit = mnist_preprocess(load_image("digit.png"))     # (28, 28) uint8
        >>> fcnn.predict(net, digit[np.newaxis])
    """
    Image, _ = _import_pillow()
    if not isinstance(image, np.ndarray) or image.dtype.kind not in "uif":
        raise TypeError(
            f"image must be a numeric numpy array, got "
            f"{getattr(image, 'dtype', type(image).__name__)}"
        )
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D grayscale array, got shape {image.shape}")
    if not 1 <= box <= size:
        raise ValueError(f"box must be in [1, size={size}], got {box}")
    pixels = image.astype(np.float64)
    if image.dtype.kind == "f":
        if not np.isfinite(pixels).all():
            raise ValueError("image holds NaN or infinite pixels")
        pixels = pixels * 255
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    background = float(np.median(border))
    if background > 127.5:
        pixels, background = 255 - pixels, 255 - background
    ink = np.clip(pixels - background, 0, None)
    brightest = ink.max()
    if brightest <= 0:
        raise ValueError("image is blank: one uniform colour, no ink to find")
    ink *= 255 / brightest
    rows = np.flatnonzero((ink > _INK_FRACTION * 255).any(axis=1))
    cols = np.flatnonzero((ink > _INK_FRACTION * 255).any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    height, width = ink.shape
    scale = box / max(height, width)
    new_height = max(1, round(height * scale))
    new_width = max(1, round(width * scale))
    resized = Image.fromarray(ink.astype(np.float32)).resize(
        (new_width, new_height), Image.Resampling.LANCZOS
    )
    fitted = np.clip(np.asarray(resized, dtype=np.float64), 0, 255)

    total = fitted.sum()
    if total <= 0:  # a speck that vanished in the resize: centre the box instead
        centre_row, centre_col = (new_height - 1) / 2, (new_width - 1) / 2
    else:
        centre_row = float((fitted.sum(axis=1) * np.arange(new_height)).sum() / total)
        centre_col = float((fitted.sum(axis=0) * np.arange(new_width)).sum() / total)
    top = _offset(size / 2 - centre_row, new_height, size)
    left = _offset(size / 2 - centre_col, new_width, size)
    field = np.zeros((size, size), np.float64)
    field[top : top + new_height, left : left + new_width] = fitted
    return np.rint(field).astype(np.uint8)


def _offset(wanted: float, length: int, size: int) -> int:
    """Where ``length`` pixels start so that their centre of mass is centred, inside the field."""
    return int(min(max(round(wanted), 0), size - length))
