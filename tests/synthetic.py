"""Small synthetic data sets shared by the tests."""

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
