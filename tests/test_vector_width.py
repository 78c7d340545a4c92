"""The kernels that come in three vector widths (the first layer's panel kernels and the
elastic warp's smoothing, in 64-, 32- and 16-byte vectors), each forced whatever the CPU:
every width runs on any x86-64 CPU, so one machine checks all three, not only the one its
CPU picks."""

import numpy as np
import pytest
from numpy._core._multiarray_umath import __cpu_features__
from synthetic import assert_matches_twin, fused_epoch
from test_fused import CLASSES, digits_like

from fcnn import _core, reference

WIDTHS = (16, 32, 64)


@pytest.fixture
def force_width():
    """force_width(n): the kernels use n-byte vectors until the test ends."""
    previous = []

    def force(vector_bytes):
        previous.append(_core._force_vector_bytes(vector_bytes))

    yield force
    if previous:
        _core._force_vector_bytes(previous[0])


def epoch_in_each_width(force_width, images, labels, sizes, dtype, **options):
    results = []
    for vector_bytes in WIDTHS:
        force_width(vector_bytes)
        results.append(fused_epoch(_core, images, labels, sizes, dtype, **options))
    return results


def assert_same_bits(results):
    (outcome, params), *others = results
    for other_outcome, other_params in others:
        assert other_outcome == outcome
        for a, b in zip(other_params, params, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", [(130,), (70, 13), (300,)])
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 5e-4)])
@pytest.mark.parametrize("density, sparse_threshold", [(0.2, 1.0), (0.2, 1e-9), (0.9, None)])
def test_every_width_gives_the_same_bits(
    force_width, dtype, hidden, momentum, weight_decay, density, sparse_threshold
):
    # Each output element is a lane of one summation order in every width: the same bits,
    # sparse or dense, with the lazy updates, on 2 threads (130 and 300 hidden units: whole
    # and partial panels).
    images, labels = digits_like(n=230, features=70, density=density)
    sizes = [images.shape[1], *hidden, CLASSES]
    results = epoch_in_each_width(
        force_width,
        images,
        labels,
        sizes,
        dtype,
        momentum=momentum,
        weight_decay=weight_decay,
        sparse_threshold=sparse_threshold,
        num_threads=2,
    )
    assert_same_bits(results)


@pytest.mark.parametrize("vector_bytes", WIDTHS)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("sparse_threshold", [0.0, 1.0])
def test_each_width_matches_twin(force_width, vector_bytes, dtype, rtol, sparse_threshold):
    images, labels = digits_like()
    sizes = [images.shape[1], 130, CLASSES]
    force_width(vector_bytes)
    result = fused_epoch(
        _core, images, labels, sizes, dtype, momentum=0.9, sparse_threshold=sparse_threshold
    )
    twin = fused_epoch(reference, images, labels, sizes, dtype, momentum=0.9)
    assert_matches_twin(result, twin, -(-len(labels) // 32), dtype, rtol)


@pytest.mark.parametrize(
    "hidden, dropout", [((150,), [(0.2, 3, 1)]), ((90, 40), [(0.3, 1, 5), (0.1, 2, 0)])]
)
def test_augmented_epoch_with_dropout_gives_the_same_bits(force_width, hidden, dropout):
    # One hidden layer: the output layer inside the first layer's blocks, as `fcnn train` runs.
    rng = np.random.default_rng(3)
    images = np.zeros((200, 12, 20), np.uint8)
    images[:, 3:9, 4:15] = rng.integers(0, 256, (200, 6, 11))
    labels = rng.integers(0, CLASSES, 200)
    results = epoch_in_each_width(
        force_width,
        images.reshape(200, -1),
        labels,
        [240, *hidden, CLASSES],
        np.float32,
        momentum=0.9,
        dropout=dropout,
        augment=(1.5, 12.0, 0.1, 0.15, 6.0, 2.0),
        image_shape=(12, 20),
        augment_seed=5,
        first_stream=77,
        num_threads=2,
    )
    assert_same_bits(results)


@pytest.mark.parametrize("vector_bytes", WIDTHS)
@pytest.mark.parametrize("shape", [(28, 28), (9, 13), (17, 24), (5, 40), (40, 3), (1, 1)])
@pytest.mark.parametrize("sigma", [0.7, 4.0, 12.0])
def test_each_width_warps_as_the_twin(force_width, vector_bytes, shape, sigma):
    # Rows of 16, 32 and 48 floats after rounding up (the smoothing's whole blocks and its
    # tails), and radii from 3 taps to beyond the image.
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (6, *shape)).astype(np.uint8)
    strengths = (1.0, 8.0, 0.1, 0.1, 10.0, sigma)
    force_width(vector_bytes)
    result = _core.augment(images, np.arange(6), 21, 5, *strengths)
    np.testing.assert_array_equal(
        result, reference.augment(images, np.arange(6), 21, 5, *strengths)
    )


@pytest.mark.parametrize(
    "value, error, message",
    [
        (8, ValueError, "vector_bytes must be 0, 16, 32 or 64, got 8"),
        (-1, ValueError, "vector_bytes must be an integer >= 0"),
        ("64", TypeError, "vector_bytes must be an integer, got str"),
        (64.0, TypeError, "vector_bytes must be an integer, got float"),
    ],
)
def test_force_vector_bytes_refuses_other_values(value, error, message):
    with pytest.raises(error, match=message):
        _core._force_vector_bytes(value)


def test_the_cpu_picks_its_own_width():
    # numpy's own reading of the CPU: AVX-512F, else AVX2 with FMA, else neither (as under
    # QEMU's Nehalem in .ci/run)
    features = __cpu_features__
    if features["AVX512F"]:
        expected = 64
    elif features["AVX2"] and features["FMA3"]:
        expected = 32
    else:
        expected = 16
    assert _core._vector_bytes() == expected


def test_force_vector_bytes_returns_the_previous_setting():
    assert _core._force_vector_bytes(64) == 0
    try:
        assert _core._vector_bytes() == 64
        assert _core._force_vector_bytes(16) == 64
        assert _core._vector_bytes() == 16
    finally:
        assert _core._force_vector_bytes(0) == 16
