"""Small synthetic data sets and starting weights shared by the tests."""

import numpy as np


def blobs(n=600, features=16, classes=3, seed=0):
    """Separable uint8 'images': each class lights up its own block of pixels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, features), dtype=np.uint8)
    block = features // classes
    for c in range(classes):
        images[labels == c, c * block : (c + 1) * block] += 180
    return images, labels


def parameters(sizes, dtype, seed=0):
    """Weights N(0, 2 / fan_in) and biases N(0, 0.01) of an MLP with layer sizes ``sizes``."""
    rng = np.random.default_rng(seed)
    weights = [
        (rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(dtype)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [(0.1 * rng.standard_normal(b)).astype(dtype) for b in sizes[1:]]
    return weights, biases
