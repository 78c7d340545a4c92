"""Numbers out of range and wrong shapes through the Module API, the DataLoader and
prediction: each refused with an error that names the argument, before any work is done.

(The kernels' own bad-input zoo is tests/test_bad_input.py.)
"""

import numpy as np
import pytest

import fcnn
from fcnn import _checks
from fcnn.dataloader import DataLoader
from fcnn.functional import CrossEntropyLoss, Linear, ReLU, Softmax
from fcnn.nn import Module


def images_and_labels(n=10, features=6, dtype=np.uint8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, features)).astype(dtype), rng.integers(0, 3, n)


def small_net(features=6):
    return Module(Linear(features, 5, rng=0), ReLU(), Linear(5, 3, rng=1), Softmax())


# ---------------------------------------------------------------------------- DataLoader


@pytest.mark.parametrize("batch_size", [True, False, np.True_])
def test_bool_batch_size_is_refused(batch_size):
    with pytest.raises(TypeError, match="^batch_size must be an integer, got bool"):
        DataLoader(images_and_labels(), batch_size=batch_size)


@pytest.mark.parametrize(
    "batch_size, error, message",
    [
        (0, ValueError, "^batch_size must be an integer >= 1, got 0"),
        (-3, ValueError, "^batch_size must be an integer >= 1, got -3"),
        (2.0, TypeError, "^batch_size must be an integer, got float"),
        ("64", TypeError, "^batch_size must be an integer, got str"),
    ],
)
def test_bad_batch_size(batch_size, error, message):
    with pytest.raises(error, match=message):
        DataLoader(images_and_labels(), batch_size=batch_size)


def test_numpy_integer_batch_size_is_accepted():
    assert DataLoader(images_and_labels(), batch_size=np.int64(4)).batch_size == 4


@pytest.mark.parametrize(
    "dtype, low, high",
    [
        (np.uint16, 0, 4095),
        (np.int32, 0, 256),
        (np.int8, -1, 100),
        (np.int64, -5, 30),
    ],
)
def test_integer_images_outside_0_255_are_refused(dtype, low, high):
    """Dividing 12-bit scans by 255 gave pixels up to 16, silently."""
    images, labels = np.full((10, 6), 10, dtype), np.zeros(10, int)
    images[3, 2], images[7, 1] = low, high
    with pytest.raises(
        ValueError,
        match=rf"^images of dtype {np.dtype(dtype)} must lie in "
        rf"\[0, 255\].*got values from {low} to {high}",
    ):
        DataLoader((images, labels))


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
def test_integer_images_within_0_255_give_the_uint8_batches(dtype):
    images, labels = images_and_labels()
    expected = list(DataLoader((images, labels), batch_size=4, seed=3))
    for (x, y), (x8, y8) in zip(
        DataLoader((images.astype(dtype), labels), batch_size=4, seed=3), expected, strict=True
    ):
        assert x.tobytes() == x8.tobytes() and x.dtype == np.float32
        np.testing.assert_array_equal(y, y8)


def test_uint8_batches_are_the_float_division_by_255():
    """One pass (np.divide into the batch dtype) gives the bits of astype() then /= 255."""
    images = np.arange(256, dtype=np.uint8).reshape(64, 4)
    for dtype in (np.float32, np.float64):
        x, _ = next(
            iter(DataLoader((images, np.zeros(64, int)), batch_size=64, shuffle=False, dtype=dtype))
        )
        expected = images.astype(dtype)
        expected /= 255
        assert x.tobytes() == expected.tobytes()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_float_images_are_refused(bad, dtype):
    images = np.zeros((5, 3, 2), dtype)
    images[4, 1, 0] = bad
    with pytest.raises(
        ValueError,
        match=rf"^images must be finite, got {bad} at sample 4, "
        "feature 2",
    ):
        DataLoader((images, np.zeros(5, int)))


def test_non_finite_check_reads_the_whole_array():
    """The check goes through the data chunk by chunk: the last value is seen too."""
    from fcnn import dataloader

    images = np.zeros((dataloader._CHECK_CHUNK // 100 + 3, 100), np.float32)
    images[-1, -1] = np.nan
    with pytest.raises(ValueError, match=f"at sample {images.shape[0] - 1}, feature 99"):
        DataLoader((images, np.zeros(images.shape[0], int)))


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (
            np.array([0, 1, -1, 2]),
            ValueError,
            r"^labels must be class indices >= 0, got -1 at index 2",
        ),
        (
            np.array([0, 1, 2**64 - 1, 2], np.uint64),
            ValueError,
            r"^labels must be class indices >= 0, got 18446744073709551615 at index 2",
        ),
        (np.array([0, 1, -128, 2], np.int8), ValueError, "got -128 at index 2"),
        (
            np.array([0.0, 1.0, 2.0, 1.0]),
            TypeError,
            "^labels must have an integer dtype, got float64",
        ),
        (np.array([True, False, True, True]), TypeError, "^labels must have an integer dtype"),
        (np.array([[0, 1, 2, 1]]), ValueError, r"^labels must have shape \(4,\)"),
    ],
)
def test_bad_labels(labels, error, message):
    images = np.zeros((4, 3), np.uint8)
    with pytest.raises(error, match=message):
        DataLoader((images, labels))


def test_large_unsigned_labels_within_int64_are_kept():
    labels = np.array([0, 2**40, 5], np.uint64)
    _, y = next(iter(DataLoader((np.zeros((3, 2), np.uint8), labels), shuffle=False)))
    assert y.dtype == np.int64 and y.tolist() == [0, 2**40, 5]


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((0, 4), np.uint8), r"^images must have shape \(N, \.\.\.\) with N >= 1"),
        (np.zeros((4, 0), np.uint8), r"^images must have at least one feature per sample"),
        (np.zeros((4, 3, 0), np.float32), r"^images must have at least one feature per sample"),
        (np.zeros(4, np.uint8), r"^images must have shape \(N, \.\.\.\)"),
    ],
)
def test_empty_images_are_refused(images, message):
    with pytest.raises(ValueError, match=message):
        DataLoader((images, np.zeros(images.shape[0], int)))


def test_kept_batches_are_not_overwritten():
    """Every batch is a new array: list(loader) keeps distinct batches."""
    images, labels = images_and_labels(n=12)
    for shuffle in (True, False):
        batches = list(DataLoader((images, labels), batch_size=4, shuffle=shuffle, seed=0))
        assert not any(
            np.shares_memory(a[0], b[0]) for i, a in enumerate(batches) for b in batches[i + 1 :]
        )
        assert not any(np.shares_memory(x, images) for x, _ in batches)


# ---------------------------------------------------------------------------- Module API


@pytest.mark.parametrize("call", ["forward", "inference", "logits"])
def test_wrong_feature_count_names_the_layer_and_the_shapes(call):
    net = small_net(features=6)
    run = getattr(net, call)
    with pytest.raises(
        ValueError,
        match=r"^layers\[0\]: x must have 6 features for "
        r"Linear\(6, 5, dtype=float32\), got shape \(2, 7\)",
    ):
        run(np.ones((2, 7), np.float32))


def test_mismatched_layers_name_the_later_layer():
    net = Module(Linear(4, 3, rng=0), ReLU(), Linear(5, 2, rng=1))
    with pytest.raises(
        ValueError,
        match=r"^layers\[2\]: x must have 5 features for "
        r"Linear\(5, 2, dtype=float32\), got shape \(2, 3\)",
    ):
        net(np.ones((2, 4), np.float32))


@pytest.mark.parametrize(
    "x, error, message",
    [
        (
            np.ones(6, np.float32),
            ValueError,
            r"^x must be 2-D \(batch, features\).*got shape \(6,\)",
        ),
        (np.ones((2, 3, 6), np.float32), ValueError, r"^x must be 2-D.*got shape \(2, 3, 6\)"),
        (np.ones((0, 6), np.float32), ValueError, r"^x must be 2-D.*at least one sample.*\(0, 6\)"),
        ([[1.0] * 6], TypeError, "^x must be a numpy.ndarray, got list"),
    ],
)
@pytest.mark.parametrize("call", ["forward", "inference", "logits"])
def test_bad_batches_through_the_module(call, x, error, message):
    with pytest.raises(error, match=message):
        getattr(small_net(), call)(x)


def test_a_refused_forward_leaves_no_half_cache_for_the_loss():
    net = small_net()
    criterion = CrossEntropyLoss(net)
    loss = criterion(net(np.ones((2, 6), np.float32)), np.array([0, 1]))
    with pytest.raises(ValueError):
        net(np.ones((2, 7), np.float32))
    with pytest.raises(RuntimeError, match="after another forward pass"):
        loss.backward()


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize(
    "labels, error, message",
    [
        (np.array([0, 3]), ValueError, r"^labels must be in \[0, 3\), got 3 at index 1"),
        (np.array([-1, 0]), ValueError, r"^labels must be in \[0, 3\), got -1 at index 0"),
        (np.array([0.0, 1.0]), TypeError, "^labels must have an integer dtype"),
        (np.array([0, 1, 2]), ValueError, r"^labels must have shape \(2,\)"),
    ],
)
def test_loss_refuses_labels_outside_the_classes(backend, labels, error, message):
    fcnn.set_backend(backend)
    try:
        net = small_net()
        with pytest.raises(error, match=message):
            CrossEntropyLoss(net)(net(np.ones((2, 6), np.float32)), labels)
    finally:
        fcnn.set_backend("c")


# ---------------------------------------------------------------------------- prediction


def refuse_work(net, monkeypatch):
    """Makes any pass through the net fail the test: the error must come first."""

    def fail(*args, **kwargs):
        raise AssertionError("the net ran before the input was refused")

    for name in ("forward", "inference", "logits"):
        monkeypatch.setattr(net, name, fail)


@pytest.mark.parametrize("predict", [fcnn.predict, fcnn.predict_proba])
def test_prediction_refuses_non_finite_images_before_any_work(predict, monkeypatch):
    """NaN images were predicted as class 0, silently."""
    net = small_net()
    images = np.full((20, 6), 0.5, np.float32)
    images[13, 4] = np.nan
    refuse_work(net, monkeypatch)
    with pytest.raises(ValueError, match="^images must be finite, got nan at sample 13, feature 4"):
        predict(net, images)


def test_evaluate_refuses_non_finite_images(monkeypatch):
    net = small_net()
    images = np.full((20, 6), 0.5, np.float64)
    images[0, 0] = np.inf
    refuse_work(net, monkeypatch)
    with pytest.raises(ValueError, match="^images must be finite, got inf at sample 0"):
        fcnn.evaluate(net, images, np.zeros(20, int))


def test_prediction_refuses_wrong_feature_count_before_any_work(monkeypatch):
    net = small_net(features=6)
    refuse_work(net, monkeypatch)
    with pytest.raises(
        ValueError,
        match=r"^images must have 6 features per sample .*"
        r"got shape \(4, 2, 4\)",
    ):
        fcnn.predict(net, np.zeros((4, 2, 4), np.uint8))


def test_prediction_refuses_16_bit_images(monkeypatch):
    net = small_net()
    refuse_work(net, monkeypatch)
    with pytest.raises(ValueError, match=r"^images of dtype uint16 must lie in \[0, 255\]"):
        fcnn.predict(net, np.full((3, 6), 1000, np.uint16))


@pytest.mark.parametrize(
    "dout, error",
    [
        (np.ones((2, 5), np.float32), ValueError),
        (np.ones((3, 2), np.float32), ValueError),
        (np.ones((2, 2), np.float64), TypeError),
        ([[1.0, 2.0]], TypeError),
    ],
)
def test_backward_names_the_layer_and_the_gradient_it_expected(dout, error):
    """A wrong dout used to surface as a complaint about the weight or the cached input."""
    net = Module(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1))
    net(np.ones((2, 4), np.float32))
    held = [layer.weight_grad.copy() for layer in net.linear_layers()]
    with pytest.raises(error, match=r"^layers\[2\]: dout must be a"):
        net.backward(dout)
    for layer, before in zip(net.linear_layers(), held, strict=True):
        np.testing.assert_array_equal(layer.weight_grad, before)


# ---------------------------------------------------------------------------- fcnn._checks


@pytest.mark.parametrize(
    "value, bounds, error, message",
    [
        (True, {}, TypeError, "^epochs must be an integer, got bool"),
        (np.bool_(True), {}, TypeError, "^epochs must be an integer, got bool"),
        (2.0, {}, TypeError, "^epochs must be an integer, got float"),
        ("2", {}, TypeError, "^epochs must be an integer, got str"),
        (0, {"minimum": 1}, ValueError, "^epochs must be an integer >= 1, got 0"),
        (9, {"maximum": 8}, ValueError, "^epochs must be an integer <= 8, got 9"),
        (
            2**31,
            {"minimum": 1, "maximum": _checks.INT32_MAX},
            ValueError,
            "^epochs must be an integer >= 1 and <= 2147483647, got 2147483648$",
        ),
    ],
)
def test_check_int_names_the_argument_and_what_was_expected(value, bounds, error, message):
    with pytest.raises(error, match=message):
        _checks.check_int(value, "epochs", **bounds)


def test_check_int_accepts_numpy_integers_as_python_ints():
    value = _checks.check_int(np.int64(7), "epochs", minimum=1)
    assert value == 7 and type(value) is int


@pytest.mark.parametrize(
    "value, bounds, error, message",
    [
        (True, {}, TypeError, "^lr must be a real number, got bool"),
        ("0.1", {}, TypeError, "^lr must be a real number, got str"),
        (None, {}, TypeError, "^lr must be a real number, got NoneType"),
        (float("nan"), {}, ValueError, "^lr must be finite, got nan"),
        (-0.5, {"minimum": 0}, ValueError, r"^lr must be finite and >= 0, got -0.5"),
        (1.5, {"maximum": 1}, ValueError, r"^lr must be finite and <= 1, got 1.5"),
        (float("nan"), {"minimum": 0, "finite": False}, ValueError, "^lr must be >= 0, got nan"),
        (0.0, {"minimum": 0, "exclusive_minimum": True}, ValueError, r"^lr must be finite and > 0"),
        (
            1.0,
            {"minimum": 0, "maximum": 1, "exclusive_maximum": True},
            ValueError,
            r"^lr must be finite and >= 0 and < 1, got 1.0",
        ),
    ],
)
def test_check_real_names_the_argument_and_what_was_expected(value, bounds, error, message):
    with pytest.raises(error, match=message):
        _checks.check_real(value, "lr", **bounds)


def test_check_real_accepts_numpy_reals_and_infinity_when_asked():
    assert _checks.check_real(np.float32(0.5), "lr") == 0.5
    assert _checks.check_real(float("inf"), "lr", minimum=0, finite=False) == float("inf")
    assert _checks.check_real(1e-300, "lr", minimum=0, exclusive_minimum=True) == 1e-300
    assert _checks.check_real(0.999, "m", maximum=1, exclusive_maximum=True) == 0.999


@pytest.mark.parametrize("n_jobs", [0, True, 1.5, "2"])
def test_check_n_jobs_refuses(n_jobs):
    with pytest.raises(ValueError, match="^n_jobs must be a non-zero integer"):
        _checks.check_n_jobs(n_jobs)


@pytest.mark.parametrize("threads", [0, True, 1.5, "many"])
def test_check_threads_refuses(threads):
    with pytest.raises(ValueError, match="^threads_per_worker must be an integer >= 1, 'auto'"):
        _checks.check_threads(threads)


def test_check_n_jobs_and_threads_pass_what_they_accept():
    assert [_checks.check_n_jobs(value) for value in (None, -1, 3, np.int64(2))] == [None, -1, 3, 2]
    assert [_checks.check_threads(value) for value in (None, "auto", 4)] == [None, "auto", 4]
