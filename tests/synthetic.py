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


def fused_epoch(
    backend,
    images,
    labels,
    sizes,
    dtype,
    batch_size=32,
    momentum=0.0,
    nesterov=None,
    sparse_threshold=0.5,
    weight_decay=1e-3,
    order_seed=1,
    **options,
):
    """One ``backend.train_epoch`` (fcnn._core or fcnn.reference) from :func:`parameters`:
    zero velocities, the order ``permutation(order_seed)``, rates falling from 0.2 to 0.05;
    ``nesterov`` None means ``momentum > 0``; ``options`` go to train_epoch as keywords
    (num_threads, dropout, augment, ...). Returns (steps, loss_sum, correct) and the
    parameters after it: weights, biases, weight velocities, bias velocities."""
    weights, biases = parameters(sizes, dtype)
    velocities = ([np.zeros_like(w) for w in weights], [np.zeros_like(b) for b in biases])
    order = np.random.default_rng(order_seed).permutation(len(labels))
    lrs = np.linspace(0.2, 0.05, -(-len(order) // batch_size))
    result = backend.train_epoch(
        images,
        labels,
        order,
        weights,
        biases,
        lrs,
        batch_size,
        weight_decay,
        momentum,
        *velocities,
        momentum > 0 if nesterov is None else nesterov,
        sparse_threshold,
        **options,
    )
    return result, weights + biases + velocities[0] + velocities[1]
