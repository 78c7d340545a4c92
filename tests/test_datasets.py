"""Tests of fcnn.datasets: the IDX reader on small generated files, the MNIST
loader on the real shared files in every supported layout, checksum refusal, and
the downloader against HTTP servers on 127.0.0.1 (never the real mirrors).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import fcnn.datasets as datasets
from fcnn.datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MIRRORS,
    MNIST_CLASSES,
    MNIST_MIRRORS,
    DatasetNotFoundError,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    train_val_split,
)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# ---------------------------------------------------------------------------
# read_idx on generated files

TYPE_CODES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}


def idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    """The IDX encoding of ``array``: header, then big-endian items."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def sample_array(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """Values that use the sign and the high bytes of the type, so a byte-order slip shows."""
    values = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    if np.dtype(dtype).kind == "f":
        return (values * -1.5 + 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return ((values * 7919) % (int(info.max) - int(info.min) + 1) + int(info.min)).astype(dtype)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("type_code", sorted(TYPE_CODES), ids=lambda code: f"0x{code:02X}")
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 2)], ids=str)
def test_read_idx_round_trip(tmp_path, compress, type_code, shape):
    expected = sample_array(TYPE_CODES[type_code], shape)
    data = idx_bytes(expected, type_code)
    path = tmp_path / "sample.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    array = read_idx(path)
    assert array.dtype == np.dtype(TYPE_CODES[type_code])
    assert array.dtype.isnative
    assert array.shape == shape
    assert array.flags.writeable
    np.testing.assert_array_equal(array, expected)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    expected = np.arange(6, dtype=np.uint8).reshape(2, 3)
    gzipped_without_suffix = tmp_path / "images-idx2-ubyte"
    gzipped_without_suffix.write_bytes(gzip.compress(idx_bytes(expected, 0x08)))
    raw_with_suffix = tmp_path / "images-idx2-ubyte.gz"
    raw_with_suffix.write_bytes(idx_bytes(expected, 0x08))
    np.testing.assert_array_equal(read_idx(gzipped_without_suffix), expected)
    np.testing.assert_array_equal(read_idx(str(raw_with_suffix)), expected)


def test_read_idx_accepts_zero_sized_dimension(tmp_path):
    path = tmp_path / "empty.idx"
    path.write_bytes(idx_bytes(np.zeros((0, 28, 28), dtype=np.uint8), 0x08))
    assert read_idx(path).shape == (0, 28, 28)


GOOD = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4), 0x0B)  # 16-byte header + 48 bytes


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an IDX file"),
        (b"\x00\x00", "not an IDX file"),
        (b"\x00\x01" + GOOD[2:], "magic starts with bytes 0x00 0x01"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not an IDX file: magic starts with bytes 0x89 0x50"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX type code 0x0A"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX type code 0x07"),
        (GOOD[:3] + b"\x00" + GOOD[4:], "0 dimensions"),
        (GOOD[:3] + b"\x41" + GOOD[4:], "65 dimensions"),
        (GOOD[:10], "truncated header: 3 dimensions need 16 header bytes, file has 10"),
        (GOOD[:4] + b"\xff\xff\xff\xff" + GOOD[8:], "dimension 0 has size 4294967295"),
        (GOOD[:-1], "truncated: header says 48 bytes of data (shape (2, 3, 4), int16), found 47"),
        (GOOD[:16], "truncated: header says 48 bytes of data"),
        (GOOD + b"\x00\x00\x00", "3 trailing bytes: header says 48 bytes of data"),
        (gzip.compress(GOOD)[:-10], "corrupt gzip stream"),
        (gzip.compress(GOOD)[:12], "corrupt gzip stream"),
        (b"\x1f\x8b" + b"not really gzip" * 4, "corrupt gzip stream"),
        (gzip.compress(GOOD[:-2]), "truncated: header says 48 bytes of data"),
    ],
    ids=[
        "empty",
        "two-bytes",
        "bad-magic",
        "png",
        "type-0x0A",
        "type-0x07",
        "zero-dims",
        "too-many-dims",
        "short-header",
        "huge-size",
        "truncated-1",
        "header-only",
        "trailing",
        "gzip-cut",
        "gzip-header-only",
        "gzip-garbage",
        "gzip-truncated-payload",
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad-idx3-ubyte.gz") as info:
        read_idx(path)
    assert message in str(info.value)


def test_read_idx_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nowhere-idx1-ubyte")


def gzip_member(payload: bytes, declared_size: int | None = None) -> bytes:
    """``payload`` gzip'd; ``declared_size`` makes the trailer lie about its size."""
    data = gzip.compress(payload)
    if declared_size is not None:
        data = data[:-4] + struct.pack("<I", declared_size % 2**32)
    return data


def read_idx_peak(path: Path) -> tuple[BaseException | None, int]:
    """What read_idx raises (None if nothing) and the peak memory it traced."""
    tracemalloc.start()
    try:
        read_idx(path)
        error = None
    except (OSError, ValueError) as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


def test_read_idx_tiny_gzip_declaring_gigabytes(tmp_path):
    """29 bytes of gzip whose IDX header and trailer claim 4 GiB: refused, nothing allocated."""
    header = b"\x00\x00\x08\x01" + struct.pack(">I", 2**31 - 1)
    path = tmp_path / "tiny-idx1-ubyte.gz"
    path.write_bytes(gzip_member(header + bytes(1), declared_size=2**32 - 1))
    assert path.stat().st_size < 40
    error, peak = read_idx_peak(path)
    assert isinstance(error, ValueError)
    assert "more than a gzip file of" in str(error) and "can hold" in str(error)
    assert peak < 2**20


def test_read_idx_gzip_bomb_is_cut_off(tmp_path):
    """A header declaring 10 bytes over a stream inflating to 256 MiB: stopped one byte past 10."""
    header = b"\x00\x00\x08\x01" + struct.pack(">I", 10)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header)]
    zeros = bytes(2**20)
    parts += [compressor.compress(zeros) for _ in range(256)]
    parts.append(compressor.flush())
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 2**20
    started = time.perf_counter()
    error, peak = read_idx_peak(path)
    assert time.perf_counter() - started < 1.0
    assert isinstance(error, ValueError) and "trailing data" in str(error)
    assert peak < 2**20


def test_read_idx_gzip_trailer_is_not_trusted(tmp_path):
    """A trailer claiming 4 GiB over a good file: nothing allocated from it (the size is
    checked by gzip at the end of the stream, and found wrong)."""
    path = tmp_path / "liar-idx3-ubyte.gz"
    path.write_bytes(gzip_member(GOOD, declared_size=2**32 - 1))
    error, peak = read_idx_peak(path)
    assert peak < 2**20
    assert isinstance(error, ValueError) and "corrupt gzip stream" in str(error)


def test_read_idx_raw_header_declaring_more_than_the_file(tmp_path):
    path = tmp_path / "raw-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 60000, 28, 28) + bytes(100))
    error, peak = read_idx_peak(path)
    assert isinstance(error, ValueError)
    assert "truncated: header says 47040000 bytes of data" in str(error) and "found 100" in str(
        error
    )
    assert peak < 2**20


# ---------------------------------------------------------------------------
# load_mnist on the real files


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    """The real MNIST, loaded once from the shared folder."""
    return load_mnist(mnist_dir, download=False)


@pytest.fixture(scope="module")
def mnist_raw_dir(mnist_dir, tmp_path_factory):
    """The four MNIST files uncompressed, for the raw layouts."""
    folder = tmp_path_factory.mktemp("mnist-raw")
    for name in MNIST_FILES:
        source = mnist_dir / f"{name}.gz"
        if source.exists():
            (folder / name).write_bytes(gzip.decompress(source.read_bytes()))
        else:
            shutil.copyfile(mnist_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def mnist_gz_dir(mnist_dir, tmp_path_factory):
    """A folder with the four MNIST .gz files: the shared one, unless it holds raw files."""
    if all((mnist_dir / f"{name}.gz").exists() for name in MNIST_FILES):
        return mnist_dir.resolve()
    folder = tmp_path_factory.mktemp("mnist-gz")
    for name in MNIST_FILES:
        (folder / f"{name}.gz").write_bytes(gzip.compress((mnist_dir / name).read_bytes(), 1))
    return folder


def changed_copy(mnist_gz_dir: Path, name: str, offset: int) -> bytes:
    """One MNIST file with one payload bit flipped, still a well-formed IDX file."""
    payload = bytearray(gzip.decompress((mnist_gz_dir / f"{name}.gz").read_bytes()))
    payload[offset] ^= 0x01
    return bytes(payload)


def link_files(source_dir: Path, target_dir: Path, names, suffix: str) -> None:
    """Symlink ``name + suffix`` of each name from ``source_dir`` into ``target_dir``."""
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (target_dir / f"{name}{suffix}").symlink_to(source_dir / f"{name}{suffix}")


def test_load_mnist_real_data(mnist):
    (train_images, train_labels), (test_images, test_labels) = mnist
    assert train_images.shape == (60_000, 28, 28) and train_images.dtype == np.uint8
    assert train_labels.shape == (60_000,) and train_labels.dtype == np.uint8
    assert test_images.shape == (10_000, 28, 28) and test_images.dtype == np.uint8
    assert test_labels.shape == (10_000,) and test_labels.dtype == np.uint8
    # Summing in float64 without a float copy of the images: the partial sums are
    # whole numbers below 2**53, so the mean is exact.
    assert abs(train_images.mean(dtype=np.float64) / 255 - 0.1306604762738429) < 1e-9
    assert np.bincount(test_labels, minlength=10).tolist() == TEST_LABEL_COUNTS
    assert np.bincount(train_labels).min() > 5_000


# The `mnist` fixture loads the shared folder as it is (flat); a mix of folders is
# loaded by test_download_skips_mirror_with_bad_files.
@pytest.mark.parametrize(
    ("subfolder", "compressed"),
    [("", False), ("MNIST", True), ("MNIST/raw", False)],
    ids=["flat-raw", "MNIST-gz", "MNIST-raw-raw"],
)
def test_load_mnist_layouts(tmp_path, mnist_gz_dir, mnist_raw_dir, mnist, subfolder, compressed):
    source = mnist_gz_dir if compressed else mnist_raw_dir
    link_files(source, tmp_path / subfolder, MNIST_FILES, ".gz" if compressed else "")
    loaded = load_mnist(str(tmp_path), download=False)
    assert_same_data(loaded, mnist)


def assert_same_data(loaded, expected) -> None:
    # np.array_equal: assert_array_equal takes over half a second on 47 MB of pixels.
    for got, want in zip((*loaded[0], *loaded[1]), (*expected[0], *expected[1]), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)


def test_load_mnist_default_root_is_fcnn_data(tmp_path, monkeypatch, mnist_gz_dir):
    link_files(mnist_gz_dir, tmp_path / "MNIST", MNIST_FILES[1::2], ".gz")
    monkeypatch.setenv("FCNN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST") in message
    # Only the images are missing; the labels were found.
    assert "train-images-idx3-ubyte.gz" in message and "t10k-images-idx3-ubyte.gz" in message
    assert "labels" not in message.splitlines()[0]


def test_load_mnist_default_root_without_fcnn_data(tmp_path, monkeypatch):
    monkeypatch.delenv("FCNN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(download=False)
    assert info.value.folder == tmp_path / ".cache" / "fcnn" / "MNIST"
    assert str(tmp_path / ".cache" / "fcnn" / "MNIST") in str(info.value)


def test_load_mnist_refuses_changed_file(tmp_path, mnist_gz_dir):
    name = "t10k-labels-idx1-ubyte"
    payload = changed_copy(mnist_gz_dir, name, 1000)  # one label changes class
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / f"{name}.gz").write_bytes(gzip.compress(payload))
    link_files(mnist_gz_dir, tmp_path / "MNIST", [n for n in MNIST_FILES if n != name], ".gz")
    with pytest.raises(ValueError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert f"{name}.gz" in message
    assert "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" in message  # expected
    assert hashlib.sha256(payload).hexdigest() in message  # actual


def test_load_mnist_refuses_changed_file_even_when_download_allowed(
    tmp_path, mnist_gz_dir, monkeypatch
):
    """A changed file on disk is an error, not a reason to fetch a replacement silently."""
    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    name = "train-labels-idx1-ubyte"
    (tmp_path / name).write_bytes(changed_copy(mnist_gz_dir, name, -1))
    with pytest.raises(ValueError, match=name):
        load_mnist(tmp_path, download=True)


def no_network(*args, **kwargs):
    raise AssertionError("the network must not be used here")


def test_load_mnist_missing_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    error = info.value
    assert isinstance(error, FileNotFoundError)  # what Python users catch for missing files
    message = str(error)
    assert len(message.splitlines()) > 5
    for name in MNIST_FILES:
        assert f"{name}.gz" in message
    # How to point fcnn at the files, from the command line and from the environment:
    assert "--data-dir DIR" in message and "FCNN_DATA=DIR" in message
    assert "load_mnist(root=DIR)" in message
    assert f"in {tmp_path / 'MNIST'}" in message
    for mirror in MNIST_MIRRORS:
        assert mirror in message
    assert error.folder == tmp_path / "MNIST"
    assert set(error.missing) == {f"{name}.gz" for name in MNIST_FILES}
    copy = pickle.loads(pickle.dumps(error))  # as joblib workers send it back
    assert str(copy) == message and copy.folder == error.folder and copy.missing == error.missing
    assert not (tmp_path / "MNIST").exists()


def test_load_mnist_rejects_string_mirrors(tmp_path):
    with pytest.raises(TypeError, match="mirrors"):
        load_mnist(tmp_path, mirrors="http://127.0.0.1:1/")
    with pytest.raises(ValueError, match="mirrors"):
        load_mnist(tmp_path, mirrors=[])


def test_public_constants():
    assert MNIST_CLASSES == tuple("0123456789")
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == "Ankle boot"
    assert MNIST_MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert FASHION_MNIST_MIRRORS[0] == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


# ---------------------------------------------------------------------------
# Fashion-MNIST


def test_fashion_mnist_skips_mnist_files_of_the_same_name(tmp_path, mnist_gz_dir, monkeypatch):
    """A root holding MNIST flat is not mistaken for Fashion-MNIST, nor a checksum error."""
    no_system_copy = dataclasses.replace(datasets._FASHION_MNIST, system_folders=())
    monkeypatch.setattr(datasets, "_FASHION_MNIST", no_system_copy)
    link_files(mnist_gz_dir, tmp_path, ["t10k-labels-idx1-ubyte"], ".gz")
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path, download=False)
    message = str(info.value)
    assert "Skipped" in message and "it is the MNIST file" in message
    assert f"in {tmp_path / 'FashionMNIST'}" in message
    assert FASHION_MNIST_MIRRORS[0] in message


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_from_debian(tmp_path):
    (train_images, train_labels), (test_images, test_labels) = load_fashion_mnist(
        tmp_path, download=False
    )
    assert train_images.shape == (60_000, 28, 28) and test_images.shape == (10_000, 28, 28)
    assert np.bincount(train_labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10


def fashion_files_in(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        (folder / f"{name}.gz").symlink_to(DEBIAN_FASHION_MNIST / f"{name}.gz")


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_mnist_asked_fashion_found_suggests_the_option(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    fashion_files_in(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert "The files found are Fashion-MNIST's, not MNIST's" in message
    assert "`--dataset fashion-mnist`" in message and "fcnn.load_fashion_mnist()" in message


def test_fashion_asked_mnist_found_suggests_the_option(tmp_path, mnist_gz_dir, monkeypatch):
    no_system_copy = dataclasses.replace(datasets._FASHION_MNIST, system_folders=())
    monkeypatch.setattr(datasets, "_FASHION_MNIST", no_system_copy)
    link_files(mnist_gz_dir, tmp_path, MNIST_FILES, ".gz")
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path, download=False)
    assert "`--dataset mnist`" in str(info.value)


# ---------------------------------------------------------------------------
# Downloading from servers on 127.0.0.1


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 10,000 bytes, sends 100 of gzip, then hangs up: a cut connection."""

    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "10000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b\x08\x00" + bytes(96))
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002
        pass


class Servers:
    """HTTP servers on 127.0.0.1, each on a free port, all stopped by ``close``."""

    def __init__(self) -> None:
        self.running: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(self, handler) -> str:
        """Serve with ``handler`` and return the base URL."""
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        self.running.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    def folder(self, folder: Path) -> str:
        """Serve the files of ``folder`` and return the base URL."""
        return self.start(functools.partial(QuietHandler, directory=str(folder)))

    def close(self) -> None:
        for server, thread in self.running:
            server.shutdown()
            server.server_close()
            thread.join()


@pytest.fixture
def servers():
    running = Servers()
    yield running
    running.close()


@pytest.fixture(scope="module")
def good_mirror(mnist_gz_dir):
    """A mirror serving the four real .gz files."""
    running = Servers()
    yield running.folder(mnist_gz_dir)
    running.close()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(datasets, "RETRY_DELAY", 0.0)
    monkeypatch.setattr(datasets, "DOWNLOAD_TIMEOUT", 5.0)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def assert_only_final_files(folder: Path) -> None:
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted(f"{name}.gz" for name in MNIST_FILES)


def test_download_into_empty_root(tmp_path, good_mirror, mnist, fast_retries):
    loaded = load_mnist(tmp_path, progress=True, mirrors=[good_mirror])
    assert_only_final_files(tmp_path / "MNIST")
    assert_same_data(loaded, mnist)


def test_download_skips_mirror_with_bad_files(
    tmp_path, servers, good_mirror, mnist_gz_dir, mnist, fast_retries
):
    bad_folder = tmp_path / "bad-mirror"
    bad_folder.mkdir()
    # A well-formed file with one changed bit: only the checksum can tell.
    changed_labels = changed_copy(mnist_gz_dir, "train-labels-idx1-ubyte", 500)
    (bad_folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(changed_labels))
    # A cut gzip stream, and an HTML page where a .gz should be.
    cut = (mnist_gz_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()[:-50]
    (bad_folder / "t10k-labels-idx1-ubyte.gz").write_bytes(cut)
    (bad_folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>moved</html>")
    # train-images is absent (404). It is already in the root, so it must not be
    # downloaded at all: only missing files are fetched.
    root = tmp_path / "root"
    link_files(mnist_gz_dir, root, ["train-images-idx3-ubyte"], ".gz")
    loaded = load_mnist(root, progress=False, mirrors=[servers.folder(bad_folder), good_mirror])
    downloaded = sorted(path.name for path in (root / "MNIST").iterdir())
    assert downloaded == sorted(
        f"{name}.gz" for name in MNIST_FILES if name != "train-images-idx3-ubyte"
    )
    for name in downloaded:
        payload = gzip.decompress((root / "MNIST" / name).read_bytes())
        assert (
            hashlib.sha256(payload).hexdigest() == datasets._MNIST_SHA256[name.removesuffix(".gz")]
        )
    assert_same_data(loaded, mnist)


def test_download_error_lists_each_failure(tmp_path, servers, mnist_gz_dir, fast_retries):
    name = "train-labels-idx1-ubyte"
    html_folder, changed_folder, cut_folder, empty_folder = (
        tmp_path / folder
        for folder in ("html-mirror", "changed-mirror", "cut-mirror", "empty-mirror")
    )
    for folder in (html_folder, changed_folder, cut_folder, empty_folder):
        folder.mkdir()
    (html_folder / f"{name}.gz").write_bytes(b"<html>moved</html>")
    labels = changed_copy(mnist_gz_dir, name, 500)
    (changed_folder / f"{name}.gz").write_bytes(gzip.compress(labels))
    (cut_folder / f"{name}.gz").write_bytes((mnist_gz_dir / f"{name}.gz").read_bytes()[:-50])
    mirrors = [
        servers.folder(folder) for folder in (html_folder, changed_folder, cut_folder, empty_folder)
    ]
    root = tmp_path / "root"
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(root, progress=False, mirrors=mirrors)
    lines = str(info.value).splitlines()
    url = "{}train-labels-idx1-ubyte.gz"
    assert any(
        line.strip().startswith(url.format(mirrors[0])) and "not an IDX file" in line
        for line in lines
    )
    assert any(
        line.strip().startswith(url.format(mirrors[1]))
        and hashlib.sha256(labels).hexdigest() in line
        for line in lines
    )
    assert any(
        line.strip().startswith(url.format(mirrors[2])) and "corrupt gzip" in line for line in lines
    )
    assert any(
        line.strip().startswith(url.format(mirrors[3])) and "HTTP 404" in line for line in lines
    )
    assert not (root / "MNIST").exists() and not root.exists()


def test_download_all_mirrors_unreachable(tmp_path, fast_retries):
    mirrors = [closed_port_url(), closed_port_url()]
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, progress=False, mirrors=mirrors)
    message = str(info.value)
    for mirror in mirrors:
        assert mirror in message
    for name in MNIST_FILES:
        assert f"{name}.gz" in message
    assert f"in {tmp_path / 'MNIST'}" in message
    assert info.value.mirrors == tuple(mirrors)
    # Refused connections are not retried: each mirror is tried once, then the next.
    failures = [line for line in message.splitlines() if "Connection refused" in line]
    assert [line.strip().split("train-labels")[0] for line in failures] == mirrors
    assert not (tmp_path / "MNIST").exists()


def test_download_cut_connection_is_retried_and_leaves_nothing(
    tmp_path, servers, fast_retries, monkeypatch
):
    monkeypatch.setattr(TruncatingHandler, "requests", [])
    mirror = servers.start(TruncatingHandler)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, progress=False, mirrors=[mirror])
    assert "connection closed after 100 of 10000 bytes" in str(info.value)
    # A transfer cut short is worth another try; the file is then given up, not kept.
    assert (
        TruncatingHandler.requests == ["/train-labels-idx1-ubyte.gz"] * datasets.DOWNLOAD_ATTEMPTS
    )
    assert not (tmp_path / "MNIST").exists()


def test_download_interrupted_removes_temp_file(tmp_path, good_mirror, monkeypatch):
    """Ctrl-C in the middle of a transfer: no temp file and nothing under the final name."""

    def interrupt(self, count):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.tqdm, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_mnist(tmp_path, progress=False, mirrors=[good_mirror])
    assert not (tmp_path / "MNIST").exists()


class EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Sends zeros without a Content-Length until the client hangs up."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(bytes(1 << 16))
        except OSError:
            pass

    def log_message(self, format, *args):  # noqa: A002
        pass


class HugeLengthHandler(EndlessHandler):
    """Announces 10 GB."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10**10))
        self.end_headers()


class TrickleHandler(EndlessHandler):
    """One byte every 20 ms, forever: never slow enough for the socket timeout."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"\x1f")
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:
            pass


@pytest.mark.parametrize(
    "handler, message",
    [
        (EndlessHandler, "sent more than the"),
        (HugeLengthHandler, "announces 10000000000 bytes, more than the"),
    ],
    ids=["endless", "huge-content-length"],
)
def test_download_size_cap(tmp_path, servers, fast_retries, handler, message):
    mirror = servers.start(handler)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, progress=False, mirrors=[mirror])
    assert message in str(info.value)
    assert not (tmp_path / "MNIST").exists()


def test_download_deadline(tmp_path, servers, fast_retries, monkeypatch):
    monkeypatch.setattr(datasets, "DOWNLOAD_DEADLINE", 0.5)
    mirror = servers.start(TrickleHandler)
    started = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, progress=False, mirrors=[mirror])
    assert time.monotonic() - started < 3.0
    assert "too slow" in str(info.value)
    assert not (tmp_path / "MNIST").exists()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_download_removes_parts_left_by_dead_processes(tmp_path, good_mirror, fast_retries):
    folder = tmp_path / "MNIST"
    folder.mkdir()
    stale = folder / f".train-labels-idx1-ubyte.{dead_pid()}.0123abcd.part"
    stale.write_bytes(b"half a download")
    live = folder / f".train-labels-idx1-ubyte.{os.getpid()}.4567cdef.part"  # ours: in progress
    live.write_bytes(b"being written")
    load_mnist(tmp_path, progress=False, mirrors=[good_mirror])
    assert not stale.exists()
    assert live.exists()


# ---------------------------------------------------------------------------
# One split only


def test_split_test_needs_only_the_test_files(tmp_path, mnist_gz_dir, mnist, monkeypatch):
    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    link_files(mnist_gz_dir, tmp_path, ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], ".gz")
    images, labels = load_mnist(tmp_path, download=False, split="test")
    np.testing.assert_array_equal(images, mnist[1][0])
    np.testing.assert_array_equal(labels, mnist[1][1])
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False, split="train")
    assert set(info.value.missing) == {"train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"}


def test_split_train(tmp_path, mnist_gz_dir, mnist):
    link_files(
        mnist_gz_dir, tmp_path, ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"], ".gz"
    )
    images, labels = load_mnist(tmp_path, download=False, split="train")
    assert images.shape == (60_000, 28, 28)
    np.testing.assert_array_equal(labels, mnist[0][1])


@pytest.mark.parametrize("split", ["val", "TEST", 0, ("train",)])
def test_split_must_be_train_test_or_none(tmp_path, split):
    with pytest.raises(ValueError, match="split must be None, 'train' or 'test'"):
        load_mnist(tmp_path, download=False, split=split)
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist(tmp_path, download=False, split=split)


def test_offline_download_creates_no_folder(tmp_path, fast_retries):
    """Offline with download=True (the CLI's default): no empty ~/.cache/fcnn/MNIST left."""
    root = tmp_path / "cache" / "fcnn"
    with pytest.raises(DatasetNotFoundError):
        load_mnist(root, progress=False, mirrors=[closed_port_url()])
    assert list(tmp_path.iterdir()) == []


def test_offline_download_keeps_folders_that_existed(tmp_path, fast_retries):
    (tmp_path / "MNIST").mkdir()
    with pytest.raises(DatasetNotFoundError):
        load_mnist(tmp_path, progress=False, mirrors=[closed_port_url()])
    assert (tmp_path / "MNIST").is_dir()


# ---------------------------------------------------------------------------
# train_val_split


def test_train_val_split_sizes_and_disjoint():
    images = np.arange(100, dtype=np.int64)[:, None] * np.ones((1, 3), dtype=np.int64)
    labels = np.arange(100, dtype=np.int64)
    (train_images, train_labels), (val_images, val_labels) = train_val_split(
        images, labels, val_size=30, seed=1
    )
    assert train_images.shape == (70, 3) and val_images.shape == (30, 3)
    assert train_labels.shape == (70,) and val_labels.shape == (30,)
    # Images and labels stay paired, and the two parts cover every sample once.
    np.testing.assert_array_equal(train_images[:, 0], train_labels)
    np.testing.assert_array_equal(val_images[:, 0], val_labels)
    assert sorted(np.concatenate([train_labels, val_labels]).tolist()) == list(range(100))


def test_train_val_split_is_seeded():
    labels = np.arange(1000) % 10
    images = np.arange(1000 * 4).reshape(1000, 4)
    first = train_val_split(images, labels, val_size=100, seed=7)
    again = train_val_split(images, labels, val_size=100, seed=7)
    other = train_val_split(images, labels, val_size=100, seed=8)
    np.testing.assert_array_equal(first[1][0], again[1][0])
    np.testing.assert_array_equal(first[0][0], again[0][0])
    assert not np.array_equal(first[1][0], other[1][0])


def test_train_val_split_default_on_mnist(mnist):
    (train_images, train_labels), (val_images, val_labels) = train_val_split(*mnist[0])
    assert train_images.shape == (50_000, 28, 28) and val_images.shape == (10_000, 28, 28)
    assert train_labels.dtype == np.uint8 and val_labels.shape == (10_000,)


@pytest.mark.parametrize("val_size", [0, -1, 10, 11])
def test_train_val_split_rejects_bad_size(val_size):
    with pytest.raises(ValueError, match=r"val_size must be in \[1, 9\]"):
        train_val_split(np.zeros((10, 2)), np.zeros(10), val_size=val_size)


def test_train_val_split_rejects_bad_arguments():
    with pytest.raises(TypeError, match="val_size"):
        train_val_split(np.zeros((10, 2)), np.zeros(10), val_size=2.5)
    with pytest.raises(ValueError, match="same number of samples"):
        train_val_split(np.zeros((10, 2)), np.zeros(9), val_size=2)
    with pytest.raises(ValueError, match="labels must be 1-D"):
        train_val_split(np.zeros((10, 2)), np.zeros((10, 1)), val_size=2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_val_split(np.zeros((1, 2)), np.zeros(1), val_size=1)
