"""MNIST and Fashion-MNIST on disk: an IDX file reader, loaders that check every
file against its known SHA-256 before use, a mirror-by-mirror downloader that
never leaves a half-written file under a final name, and a seeded
train/validation split.

Both loaders are one generic loader (``_load``) run on a ``_Dataset``
description; adding an MNIST-like set means adding a description, not a loader.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import math
import os
import socket
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from ._checks import INT32_MAX, check_int
from ._io import create_temp, remove_stale_temps

__all__ = [
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MIRRORS",
    "MNIST_CLASSES",
    "MNIST_MIRRORS",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "train_val_split",
]

PathLike = str | os.PathLike

# ---------------------------------------------------------------------------
# IDX format

# Type code -> element dtype. The format stores multi-byte items big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
# IDX sizes are 32-bit signed integers; NumPy arrays cannot have more than 64 dimensions.
_IDX_MAX_DIMS = 64


# Deflate expands at most 1032:1 (a 258-byte match per 2 bits): a gzip file of N bytes
# cannot hold more than this many times N, whatever its header or trailer claims.
_DEFLATE_MAX_RATIO = 1032


def _read_payload(path: PathLike, source: str | None = None) -> bytearray:
    """Return the bytes of the IDX file ``path``, decompressed when they start with the gzip magic.

    The header is read first and the sizes it declares are checked against what the
    file can hold before the rest is read: memory never exceeds what the file really
    holds (a 29-byte .gz claiming 4 GiB is refused at once, a gzip bomb is cut off one
    byte past its declared size). The result is a bytearray, so that the arrays parsed
    from it can be views (one copy of MNIST's 47 MB of pixels in memory, not three).
    ``source`` names the file in messages (a download's URL); defaults to ``path``.

    Raises
    ------
    OSError
        If the file cannot be read.
    ValueError
        If the header is malformed, declares more data than the file can
        hold, or the gzip stream is corrupt, truncated or longer than declared.
    """
    source = path if source is None else source
    with open(path, "rb") as stream:
        file_size = os.fstat(stream.fileno()).st_size
        gzipped = stream.read(2) == _GZIP_MAGIC
        stream.seek(0)
        if not gzipped:
            return _read_idx_stream(stream, source, file_size, None)
        try:
            with gzip.GzipFile(fileobj=stream) as unzipped:
                return _read_idx_stream(unzipped, source, file_size * _DEFLATE_MAX_RATIO, file_size)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise ValueError(f"{source}: corrupt gzip stream: {exc}") from exc


def _read_up_to(data: bytearray, source: BinaryIO, size: int) -> None:
    """Append bytes of ``source`` to ``data`` until it holds ``size`` bytes or the source ends."""
    while len(data) < size:
        chunk = source.read(min(_CHUNK_SIZE, size - len(data)))
        if not chunk:
            return
        data += chunk


def _read_idx_stream(
    source: BinaryIO, path: PathLike, bound: int, gzip_size: int | None
) -> bytearray:
    """The IDX bytes of ``source``, header first; ``bound``: the most the file can hold.

    ``gzip_size`` is the compressed file's size, or None when ``source`` is the raw file
    (then ``bound`` is its exact size).
    """
    data = bytearray()
    _read_up_to(data, source, 4)
    _read_up_to(data, source, _idx_header_size(data, path))
    dtype, shape, header_size, data_bytes = _idx_layout(data, path)
    total = header_size + data_bytes
    if gzip_size is not None and total > bound:
        raise ValueError(
            f"{path}: header says {data_bytes} bytes of data (shape {shape}, {dtype.name}), more "
            f"than a gzip file of {gzip_size} bytes can hold (deflate expands at most "
            f"{_DEFLATE_MAX_RATIO}:1)"
        )
    if gzip_size is None and total != bound:
        _check_data_size(path, shape, dtype, data_bytes, bound - header_size)
    _read_up_to(data, source, total + 1)  # one byte more than declared: trailing data shows
    if len(data) > total:
        raise ValueError(
            f"{path}: trailing data: the gzip stream holds more than the {data_bytes} bytes of "
            f"data its header declares (shape {shape}, {dtype.name})"
        )
    return data


def _idx_header_size(data: bytearray, path: PathLike) -> int:
    """The header size of an IDX file from its first 4 bytes, after checking them."""
    if len(data) < 4:
        raise ValueError(
            f"{path}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic"
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: magic starts with bytes 0x{data[0]:02x} 0x{data[1]:02x}, "
            "expected 0x00 0x00"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise ValueError(
            f"{path}: unknown IDX type code 0x{type_code:02X}, expected one of {known}"
        )
    if not 1 <= ndim <= _IDX_MAX_DIMS:
        raise ValueError(f"{path}: IDX header has {ndim} dimensions, expected 1 to {_IDX_MAX_DIMS}")
    return 4 + 4 * ndim


def _idx_layout(data: bytearray, path: PathLike) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """Element dtype, shape, header size and data size in bytes from an IDX header."""
    header_size = _idx_header_size(data, path)
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated header: {data[3]} dimensions need {header_size} header bytes, "
            f"file has {len(data)}"
        )
    shape = struct.unpack(f">{data[3]}I", data[4:header_size])
    for axis, size in enumerate(shape):
        if size > INT32_MAX:
            raise ValueError(
                f"{path}: dimension {axis} has size {size}, larger than the IDX maximum {INT32_MAX}"
            )
    dtype = _IDX_DTYPES[data[2]]
    return dtype, shape, header_size, math.prod(shape) * dtype.itemsize


def _check_data_size(
    path: PathLike, shape: tuple[int, ...], dtype: np.dtype, expected_bytes: int, found_bytes: int
) -> None:
    """Raise unless the data after the header have the size the header declares."""
    if found_bytes < expected_bytes:
        raise ValueError(
            f"{path}: truncated: header says {expected_bytes} bytes of data (shape {shape}, "
            f"{dtype.name}), found {found_bytes}"
        )
    if found_bytes > expected_bytes:
        raise ValueError(
            f"{path}: {found_bytes - expected_bytes} trailing bytes: header says {expected_bytes} "
            f"bytes of data (shape {shape}, {dtype.name}), found {found_bytes}"
        )


def _parse_idx(data: bytearray, path: PathLike) -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file into a native-endian array.

    ``path`` only names the file in error messages.
    """
    dtype, shape, header_size, expected_bytes = _idx_layout(data, path)
    _check_data_size(path, shape, dtype, expected_bytes, len(data) - header_size)
    count = math.prod(shape)
    items = np.frombuffer(data, dtype=dtype, count=count, offset=header_size)
    if dtype.itemsize == 1:  # a writable view of the bytearray: no copy of the pixels
        return items.reshape(shape)
    # Multi-byte values are stored big-endian: astype gives a native-endian copy.
    return items.astype(dtype.newbyteorder("=")).reshape(shape)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip'd, into a NumPy array.

    Gzip is detected from the first two bytes (``1f 8b``), not from the file name.

    Parameters
    ----------
    path : PathLike
        The file to read.

    Returns
    -------
    np.ndarray
        A writable, native-endian array whose shape is the one in the header and
        whose dtype follows the type code: 0x08 uint8, 0x09 int8, 0x0B int16,
        0x0C int32, 0x0D float32, 0x0E float64.

    Raises
    ------
    OSError
        If the file cannot be opened or read.
    ValueError
        If the file is not a well-formed IDX file: corrupt gzip stream,
        magic not starting with two zero bytes, unknown type code, zero or
        more than 64 dimensions, a size above 2**31 - 1, or a payload shorter
        or longer than the header says. The message names the file and the
        problem.
    """
    return _parse_idx(_read_payload(path), path)


# ---------------------------------------------------------------------------
# Dataset descriptions

# Same four file names for every MNIST-like set; key -> base name without ".gz".
# Labels come first so that a bad mirror or a bad copy is found on a small file,
# before tens of megabytes of images are fetched or decompressed.
_FILES = {
    "train_labels": "train-labels-idx1-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
    "train_images": "train-images-idx3-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
}

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# The publisher's download site, then the data/fashion folder of the publisher's
# own repository. Plain HTTP is acceptable: every payload is checked by SHA-256.
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

# SHA-256 of the decompressed files (hashing the payload, not the .gz, accepts any
# gzip re-compression and the raw layout alike). MNIST: from the shared datasets
# README, whose decompressed files are byte-identical to the official ones.
_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Fashion-MNIST: computed here from Debian's dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 (/usr/share/datasets/fashion-mnist). Debian's .gz files
# are not byte-identical to the published ones (strip-nondeterminism dropped the
# file name from the gzip header and reset its mtime), but their deflate streams
# are the publisher's: restoring the header (flag FNAME, the base name, mtime
# 2017-08-31 10:50:06 UTC for train-*, 10:50:27 UTC for t10k-*) reproduces the
# published .gz md5s exactly (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...).
_FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclass(frozen=True)
class _Dataset:
    """What the generic loader needs to know about one MNIST-like data set."""

    name: str  # for messages: "MNIST"
    folder: str  # download folder under root, also searched first
    subfolders: tuple[str, ...]  # searched under root, in order ("" is root itself)
    system_folders: tuple[str, ...]  # absolute folders searched last (distribution packages)
    mirrors: tuple[str, ...]
    sha256: dict[str, str]  # base file name -> SHA-256 of the decompressed file
    classes: tuple[str, ...]
    option: str  # the CLI's --dataset value: "mnist"
    loader: str  # the Python loader's name: "load_mnist"
    image_shape: tuple[int, int] = (28, 28)


_MNIST = _Dataset(
    name="MNIST",
    folder="MNIST",
    subfolders=("MNIST", "MNIST/raw", ""),
    system_folders=(),
    mirrors=MNIST_MIRRORS,
    sha256=_MNIST_SHA256,
    classes=MNIST_CLASSES,
    option="mnist",
    loader="load_mnist",
)
_FASHION_MNIST = _Dataset(
    name="Fashion-MNIST",
    folder="FashionMNIST",
    subfolders=("FashionMNIST", "FashionMNIST/raw", "fashion-mnist", ""),
    system_folders=("/usr/share/datasets/fashion-mnist",),
    mirrors=FASHION_MNIST_MIRRORS,
    sha256=_FASHION_MNIST_SHA256,
    classes=FASHION_MNIST_CLASSES,
    option="fashion-mnist",
    loader="load_fashion_mnist",
)
# Both sets use the same file names, so a folder may hold the other set's file
# under the name we look for: knowing every hash lets the loader tell that case
# (skip it) from a corrupt or altered file (refuse it).
_KNOWN_PAYLOADS = {
    digest: dataset for dataset in (_MNIST, _FASHION_MNIST) for digest in dataset.sha256.values()
}
# Decompressed size of each file, the same in both sets: caps what a download may bring.
_FILE_SIZES = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}

# ---------------------------------------------------------------------------
# Errors


class DatasetNotFoundError(FileNotFoundError):
    """Raised when data set files are missing and could not be downloaded.

    A :class:`FileNotFoundError` (so an :class:`OSError`), as Python users catch
    missing files; ``str(error)`` is the whole multi-line explanation.

    Attributes
    ----------
    dataset
        Name of the data set, e.g. ``"MNIST"``.
    missing
        Names of the missing files (``.gz`` form).
    folder
        The folder the files should be put in.
    mirrors
        The mirror URLs the files can be downloaded from.
    """

    # Defaults so that pickling (args only, then __dict__) can rebuild it, e.g. across joblib.
    def __init__(
        self,
        message: str,
        *,
        dataset: str = "",
        missing: Sequence[str] = (),
        folder: Path | None = None,
        mirrors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.missing = tuple(missing)
        self.folder = folder
        self.mirrors = tuple(mirrors)

    def __str__(self) -> str:
        return str(self.args[0])


def _not_found(
    dataset: _Dataset,
    missing: Sequence[str],
    folder: Path,
    searched: Sequence[Path],
    mirrors: Sequence[str],
    reason: str,
    found: _Found,
) -> DatasetNotFoundError:
    """Build the error that tells the user what is missing, why, and how to fix it."""
    missing_gz = [f"{name}.gz" for name in missing]
    lines = [
        f"{dataset.name}: {len(missing)} of its files are missing: {', '.join(missing_gz)}.",
        reason,
        *found.notes,
    ]
    for other in found.other_datasets:
        lines.append(
            f"The files found are {other.name}'s, not {dataset.name}'s: to use them, pass "
            f"`--dataset {other.option}` to fcnn, or call fcnn.{other.loader}() in Python."
        )
    lines += [
        "Looked in:",
        *(f"  {path}" for path in searched),
        "To fix it, either:",
        f"  - put the files (.gz or uncompressed, named as above) in {folder}",
        "  - or point fcnn at a folder that holds them: `--data-dir DIR` on the command line,",
        f"    the environment variable FCNN_DATA=DIR, or {dataset.loader}(root=DIR) in Python.",
        "The files can be downloaded from any of these mirrors:",
        *(f"  {mirror}" for mirror in mirrors),
    ]
    return DatasetNotFoundError(
        "\n".join(lines), dataset=dataset.name, missing=missing_gz, folder=folder, mirrors=mirrors
    )


@dataclass
class _Found:
    """What the search for files met besides the files themselves, for the error message."""

    notes: list[str]
    other_datasets: list[_Dataset]


# ---------------------------------------------------------------------------
# Finding and verifying files


def _default_root() -> Path:
    """``$FCNN_DATA`` if set, else ``~/.cache/fcnn``."""
    env = os.environ.get("FCNN_DATA")
    return Path(env) if env else Path.home() / ".cache" / "fcnn"


def _search_folders(dataset: _Dataset, root: Path) -> list[Path]:
    """Folders searched for the files, in order."""
    folders = [root / sub if sub else root for sub in dataset.subfolders]
    return folders + [Path(folder) for folder in dataset.system_folders]


def _sha256_mismatch(source: PathLike, name: str, dataset: _Dataset, actual: str) -> str:
    """What is wrong with a file (a path or a URL) whose payload is not the known one."""
    return (
        f"{source}: SHA-256 of the decompressed data is {actual}, expected {dataset.sha256[name]} "
        f"for {dataset.name} {name}"
    )


def _locate(
    dataset: _Dataset, name: str, folders: Sequence[Path], found: _Found
) -> np.ndarray | None:
    """Load the first copy of ``name`` (raw or .gz) found in ``folders``, verified.

    Returns None when there is no usable copy. A copy that is the other data set's
    file of the same name is skipped with a note; any other mismatch raises.
    """
    for folder in folders:
        for path in (folder / name, folder / f"{name}.gz"):
            if not path.is_file():
                continue
            payload = _read_payload(path)
            actual = hashlib.sha256(payload).hexdigest()
            if actual == dataset.sha256[name]:
                return _parse_idx(payload, path)
            other = _KNOWN_PAYLOADS.get(actual)
            if other is not None and other.name != dataset.name:
                found.notes.append(
                    f"Skipped {path}: it is the {other.name} file, not {dataset.name}'s."
                )
                if other.name not in [known.name for known in found.other_datasets]:
                    found.other_datasets.append(other)
                continue
            raise ValueError(
                f"{_sha256_mismatch(path, name, dataset, actual)}. The file is corrupt or altered: "
                "delete it to have it downloaded again, or replace it with the official file."
            )
    return None


def _check_split(dataset: _Dataset, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Check that one split's images and labels agree with each other and the description."""
    expected_shape = (images.shape[0], *dataset.image_shape)
    if images.dtype != np.uint8 or images.shape != expected_shape:
        raise ValueError(
            f"{dataset.name} {split} images must be uint8 of shape (N, "
            f"{', '.join(map(str, dataset.image_shape))}), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{dataset.name} {split} labels must be 1-D uint8, got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{dataset.name} {split}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    if labels.size and labels.max() >= len(dataset.classes):
        raise ValueError(
            f"{dataset.name} {split} labels must be in 0..{len(dataset.classes) - 1}, "
            f"found {labels.max()}"
        )


# ---------------------------------------------------------------------------
# Downloading

DOWNLOAD_TIMEOUT = 30.0
"""Seconds to wait for a connection or for the next block of data."""
DOWNLOAD_ATTEMPTS = 3
"""Tries per file and mirror before moving on to the next mirror (a mirror that
cannot be reached at all, or answers 4xx or a bad file, gets only one)."""
RETRY_DELAY = 1.0
"""Seconds before the second try; doubled before each later one."""
DOWNLOAD_DEADLINE = 600.0
"""Seconds one try at one file may take in all, however steadily the data trickle in
(checked after each block received, so the true limit is this plus DOWNLOAD_TIMEOUT)."""

_CHUNK_SIZE = 1 << 16


class _TransferRefused(OSError):
    """A transfer stopped on our side (too big, too slow): the next mirror is tried."""


def _download_cap(name: str) -> int:
    """The most bytes a download of ``name``.gz may bring: its decompressed size, plus
    room for gzip's framing of data that does not compress."""
    size = _FILE_SIZES[name]
    return size + size // 64 + (1 << 16)


def _fetch(url: str, out: BinaryIO, progress: bool, label: str, cap: int) -> None:
    """Stream ``url`` into the open binary file ``out``, at most ``cap`` bytes within
    DOWNLOAD_DEADLINE seconds; raise OSError if cut short, too big or too slow."""
    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    request = urllib.request.Request(url, headers={"User-Agent": "fcnn"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > cap:
            raise _TransferRefused(
                f"announces {total} bytes, more than the {cap} this file can take"
            )
        received = 0
        with tqdm(
            total=total,
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
            leave=False,
        ) as bar:
            # read1: whatever has arrived, so that a trickle cannot hold off the deadline.
            while chunk := response.read1(_CHUNK_SIZE):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                if received > cap:
                    raise _TransferRefused(f"sent more than the {cap} bytes this file can take")
                if time.monotonic() > deadline:
                    raise _TransferRefused(
                        f"too slow: {received} bytes in {DOWNLOAD_DEADLINE:g} s (DOWNLOAD_DEADLINE)"
                    )
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")


def _unreachable(exc: BaseException) -> bool:
    """True if ``exc`` says the mirror could not be reached at all (no such host,
    connection refused or timed out, no route): retrying soon would only add delay
    when offline. Failures after the connection (resets, cut transfers) are retried.
    """
    if not isinstance(exc, urllib.error.URLError) or isinstance(exc, urllib.error.HTTPError):
        return False
    reason = exc.reason
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError)):
        return True
    return isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _download_one(
    dataset: _Dataset, name: str, folder: Path, mirrors: Sequence[str], progress: bool
) -> tuple[np.ndarray | None, list[str]]:
    """Download and verify ``name`` into ``folder``, trying each mirror in turn.

    Returns the file's array and the failures met on the way (one line per failed
    try), or None and the failures if no mirror gave a good file. The file is
    written to a temporary name in ``folder`` and renamed only once verified.
    """
    failures = []
    remove_stale_temps(folder, name, ".part")  # left by a download that was killed
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{name}.gz"
        for attempt in range(DOWNLOAD_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_DELAY * 2 ** (attempt - 1))
            out, temp_path = create_temp(folder, name, ".part")
            try:
                with out:
                    _fetch(url, out, progress, f"{name}.gz", _download_cap(name))
                # Verify before the rename: a bad file never appears under the final name.
                payload = _read_payload(temp_path, url)
                actual = hashlib.sha256(payload).hexdigest()
                if actual != dataset.sha256[name]:
                    raise ValueError(_sha256_mismatch(url, name, dataset, actual))
                with open(temp_path, "rb") as downloaded:
                    gzipped = downloaded.read(2) == _GZIP_MAGIC
                final_path = folder / (f"{name}.gz" if gzipped else name)
                array = _parse_idx(payload, final_path)
                os.replace(temp_path, final_path)
                return array, failures
            except urllib.error.HTTPError as exc:
                failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
                exc.close()
                if exc.code < 500:  # 403, 404: asking again will not help
                    break
            except (ValueError, _TransferRefused) as exc:  # corrupt, wrong hash, too big, too slow
                failures.append(str(exc) if str(exc).startswith(url) else f"{url}: {exc}")
                break
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
                failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
                if _unreachable(exc):
                    break
            finally:
                temp_path.unlink(missing_ok=True)
    return None, failures


# ---------------------------------------------------------------------------
# The generic loader

Split = tuple[np.ndarray, np.ndarray]


def _load(
    dataset: _Dataset,
    root: PathLike | None,
    download: bool,
    progress: bool,
    mirrors: Sequence[str] | None,
    split: str | None,
) -> tuple[Split, Split] | Split:
    """Find, download if allowed, verify and return one MNIST-like data set (or one split)."""
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    splits = ("train", "test") if split is None else (split,)
    root = Path(root).expanduser() if root is not None else _default_root()
    if isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a sequence of base URLs, got the string {mirrors!r}")
    mirrors = dataset.mirrors if mirrors is None else tuple(mirrors)
    if not mirrors:
        raise ValueError("mirrors must hold at least one base URL, got none")
    folder = root / dataset.folder
    searched = _search_folders(dataset, root)
    found = _Found(notes=[], other_datasets=[])
    # In _FILES order (labels first), only the files of the splits asked for.
    names = [name for key, name in _FILES.items() if key.split("_")[0] in splits]
    arrays = {name: _locate(dataset, name, searched, found) for name in names}
    missing = [name for name, array in arrays.items() if array is None]
    if missing and not download:
        raise _not_found(
            dataset,
            missing,
            folder,
            searched,
            mirrors,
            "download=False, so nothing was fetched.",
            found,
        )
    if missing:
        created = _make_folder(folder)
        try:
            for index, name in enumerate(missing):
                arrays[name], failures = _download_one(dataset, name, folder, mirrors, progress)
                if arrays[name] is None:
                    reason = f"Downloading {name}.gz failed from every mirror:\n" + "\n".join(
                        f"  {line}" for line in failures
                    )
                    raise _not_found(
                        dataset, missing[index:], folder, searched, mirrors, reason, found
                    )
        finally:
            _remove_if_empty(created)  # offline: leave no empty cache folder behind
    results = []
    for name in splits:
        images = arrays[_FILES[f"{name}_images"]]
        labels = arrays[_FILES[f"{name}_labels"]]
        _check_split(dataset, name, images, labels)
        results.append((images, labels))
    return (results[0], results[1]) if split is None else results[0]


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    created = []
    path = folder
    while not path.exists() and path != path.parent:
        created.append(path)
        path = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove the folders (deepest first) that are still empty; ignore any that are not."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def load_mnist(
    root: PathLike | None = None,
    download: bool = True,
    progress: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    split: str | None = None,
) -> tuple[Split, Split] | Split:
    """Load the MNIST handwritten digits, downloading missing files if allowed.

    Every file's decompressed content is checked against its known SHA-256 before
    use, so a changed file is refused rather than silently trained on.

    Parameters
    ----------
    root : PathLike | None
        Folder holding the four IDX files (raw or ``.gz``), in ``MNIST/``,
        ``MNIST/raw/`` (torchvision's layout) or directly. Defaults to
        ``$FCNN_DATA`` if set, else ``~/.cache/fcnn``.
    download : bool
        Download missing files into ``<root>/MNIST/``. If False, a
        missing file raises without touching the network.
    progress : bool
        Show a tqdm progress bar while downloading.
    mirrors : Sequence[str] | None
        Base URLs tried in order; defaults to ``MNIST_MIRRORS``.
    split : str | None
        ``None`` for both splits; ``"train"`` or ``"test"`` for that split
        alone, which needs only its two files (evaluating needs no training data).

    Returns
    -------
    tuple[Split, Split] | Split
        ``((x_train, y_train), (x_test, y_test))``: uint8 images of shape
        (N, 28, 28) and uint8 labels of shape (N,) in 0..9, N = 60,000 for
        training and 10,000 for testing. With ``split``, that split's
        ``(images, labels)`` only.

    Raises
    ------
    ValueError
        If a file is corrupt, fails its checksum (the message names
        the file, the expected and the actual hash), or images and labels
        disagree; or ``split`` is not None, "train" or "test".
    DatasetNotFoundError
        If files are missing and ``download`` is False or
        every mirror failed. A :class:`FileNotFoundError`; the multi-line
        message names the files, the folder to put them in, ``--data-dir``
        and ``FCNN_DATA``, and the mirror URLs. No folder is left behind.

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_test, y_test = load_mnist(split="test")
    """
    return _load(_MNIST, root, download, progress, mirrors, split)


def load_fashion_mnist(
    root: PathLike | None = None,
    download: bool = True,
    progress: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    split: str | None = None,
) -> tuple[Split, Split] | Split:
    """Load Fashion-MNIST (Zalando's clothing images), downloading missing files if allowed.

    Same contract as :func:`load_mnist`: every file is checked against its known
    SHA-256 before use. Class names are in ``FASHION_MNIST_CLASSES``.

    Parameters
    ----------
    root : PathLike | None
        Folder holding the four IDX files (raw or ``.gz``), in
        ``FashionMNIST/``, ``FashionMNIST/raw/``, ``fashion-mnist/`` or
        directly; Debian's copy in /usr/share/datasets/fashion-mnist (package
        ``dataset-fashion-mnist``) is used when root has none. Defaults to
        ``$FCNN_DATA`` if set, else ``~/.cache/fcnn``. A file there that is
        MNIST's file of the same name is skipped.
    download : bool
        Download missing files into ``<root>/FashionMNIST/``. If False,
        a missing file raises without touching the network.
    progress : bool
        Show a tqdm progress bar while downloading.
    mirrors : Sequence[str] | None
        Base URLs tried in order; defaults to ``FASHION_MNIST_MIRRORS``.
    split : str | None
        ``None`` for both splits; ``"train"`` or ``"test"`` for that split
        alone, which needs only its two files.

    Returns
    -------
    tuple[Split, Split] | Split
        ``((x_train, y_train), (x_test, y_test))``: uint8 images of shape
        (N, 28, 28) and uint8 labels of shape (N,) in 0..9, N = 60,000 for
        training and 10,000 for testing. With ``split``, that split's
        ``(images, labels)`` only.

    Raises
    ------
    ValueError
        If a file is corrupt, fails its checksum, or images and
        labels disagree; or ``split`` is not None, "train" or "test".
    DatasetNotFoundError
        If files are missing and ``download`` is False or
        every mirror failed (a :class:`FileNotFoundError`, see
        :func:`load_mnist`).
    """
    return _load(_FASHION_MNIST, root, download, progress, mirrors, split)


# ---------------------------------------------------------------------------
# Validation split


def train_val_split(
    images: np.ndarray, labels: np.ndarray, val_size: int = 10_000, seed: int = 0
) -> tuple[Split, Split]:
    """Carve a random validation set out of the training data, for model selection.

    The same ``seed`` gives the same split. Both parts keep the original order of
    their samples.

    Parameters
    ----------
    images : np.ndarray
        Training images, shape (N, ...).
    labels : np.ndarray
        Training labels, shape (N,).
    val_size : int
        Number of samples moved to the validation set, in [1, N - 1].
    seed : int
        Seed of the random permutation.

    Returns
    -------
    tuple[Split, Split]
        ``((x_train, y_train), (x_val, y_val))`` with N - val_size and val_size
        samples: new arrays, the inputs are not modified.

    Raises
    ------
    TypeError
        If ``val_size`` is not an integer.
    ValueError
        If ``labels`` is not 1-D, ``images`` and ``labels`` have
        different lengths, N < 2, or ``val_size`` is outside [1, N - 1].
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if images.ndim == 0 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images and labels must have the same number of samples, got shapes {images.shape} "
            f"and {labels.shape}"
        )
    val_size = check_int(val_size, "val_size")
    count = labels.shape[0]
    if count < 2:
        raise ValueError(f"need at least 2 samples to split off a validation set, got {count}")
    if not 1 <= val_size <= count - 1:
        raise ValueError(
            f"val_size must be in [1, {count - 1}] for {count} samples, got {val_size}"
        )
    order = np.random.default_rng(seed).permutation(count)
    val_index = np.sort(order[:val_size])
    train_index = np.sort(order[val_size:])
    return (images[train_index], labels[train_index]), (images[val_index], labels[val_index])
