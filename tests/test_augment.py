"""Data augmentation: fcnn._core.augment against its NumPy twin, byte for byte, on MNIST
digits and random images; threads; what each transform does; bad input; leaks."""

import math
import sys

import numpy as np
import pytest
from leakcheck import assert_no_leak

import fcnn
from fcnn import _core, reference
from fcnn.dataloader import DataLoader
from fcnn.datasets import load_mnist

BACKENDS = [pytest.param(_core, id="core"), pytest.param(reference, id="reference")]
# translate, rotate, scale, shear, elastic_alpha, elastic_sigma
OFF = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
ALONE = {
    "translate": (2.5, 0.0, 0.0, 0.0, 0.0, 0.0),
    "rotate": (0.0, 20.0, 0.0, 0.0, 0.0, 0.0),
    "scale": (0.0, 0.0, 0.15, 0.0, 0.0, 0.0),
    "shear": (0.0, 0.0, 0.0, 0.3, 0.0, 0.0),
    "elastic": (0.0, 0.0, 0.0, 0.0, 3.0, 2.0),
    "elastic-simard": (0.0, 0.0, 0.0, 0.0, 34.0, 4.0),
    "elastic-wide": (0.0, 0.0, 0.0, 0.0, 8.0, 12.0),
    "all": (2.0, 15.0, 0.1, 0.2, 3.0, 2.0),
}


@pytest.fixture(scope="module")
def digits(mnist_dir):
    _, (test_images, _) = load_mnist(mnist_dir, download=False, progress=False)
    return test_images[:200]


def random_images(n=40, height=9, width=13, seed=0):
    """Odd, non-square images with bright borders: what falls outside must count."""
    return np.random.default_rng(seed).integers(0, 256, (n, height, width)).astype(np.uint8)


def both(images, indices, seed, first_stream, strengths):
    expected = reference.augment(images, indices, seed, first_stream, *strengths)
    result = _core.augment(images, indices, seed, first_stream, *strengths)
    assert result.dtype == np.uint8 and result.shape == (len(indices),) + images.shape[1:]
    return result, expected


# ----------------------------------------------------------------------------
# the kernel against its twin


@pytest.mark.parametrize("strengths", ALONE.values(), ids=ALONE.keys())
@pytest.mark.parametrize("seed, first_stream", [(0, 0), (12345, 60_000 * 7 + 3), (2**64 - 1, 5)])
def test_core_equals_twin_on_digits(digits, strengths, seed, first_stream):
    indices = np.arange(digits.shape[0])[::-1]
    result, expected = both(digits, indices, seed, first_stream, strengths)
    np.testing.assert_array_equal(result, expected)
    assert np.any(result != digits[indices])


@pytest.mark.parametrize("strengths", ALONE.values(), ids=ALONE.keys())
@pytest.mark.parametrize("shape", [(9, 13), (1, 1), (30, 2), (5, 5), (8, 8), (17, 24)])
def test_core_equals_twin_on_random_images(strengths, shape):
    images = random_images(12, *shape)
    indices = np.array([3, 3, 0, 11, 7, 1, 2, 4])
    result, expected = both(images, indices, 99, 1000, strengths)
    np.testing.assert_array_equal(result, expected)


def test_strong_settings_stay_equal():
    """Large angles, shears and displacements send pixels far outside: still the same bytes."""
    images = random_images(20, 28, 28, seed=3)
    indices = np.arange(20)
    for strengths in [(40.0, 720.0, 0.9, 5.0, 60.0, 0.5), (1e6, 1e6, 0.0, 1e6, 1e6, 999.0)]:
        result, expected = both(images, indices, 7, 0, strengths)
        np.testing.assert_array_equal(result, expected)


def test_zero_strengths_copy(digits):
    indices = np.array([5, 0, 5, 199])
    for backend in (_core, reference):
        np.testing.assert_array_equal(backend.augment(digits, indices, 3, 0, *OFF), digits[indices])
    # elastic_alpha without elastic_sigma (and the other way round) is off too
    for strengths in [(0.0, 0.0, 0.0, 0.0, 5.0, 0.0), (0.0, 0.0, 0.0, 0.0, 0.0, 3.0)]:
        result, expected = both(digits, indices, 3, 0, strengths)
        np.testing.assert_array_equal(result, digits[indices])
        np.testing.assert_array_equal(expected, digits[indices])


def test_stream_decides_the_image(digits):
    """Image b of a call is the image of stream first_stream + b, whatever the batch."""
    strengths = ALONE["all"]
    whole = _core.augment(digits, np.arange(50), 11, 100, *strengths)
    for first in (0, 17, 49):
        part = _core.augment(digits, np.arange(first, 50), 11, 100 + first, *strengths)
        np.testing.assert_array_equal(part, whole[first:])
    other_seed = _core.augment(digits, np.arange(50), 12, 100, *strengths)
    other_streams = _core.augment(digits, np.arange(50), 11, 101, *strengths)
    assert np.mean(np.any(other_seed != whole, axis=(1, 2))) > 0.9
    assert np.mean(np.any(other_streams != whole, axis=(1, 2))) > 0.9


def test_a_transform_off_leaves_the_draws_of_the_others(digits):
    """Draw indices are fixed: a barely-on rotation or elastic field does not move the
    translation drawn for the image (all but a few rounding ties keep their byte)."""
    indices = np.arange(100)
    translate_only = _core.augment(digits, indices, 5, 0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for strengths in [(2.0, 1e-9, 0.0, 0.0, 0.0, 0.0), (2.0, 0.0, 0.0, 0.0, 1e-9, 2.0)]:
        nearly = _core.augment(digits, indices, 5, 0, *strengths)
        assert np.mean(nearly != translate_only) < 1e-3


@pytest.mark.parametrize(
    "strengths", [ALONE["all"], ALONE["elastic-simard"]], ids=["all", "elastic"]
)
def test_thread_counts_give_the_same_bytes(digits, strengths):
    before = fcnn.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            fcnn.set_num_threads(threads)
            results.append(_core.augment(digits, np.arange(digits.shape[0]), 4, 9, *strengths))
    finally:
        fcnn.set_num_threads(before)
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def pixel_smoothed_fields(n, H, W, sigma, seed=1):
    """n fields uniform in [-1, 1) at every pixel, smoothed there by the Gaussian of std sigma
    truncated at 3 sigma, zeros outside: the elastic field of Simard et al."""
    noise = np.random.default_rng(seed).uniform(-1, 1, (n, H, W)).astype(np.float32)
    radius = math.ceil(3 * sigma)
    taps = reference._gaussian_taps(min(radius, max(H, W) - 1), radius, sigma)
    return reference._smooth(noise, taps)


def field_statistics(fields):
    """Mean spread over the pixels, the spread at the centre, the root mean square of the
    steps between neighbours along rows and columns (the warp's local stretch), and the
    correlation 4 pixels apart along rows."""
    spread = fields.std(axis=0)
    H, W = fields.shape[1:]
    power = np.mean(fields**2)
    return {
        "spread": spread.mean(),
        "centre": spread[H // 2 - 2 : H // 2 + 2, W // 2 - 2 : W // 2 + 2].mean(),
        "row steps": np.sqrt(np.mean(np.diff(fields, axis=2) ** 2)),
        "column steps": np.sqrt(np.mean(np.diff(fields, axis=1) ** 2)),
        "correlation": np.mean(fields[:, :, :-4] * fields[:, :, 4:]) / power,
    }


@pytest.mark.parametrize("sigma", [4.0, 6.0, 8.0])
def test_cell_fields_are_distributed_like_pixel_fields(sigma):
    """From COARSE_SIGMA on, the fields are drawn on cells of 2 x 2 pixels and blended to the
    pixels: their spread stays within 4% and their steps between neighbours within 8% of the
    field smoothed at every pixel (measured: 2% and 6% at sigma 4, less above)."""
    assert reference._field_step(sigma) == 2
    keys = reference.random_key(0, np.arange(3000, dtype=np.uint64))
    cells = field_statistics(
        np.concatenate(reference._elastic_displacements(keys, 28, 28, 1.0, sigma))
    )
    pixels = field_statistics(pixel_smoothed_fields(6000, 28, 28, sigma))
    for name in ("spread", "centre"):
        assert cells[name] == pytest.approx(pixels[name], rel=0.04), name
    for name in ("row steps", "column steps"):
        assert cells[name] == pytest.approx(pixels[name], rel=0.08), name
    assert cells["correlation"] == pytest.approx(pixels["correlation"], abs=0.03)


@pytest.mark.parametrize("sigma", [0.5, 2.0, 3.99])
def test_below_coarse_sigma_the_fields_are_smoothed_at_every_pixel(sigma):
    """Each pixel its own cell: the displacement is alpha times the smoothed draws, bit for
    bit, and the blend changes nothing."""
    H, W, alpha = 9, 13, 3.0
    assert reference._field_step(sigma) == 1
    keys = reference.random_key(7, np.arange(5, dtype=np.uint64))
    dx, dy = reference._elastic_displacements(keys, H, W, alpha, sigma)
    bits = reference.random_bits(keys[:, None], np.arange(8, 8 + H * W, dtype=np.uint64))
    radius = math.ceil(3 * sigma)
    taps = reference._gaussian_taps(min(radius, max(H, W) - 1), radius, sigma)
    for displacement, shift in ((dx, 40), (dy, 16)):
        numbers = (bits >> np.uint64(shift)) & np.uint64(0xFFFFFF)
        field = np.float32(2) * (numbers.astype(np.float32) * np.float32(2.0**-24)) - 1
        smooth = reference._smooth(field.reshape(5, H, W), taps)
        np.testing.assert_array_equal(displacement, np.float32(alpha) * smooth)


def test_non_contiguous_images_are_read_as_their_values(digits):
    wide = np.zeros((digits.shape[0], 28, 56), np.uint8)
    wide[:, :, ::2] = digits
    strided = wide[:, :, ::2]
    indices = np.arange(30).astype(np.int32)
    for backend in (_core, reference):
        np.testing.assert_array_equal(
            backend.augment(strided, indices, 1, 0, *ALONE["all"]),
            backend.augment(np.ascontiguousarray(strided), indices, 1, 0, *ALONE["all"]),
        )


# ----------------------------------------------------------------------------
# what the transforms do


def whole_pixel_translation_stream(seed, translate_sign):
    """A stream and strength whose x translation is exactly translate_sign pixel and whose y
    translation is so small that bilinear sampling rounds back to the source's pixels."""
    streams = np.arange(200_000, dtype=np.uint64)
    keys = reference.random_key(seed, streams)
    dx = 2 * reference.random_uniform(keys, 0) - 1
    dy = 2 * reference.random_uniform(keys, 1) - 1
    for stream in np.flatnonzero((np.abs(dy) < np.abs(dx) / 600) & (dx * translate_sign > 0)):
        strength = 1 / abs(float(dx[stream]))
        if strength * float(dx[stream]) == translate_sign:
            return int(stream), strength
    raise AssertionError("no such stream")


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_translation_by_a_whole_pixel_moves_the_digit(digits, direction):
    stream, strength = whole_pixel_translation_stream(8, direction)
    image = digits[:1]
    moved = _core.augment(image, np.array([0]), 8, stream, strength, 0.0, 0.0, 0.0, 0.0, 0.0)[0]
    expected = np.zeros_like(image[0])
    if direction > 0:  # to the right: column j shows the source's column j - 1
        expected[:, 1:] = image[0, :, :-1]
    else:
        expected[:, :-1] = image[0, :, 1:]
    np.testing.assert_array_equal(moved, expected)


def centre_of_mass(images):
    """(x, y) of each image's pixel mass, (B, 2)."""
    rows, cols = np.indices(images.shape[1:])
    mass = images.sum(axis=(1, 2)).astype(np.float64)
    return (
        np.stack([(images * cols).sum(axis=(1, 2)), (images * rows).sum(axis=(1, 2))], 1)
        / (mass[:, None])
    )


def test_translation_moves_the_centre_of_mass_by_the_draw(digits):
    seed, first, translate = 21, 40, 2.0
    indices = np.arange(100)
    moved = _core.augment(digits, indices, seed, first, translate, 0.0, 0.0, 0.0, 0.0, 0.0)
    keys = reference.random_key(seed, np.arange(first, first + 100, dtype=np.uint64))
    drawn = np.stack(
        [translate * (2 * reference.random_uniform(keys, i) - 1) for i in (0, 1)], axis=1
    )
    shift = centre_of_mass(moved) - centre_of_mass(digits[indices])
    # Digits with a margin of 3 empty pixels on every side lose nothing off the edges.
    inked = digits[indices] > 0
    inside = ~inked[:, :3].any(axis=(1, 2)) & ~inked[:, -3:].any(axis=(1, 2))
    inside &= ~inked[:, :, :3].any(axis=(1, 2)) & ~inked[:, :, -3:].any(axis=(1, 2))
    assert inside.sum() > 50
    np.testing.assert_allclose(shift[inside], drawn[inside], atol=0.1)


def mean_change(images, strengths, seed=2):
    out = _core.augment(images, np.arange(images.shape[0]), seed, 0, *strengths)
    return np.abs(out.astype(np.float64) - images).mean()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s: (0.25 * s, 0.0, 0.0, 0.0, 0.0, 0.0), id="translate"),
        pytest.param(lambda s: (0.0, 2.0 * s, 0.0, 0.0, 0.0, 0.0), id="rotate"),
        pytest.param(lambda s: (0.0, 0.0, 0.02 * s, 0.0, 0.0, 0.0), id="scale"),
        pytest.param(lambda s: (0.0, 0.0, 0.0, 0.04 * s, 0.0, 0.0), id="shear"),
        pytest.param(lambda s: (0.0, 0.0, 0.0, 0.0, 2.0 * s, 3.0), id="elastic"),
    ],
)
def test_pixels_change_in_proportion_to_the_strength(digits, make):
    """Small warps change pixels about linearly in the displacement: doubling it doubles the
    mean change, give or take the rounding to bytes and the curvature of the strokes."""
    changes = [mean_change(digits, make(strength)) for strength in (1.0, 2.0, 4.0)]
    assert 0 < changes[0]
    for small, large in zip(changes[:-1], changes[1:], strict=True):
        assert 1.5 < large / small < 2.5, changes


# ----------------------------------------------------------------------------
# bad input: both raise the same class, messages lead with the argument


def bad_cases():
    images = random_images(4, 6, 7)
    good = [images, np.array([0, 3]), 1, 0, *ALONE["all"]]

    def change(index, value):
        args = list(good)
        args[index] = value
        return args

    return [
        pytest.param(change(0, [[[1]]]), TypeError, "images", id="images-list"),
        pytest.param(change(0, images.astype(np.int16)), TypeError, "images", id="images-dtype"),
        pytest.param(change(0, images[0]), ValueError, "images", id="images-2d"),
        pytest.param(change(0, images[:0]), ValueError, "images", id="images-empty"),
        pytest.param(change(1, np.array([0, 4])), ValueError, "indices", id="index-high"),
        pytest.param(change(1, np.array([-1])), ValueError, "indices", id="index-negative"),
        pytest.param(change(1, np.array([0.0])), TypeError, "indices", id="index-float"),
        pytest.param(change(1, np.array([[0]])), ValueError, "indices", id="index-2d"),
        pytest.param(change(1, np.array([], np.int64)), ValueError, "indices", id="index-empty"),
        pytest.param(change(1, [0]), TypeError, "indices", id="index-list"),
        pytest.param(change(2, -1), ValueError, "seed", id="seed-negative"),
        pytest.param(change(2, 2**64), ValueError, "seed", id="seed-huge"),
        pytest.param(change(2, 1.5), TypeError, "seed", id="seed-float"),
        pytest.param(change(3, -1), ValueError, "first_stream", id="stream-negative"),
        pytest.param(change(3, 2**63 - 1), ValueError, "first_stream", id="stream-overflow"),
        pytest.param(change(3, "0"), TypeError, "first_stream", id="stream-str"),
        pytest.param(change(4, -1.0), ValueError, "translate", id="translate-negative"),
        pytest.param(change(5, float("nan")), ValueError, "rotate", id="rotate-nan"),
        pytest.param(change(6, 1.0), ValueError, "scale", id="scale-one"),
        pytest.param(change(7, float("inf")), ValueError, "shear", id="shear-inf"),
        pytest.param(change(8, "3"), TypeError, "elastic_alpha", id="alpha-str"),
        pytest.param(change(9, 1000.5), ValueError, "elastic_sigma", id="sigma-huge"),
        pytest.param(change(9, None), TypeError, "elastic_sigma", id="sigma-none"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("args, error, name", bad_cases())
def test_bad_input_raises_naming_the_argument(backend, args, error, name):
    with pytest.raises(error, match=f"^{name} "):
        backend.augment(*args)


def test_largest_first_stream_is_accepted():
    images = random_images(2, 4, 4)
    result, expected = both(images, np.array([0, 1]), 1, 2**63 - 2, ALONE["all"])
    np.testing.assert_array_equal(result, expected)


# ----------------------------------------------------------------------------
# leaks, as tests/test_leaks.py checks the other bindings


def test_binding_does_not_leak():
    images = random_images(40, 12, 12)
    wide = np.zeros((40, 12, 24), np.uint8)
    wide[:, :, ::2] = images
    strided = wide[:, :, ::2]  # copied by the binding
    indices = np.arange(40).astype(np.int32)  # converted to int64 by the binding
    valid = [strided, indices, 1, 0, *ALONE["all"]]
    failing = [strided, indices, 1, 0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]  # scale 1 fails last

    def run(calls):
        for call in range(calls):
            if call % 10 == 0:
                with pytest.raises(ValueError):
                    _core.augment(*failing)
            else:
                _core.augment(*valid)

    watched = [strided, indices, None, np.dtype(np.uint8), np.dtype(np.int64)]
    result = _core.augment(*valid)
    references = sys.getrefcount(result)
    del result
    assert references == 2
    # One leaked 40x12x12 result per call would be ~5.6 MiB; one int64 index copy, 312 KiB.
    assert_no_leak(run, 1000, watched, warm_up=500, max_references=10)


# ----------------------------------------------------------------------------
# the public API: Augmentation, fcnn.augment, DataLoader(augment=...)


def test_augmentation_validates_and_is_frozen():
    settings = fcnn.Augmentation(translate=2, rotate=np.float32(10.0))
    assert settings.strengths() == (2.0, 10.0, 0.0, 0.0, 0.0, 0.0)
    assert all(type(value) is float for value in settings.strengths())
    with pytest.raises(AttributeError):
        settings.rotate = 5.0
    for name, value, error in [
        ("translate", -1.0, ValueError),
        ("rotate", float("nan"), ValueError),
        ("scale", 1.0, ValueError),
        ("shear", "0.1", TypeError),
        ("elastic_alpha", float("inf"), ValueError),
        ("elastic_sigma", 1001.0, ValueError),
        ("elastic_sigma", True, TypeError),
    ]:
        with pytest.raises(error, match=f"^{name} "):
            fcnn.Augmentation(**{name: value})


def test_recommended_and_round_trip():
    recommended = fcnn.Augmentation.recommended()
    assert recommended is fcnn.augmentation.RECOMMENDED and not recommended.is_identity
    assert fcnn.Augmentation.from_dict(recommended.to_dict()) == recommended
    assert fcnn.Augmentation().is_identity
    assert fcnn.Augmentation(elastic_alpha=3.0).is_identity  # no sigma: elastic off
    with pytest.raises(ValueError, match="unknown augmentation settings"):
        fcnn.Augmentation.from_dict({"rotation": 1.0})


def test_augment_function_on_both_backends(digits):
    settings = fcnn.Augmentation.recommended()
    expected = _core.augment(digits[:20], np.arange(20), 3, 40, *settings.strengths())
    np.testing.assert_array_equal(
        fcnn.augment(digits[:20], settings, seed=3, first_stream=40), expected
    )
    fcnn.set_backend("numpy")
    try:
        result = fcnn.augment(digits[:20], settings, seed=3, first_stream=40)
    finally:
        fcnn.set_backend("c")
    np.testing.assert_array_equal(result, expected)
    with pytest.raises(TypeError, match="^augmentation "):
        fcnn.augment(digits, {"rotate": 1.0})
    with pytest.raises(TypeError, match="^images "):
        fcnn.augment(digits.astype(np.float32), settings)
    with pytest.raises(ValueError, match="^images "):
        fcnn.augment(digits[0], settings)


@pytest.mark.parametrize("shuffle", [True, False])
def test_loader_augments_with_the_streams_of_epoch_and_position(digits, shuffle):
    labels = np.arange(digits.shape[0]) % 10
    settings = fcnn.Augmentation(translate=1.5, rotate=10.0, elastic_alpha=3.0, elastic_sigma=2.0)
    loader = DataLoader((digits, labels), batch_size=64, shuffle=shuffle, seed=17, augment=settings)
    plain = DataLoader((digits, labels), batch_size=64, shuffle=shuffle, seed=17)
    N = digits.shape[0]
    for epoch in range(2):
        order = plain.epoch_order()
        batches = list(loader)
        assert loader.epochs_started == epoch + 1
        for number, (images, batch_labels) in enumerate(batches):
            indices = order[number * 64 : (number + 1) * 64]
            warped = _core.augment(
                digits, indices, 17, epoch * N + number * 64, *settings.strengths()
            )
            expected = np.divide(
                warped.reshape(len(indices), -1), np.float32(255), dtype=np.float32
            )
            np.testing.assert_array_equal(images, expected)
            np.testing.assert_array_equal(batch_labels, labels[indices])
    # flat square images give the same batches as (N, 28, 28)
    flat = DataLoader(
        (digits.reshape(N, -1), labels), batch_size=64, shuffle=shuffle, seed=17, augment=settings
    )
    again = DataLoader((digits, labels), batch_size=64, shuffle=shuffle, seed=17, augment=settings)
    for (first, _), (second, _) in zip(flat, again, strict=True):
        np.testing.assert_array_equal(first, second)


def test_loader_refuses_what_it_cannot_augment(digits):
    labels = np.zeros(digits.shape[0], np.int64)
    settings = fcnn.Augmentation(rotate=5.0)
    with pytest.raises(TypeError, match="^augment "):
        DataLoader((digits, labels), augment={"rotate": 5.0})
    with pytest.raises(TypeError, match="uint8"):
        DataLoader((digits.astype(np.float32), labels), augment=settings)
    with pytest.raises(ValueError, match="height, width"):
        DataLoader((digits.reshape(-1, 28 * 28)[:, :780], labels), augment=settings)
    with pytest.raises(ValueError, match="height, width"):
        DataLoader((digits.reshape(-1, 2, 14, 28), labels), augment=settings)
    unseeded = DataLoader((digits, labels), augment=settings)
    assert 0 <= unseeded.augment_seed < 2**64


def test_scaled_strengths_keep_sigma_and_a_valid_scale():
    half = fcnn.augmentation.LITERATURE.scaled(0.5)
    assert half.rotate == 5.0 and half.elastic_alpha == 10.0 and half.elastic_sigma == 4.0
    assert fcnn.augmentation.LITERATURE.scaled(20).scale == 0.9
    assert fcnn.augmentation.LITERATURE.scaled(0).is_identity
    with pytest.raises(ValueError, match="factor must be finite and >= 0"):
        fcnn.augmentation.LITERATURE.scaled(-1)


def test_labels_name_the_strengths_that_are_on():
    assert fcnn.Augmentation().label() == "off"
    assert fcnn.augmentation.LITERATURE.label() == "t2 r10 s0.1 k0.15 e20/4"
    assert fcnn.augmentation.LITERATURE.scaled(0.5).label() == "t1 r5 s0.05 k0.075 e10/4"
    assert fcnn.Augmentation(rotate=5, elastic_alpha=3).label() == "r5"  # sigma 0: no elastic


def test_search_runs_an_augmentation_stage_and_saves_it_as_json(tmp_path):
    from fcnn.search import AUGMENT_STAGES, SearchResult, sequential_search, stages_by_name

    assert stages_by_name(["augment"]) == list(AUGMENT_STAGES)
    rng = np.random.default_rng(0)
    images = np.zeros((120, 10, 10), np.uint8)
    images[:, 3:7, 3:7] = rng.integers(0, 256, (120, 4, 4))
    labels = rng.integers(0, 3, 120)
    candidates = (fcnn.Augmentation(), fcnn.Augmentation(translate=1.0))
    base = fcnn.TrainConfig(hidden=(8,), epochs=1, batch_size=16)
    result = sequential_search(
        (images[:90], labels[:90]),
        (images[90:], labels[90:]),
        stages=[("augment", candidates)],
        base=base,
        progress=False,
    )
    assert [record["name"] for record in result.records] == ["augment=off", "augment=t1"]
    result.to_json(tmp_path / "search.json")
    again = SearchResult.from_json(tmp_path / "search.json")
    assert again.records[1]["params"]["augment"] == candidates[1].to_dict()
    assert fcnn.TrainConfig.from_dict(again.records[1]["params"]).augment == candidates[1]
