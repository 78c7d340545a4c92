"""Small synthetic data sets, starting weights, one fused epoch and the comparisons of its
results, shared by the tests."""

import numpy as np
import pytest


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
    lr_range=(0.2, 0.05),
    **options,
):
    """One ``backend.train_epoch`` (fcnn._core or fcnn.reference) from :func:`parameters`:
    zero velocities, the order ``permutation(order_seed)`` (None: in order), rates falling
    linearly over ``lr_range``;
    ``nesterov`` None means ``momentum > 0``; ``options`` go to train_epoch as keywords
    (num_threads, dropout, augment, ...). Returns (steps, loss_sum, correct) and the
    parameters after it: weights, biases, weight velocities, bias velocities."""
    weights, biases = parameters(sizes, dtype)
    velocities = ([np.zeros_like(w) for w in weights], [np.zeros_like(b) for b in biases])
    if order_seed is None:
        order = np.arange(len(labels))
    else:
        order = np.random.default_rng(order_seed).permutation(len(labels))
    lrs = np.linspace(*lr_range, -(-len(order) // batch_size))
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


def assert_matches_twin(result, twin_result, steps, dtype, rtol):
    """Two :func:`fused_epoch` results, of fcnn._core and of its twin, agree: the steps,
    the loss to ``rtol``, the correct count (float32: within 2), and every parameter, of
    ``dtype``, to ``rtol`` of the largest of its kind."""
    (done, loss, correct), params = result
    (twin_done, twin_loss, twin_correct), twin_params = twin_result
    assert done == twin_done == steps
    assert loss == pytest.approx(twin_loss, rel=rtol)
    assert abs(correct - twin_correct) <= (0 if dtype == np.float64 else 2)
    for value, expected in zip(params, twin_params, strict=True):
        assert value.dtype == dtype
        scale = np.abs(expected).max() + 1e-30
        np.testing.assert_allclose(value / scale, expected / scale, rtol=0, atol=rtol)


def assert_same_training(fused, module):
    """``(state_dict, history)`` of fcnn.train on the fused epoch and on the Module API
    agree: the losses to 1e-12, the accuracies exactly, the weights to 1e-10."""
    (fused_state, fused_history), (module_state, module_history) = fused, module
    np.testing.assert_allclose(
        fused_history["train_loss"], module_history["train_loss"], rtol=1e-12
    )
    assert fused_history["train_accuracy"] == module_history["train_accuracy"]
    for key, value in fused_state.items():
        np.testing.assert_allclose(value, module_state[key], rtol=1e-10, atol=1e-12)
