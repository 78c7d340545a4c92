"""The fused C epoch with augmentation: against its NumPy twin, against the Module API over
DataLoader(augment=...), reproducibility, the recorded settings, bad input and leaks."""

import numpy as np
import pytest
from leakcheck import assert_no_leak
from synthetic import assert_matches_twin, assert_same_training, fused_epoch, parameters

import fcnn
from fcnn import _core, reference, training
from fcnn.dataloader import DataLoader
from fcnn.functional import Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD, ExponentialScheduler
from fcnn.training import train

CLASSES = 5
HEIGHT, WIDTH = 12, 10
STRENGTHS = (1.5, 12.0, 0.1, 0.15, 2.0, 1.5)


def blots(n=240, seed=0):
    """uint8 images (n, HEIGHT * WIDTH): bright blots on a zero background, off-centre."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, HEIGHT, WIDTH), np.uint8)
    for image in images:
        top, left = rng.integers(1, 5), rng.integers(1, 4)
        image[top : top + 6, left : left + 5] = rng.integers(0, 256, (6, 5))
    images[images < 90] = 0
    return images.reshape(n, -1), rng.integers(0, CLASSES, n)


def run(backend, dtype, momentum=0.0, sparse_threshold=0.5, first_stream=0, seed=9, dropout=None):
    images, labels = blots()
    sizes = [HEIGHT * WIDTH, 30, CLASSES] if dropout is None else [HEIGHT * WIDTH, 30, 20, CLASSES]
    return fused_epoch(
        backend,
        images,
        labels,
        sizes,
        dtype,
        momentum=momentum,
        sparse_threshold=sparse_threshold,
        dropout=dropout,
        augment=STRENGTHS,
        image_shape=(HEIGHT, WIDTH),
        augment_seed=seed,
        first_stream=first_stream,
    )


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("sparse_threshold", [0.0, 1.0, None])
def test_augmented_fused_epoch_matches_twin(dtype, rtol, momentum, sparse_threshold):
    result = run(_core, dtype, momentum, sparse_threshold, 1000)
    twin_result = run(reference, dtype, momentum, None, 1000)
    assert_matches_twin(result, twin_result, 8, dtype, rtol)


def test_augmentation_changes_the_epoch():
    """The warp is really applied: other streams or no augmentation train differently."""
    _, first = run(_core, np.float64)
    _, other_streams = run(_core, np.float64, first_stream=5)
    _, other_seed = run(_core, np.float64, seed=10)
    for other in (other_streams, other_seed):
        assert not np.array_equal(first[0], other[0])


def mlp(dtype=np.float64, seed=0):
    sizes = [HEIGHT * WIDTH, 40, CLASSES]
    layers = []
    for index, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Linear(a, b, dtype=dtype, rng=seed + index))
        layers.append(ReLU() if index < len(sizes) - 2 else Softmax())
    return Module(layers)


def train_augmented(fused, dtype=np.float64, momentum=0.9, epochs=2):
    images, labels = blots(n=300)
    net = mlp(dtype)
    optimizer = SGD(
        net,
        lr_scheduler=ExponentialScheduler(0.2, stage_length=7),
        decay=1e-4,
        momentum=momentum,
    )
    loader = DataLoader(
        (images.reshape(-1, HEIGHT, WIDTH), labels),
        batch_size=40,
        seed=3,
        dtype=dtype,
        augment=fcnn.Augmentation(*STRENGTHS),
    )
    assert training.fused_eligible(net, optimizer, loader) is None
    history = train(net, optimizer, loader, epochs=epochs, progress=False, fused=fused)
    return net.state_dict(), history, optimizer.step_count


@pytest.mark.parametrize("chunk", [64, 3])
def test_fused_equals_module_path_over_an_augmenting_loader(monkeypatch, chunk):
    # Chunks of 3 batches: each call of the kernel starts at its own stream.
    monkeypatch.setattr(training, "FUSED_CHUNK", chunk)
    fused_state, fused_history, fused_steps = train_augmented(True)
    module_state, module_history, module_steps = train_augmented(False)
    assert fused_steps == module_steps == 2 * 8
    assert_same_training((fused_state, fused_history), (module_state, module_history))


@pytest.mark.parametrize("threads", [1, 2])
def test_augmented_fused_training_is_bitwise_reproducible(threads):
    previous = fcnn.get_num_threads()
    fcnn.set_num_threads(threads)
    try:
        runs = [train_augmented(True, np.float32)[0] for _ in range(2)]
    finally:
        fcnn.set_num_threads(previous)
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def bad_cases():
    images, labels = blots(n=64)
    weights, biases = parameters([HEIGHT * WIDTH, 16, CLASSES], np.float32)

    def call(**changes):
        arguments = dict(
            images=images,
            labels=labels,
            order=np.arange(64),
            weights=weights,
            biases=biases,
            lrs=np.full(2, 0.1),
            batch_size=32,
            augment=STRENGTHS,
            image_shape=(HEIGHT, WIDTH),
            augment_seed=1,
            first_stream=0,
        )
        arguments.update(changes)
        return arguments

    float_weights, float_biases = parameters([HEIGHT * WIDTH, 16, CLASSES], np.float64)
    return [
        (
            call(images=images / 255.0, weights=float_weights, biases=float_biases),
            TypeError,
            r"^images must have dtype uint8 to be augmented",
        ),
        (call(augment=STRENGTHS[:5]), ValueError, r"^augment must hold 6 strengths"),
        (call(augment=3.0), TypeError, r"^augment must be None or a sequence"),
        (call(augment=(0, 0, 1.0, 0, 0, 0)), ValueError, r"^scale must be in \[0, 1\)"),
        (call(augment=(-1, 0, 0, 0, 0, 0)), ValueError, r"^translate must be"),
        (call(image_shape=(10, 10)), ValueError, r"^image_shape must be \(height, width\)"),
        (call(image_shape=None), ValueError, r"^image_shape must be \(height, width\)"),
        (call(image_shape=(HEIGHT,)), ValueError, r"^image_shape must be None or a pair"),
        (call(image_shape=(0, 120)), ValueError, r"^image_shape\[0\] must be"),
        (call(augment_seed=-1), ValueError, r"^augment_seed must be"),
        (call(first_stream=-1), ValueError, r"^first_stream must be"),
        (call(first_stream=2**63 - 10), ValueError, r"^first_stream must be at most"),
    ]


@pytest.mark.parametrize("arguments, error, pattern", bad_cases())
def test_augmented_train_epoch_bad_input(arguments, error, pattern):
    with pytest.raises(error, match=pattern):
        _core.train_epoch(**arguments)
    with pytest.raises(error, match=pattern):
        reference.train_epoch(**arguments)


def test_square_images_need_no_shape():
    images, labels = blots(n=64)
    square = np.zeros((64, 11, 11), np.uint8)
    square[:, : HEIGHT - 1, :WIDTH] = images.reshape(64, HEIGHT, WIDTH)[:, :11]
    flat = square.reshape(64, -1)
    results = []
    for image_shape in (None, (11, 11)):
        weights, biases = parameters([121, 16, CLASSES], np.float64)
        results.append(
            _core.train_epoch(
                flat,
                labels,
                np.arange(64),
                weights,
                biases,
                np.full(2, 0.1),
                32,
                augment=STRENGTHS,
                image_shape=image_shape,
                augment_seed=4,
            )
        )
    assert results[0] == results[1]


def test_history_and_config_record_the_augmentation():
    images, labels = blots(n=120)
    settings = fcnn.Augmentation(*STRENGTHS)
    config = fcnn.TrainConfig(
        hidden=(16,), epochs=1, batch_size=40, seed=4, dtype="float64", augment=settings
    )
    assert fcnn.TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["augment"] == settings.to_dict()
    assert fcnn.TrainConfig(augment=settings.to_dict()).augment == settings
    with pytest.raises(TypeError, match="^augment "):
        fcnn.TrainConfig(augment=STRENGTHS)
    net, _, history = fcnn.fit(config, (images.reshape(-1, HEIGHT, WIDTH), labels), progress=False)
    assert history["augmentation"] == {**settings.to_dict(), "seed": 4}
    # the same run without augmentation trains other weights
    plain = fcnn.fit(
        fcnn.TrainConfig(hidden=(16,), epochs=1, batch_size=40, seed=4, dtype="float64"),
        (images, labels),
        progress=False,
    )
    assert "augmentation" not in plain[2]
    assert not np.array_equal(
        net.state_dict()["layers.0.weight"], plain[0].state_dict()["layers.0.weight"]
    )


def test_augmented_train_epoch_does_not_leak():
    """Valid calls and calls failing in the augmentation's checks (after the strengths and the
    shape were read) release what they take."""
    images, labels = blots(n=64)
    weights, biases = parameters([HEIGHT * WIDTH, 8, CLASSES], np.float64)
    order = np.arange(64).astype(np.int32)
    strengths = list(STRENGTHS)
    shape = [HEIGHT, WIDTH]
    valid = dict(augment=strengths, image_shape=shape, augment_seed=3, first_stream=5)
    failing = [
        dict(valid, first_stream=-1),
        dict(valid, image_shape=[HEIGHT, WIDTH + 1]),
        dict(valid, augment=[*STRENGTHS[:5], -1.0]),
    ]

    def run(calls):
        for call in range(calls):
            if call % 10 == 0:
                with pytest.raises(ValueError):
                    _core.train_epoch(
                        images,
                        labels,
                        order,
                        weights,
                        biases,
                        np.full(2, 0.01),
                        32,
                        **failing[call // 10 % 3],
                    )
            else:
                _core.train_epoch(
                    images, labels, order, weights, biases, np.full(2, 0.01), 32, **valid
                )

    watched = [images, labels, order, strengths, shape, *strengths, *weights, None]
    # a leaked int64 copy of order per call would be 600 * 512 bytes = 300 KiB
    assert_no_leak(run, 600, watched)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_augmentation_and_dropout_together_match_twin(dtype, rtol):
    """Both draw from random.h in one epoch, on separate streams: the twin draws the same."""
    dropout = [(0.3, 5, 100), (0.2, 2**64 - 1, 0)]
    (steps, loss, _), params = run(_core, dtype, 0.9, None, 77, dropout=dropout)
    (twin_steps, twin_loss, _), twin_params = run(reference, dtype, 0.9, None, 77, dropout=dropout)
    assert steps == twin_steps == 8
    assert loss == pytest.approx(twin_loss, rel=rtol)
    for value, expected in zip(params, twin_params, strict=True):
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=rtol)
