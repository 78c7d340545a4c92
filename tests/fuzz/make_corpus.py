"""Writes the seed corpora of the fuzz targets, made from real files, into two folders.

    python tests/fuzz/make_corpus.py OUT_DIR [MNIST_DIR]

OUT_DIR/idx: slices of the real MNIST files (first images and labels, raw, and gzip'd
with the layout byte of fuzz_idx.py), and small files of every IDX type code.
OUT_DIR/load: small models written by fcnn.save (float32 and float64, with and without
optimizer state, momentum buffers and metadata), whole and as their JSON alone (the
first byte tells fuzz_load.py which). MNIST_DIR defaults to $FCNN_DATA;
without it, the IDX seeds are synthetic only. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np

import fcnn
from fcnn.datasets import read_idx
from fcnn.functional import CrossEntropyLoss, Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD
from fcnn.serialization import META_KEY

IDX_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    code = IDX_CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def idx_seeds(mnist_dir: Path | None) -> dict[str, bytes]:
    """name -> fuzz input (first byte: 0 raw, 1 gzip the rest)."""
    files = {}
    for dtype in IDX_CODES:
        files[f"tiny-{np.dtype(dtype).name}"] = idx_bytes(np.arange(12, dtype=dtype).reshape(3, 4))
    if mnist_dir is not None:
        for name, count in (("t10k-images-idx3-ubyte", 3), ("t10k-labels-idx1-ubyte", 64)):
            candidates = [mnist_dir / name, mnist_dir / f"{name}.gz"]
            source = next((path for path in candidates if path.is_file()), None)
            if source is not None:
                files[f"mnist-{name}-{count}"] = idx_bytes(read_idx(source)[:count])
    seeds = {}
    for name, content in files.items():
        seeds[f"{name}-raw"] = b"\x00" + content
        seeds[f"{name}-gz"] = b"\x01" + content
    # A real gzip member as it is (the layout byte 0x1f is odd: it would gzip it again).
    seeds["mnist-labels-real-gz"] = b"\x00" + gzip.compress(
        files.get("mnist-t10k-labels-idx1-ubyte-64", files["tiny-uint8"]), mtime=0
    )
    return seeds


def model_seeds(folder: Path) -> dict[str, bytes]:
    seeds = {}
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        net = Module(
            Linear(6, 5, dtype=dtype, rng=1), ReLU(), Linear(5, 3, dtype=dtype, rng=2), Softmax()
        )
        optimizer = SGD(net, lr=0.1, momentum=0.9)
        criterion = CrossEntropyLoss(net)
        criterion(net(rng.standard_normal((4, 6)).astype(dtype)), np.array([0, 1, 2, 1])).backward()
        optimizer.step()
        variants = {
            "plain": dict(),
            "optimizer": dict(optimizer=optimizer),
            "metadata": dict(
                metadata={
                    "history": {"loss": [1.5, 0.5]},
                    "dataset": "mnist",
                    "nested": [[1, {"a": None}], True],
                }
            ),
        }
        for variant, extra in variants.items():
            path = folder / f"model-{np.dtype(dtype).name}-{variant}.npz"
            fcnn.save(net, path, **extra)
            seeds[path.stem] = b"\x00" + path.read_bytes()  # fuzz_load.py: 0, a whole file
            with np.load(path) as archive:  # 1: the JSON document alone
                seeds[f"{path.stem}-json"] = b"\x01" + archive[META_KEY].tobytes()
            path.unlink()
    single = Module(Linear(2, 2, rng=0))
    path = folder / "model-single.npz"
    fcnn.save(single, path)
    seeds[path.stem] = b"\x00" + path.read_bytes()
    path.unlink()
    return seeds


def main() -> None:
    out = Path(sys.argv[1])
    env = os.environ.get("FCNN_DATA")
    mnist_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(env) if env else None
    for corpus, seeds in (("idx", idx_seeds(mnist_dir)), ("load", None)):
        folder = out / corpus
        folder.mkdir(parents=True, exist_ok=True)
        if seeds is None:
            seeds = model_seeds(folder)
        for name, content in seeds.items():
            (folder / name).write_bytes(content)
        print(f"{folder}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
