"""The training loop, its history, divergence and Ctrl-C handling, and evaluation."""

import signal

import numpy as np
import pytest
from synthetic import blobs

from fcnn.dataloader import DataLoader
from fcnn.functional import Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD
from fcnn.training import (
    DivergenceError,
    TrainConfig,
    build_model,
    evaluate,
    fit,
    predict,
    predict_proba,
    train,
)


def small_net(features=16, classes=3, seed=0):
    return Module(
        Linear(features, 8, rng=seed), ReLU(), Linear(8, classes, rng=seed + 1), Softmax()
    )


def test_train_records_history():
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=0.5, lr_scheduler=None)
    loader = DataLoader((images[:400], labels[:400]), batch_size=32, seed=0)
    history = train(
        net,
        optimizer,
        loader,
        epochs=3,
        val_data=(images[400:500], labels[400:500]),
        test_data=(images[500:], labels[500:]),
        progress=False,
    )
    assert history["epoch"] == [1, 2, 3]
    for key in (
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
        "lr",
        "epoch_time",
    ):
        assert len(history[key]) == 3, key
    assert history["train_loss"][2] < history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.95
    assert all(0 <= a <= 1 for a in history["train_accuracy"])
    assert "interrupted" not in history
    assert optimizer.step_count == 3 * len(loader)


def test_train_without_eval_data_has_no_eval_keys():
    images, labels = blobs()
    history = train(
        small_net(),
        SGD(small_net(), lr=0.1, lr_scheduler=None),
        DataLoader((images, labels)),
        epochs=1,
        progress=False,
    )
    assert "val_loss" not in history and "test_accuracy" not in history


def test_divergence_names_epoch_and_step_and_keeps_finite_weights():
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=1e30, lr_scheduler=None)
    with pytest.raises(DivergenceError, match=r"diverged at epoch 1, step \d+: the loss is"):
        train(
            net,
            optimizer,
            DataLoader((images, labels), batch_size=32, seed=0),
            epochs=2,
            progress=False,
        )
    assert all(np.isfinite(p).all() for p in net.parameters())


class InterruptingLoader(DataLoader):
    """Sends SIGINT (as Ctrl-C does) while yielding the given batch of the given epoch."""

    def __init__(self, *args, at_epoch, at_batch, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch, self.at_epoch, self.at_batch = 0, at_epoch, at_batch

    def __iter__(self):
        self.epoch += 1
        for index, batch in enumerate(super().__iter__(), start=1):
            if (self.epoch, index) == (self.at_epoch, self.at_batch):
                signal.raise_signal(signal.SIGINT)
            yield batch


def test_ctrl_c_stops_between_batches_with_model_intact():
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=0.1, lr_scheduler=None)
    loader = InterruptingLoader((images, labels), batch_size=32, seed=0, at_epoch=2, at_batch=3)
    history = train(net, optimizer, loader, epochs=5, progress=False)
    assert history["interrupted"] is True
    assert history["epoch"] == [1]  # only completed epochs are recorded
    assert optimizer.step_count == len(loader) + 3  # the batch under way was finished
    assert all(np.isfinite(p).all() for p in net.parameters())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_predict_and_evaluate():
    images, labels = blobs()
    net = small_net()
    train(
        net,
        SGD(net, lr=0.5, lr_scheduler=None),
        DataLoader((images, labels), seed=0),
        epochs=3,
        progress=False,
    )
    probs = predict_proba(net, images, batch_size=100)
    assert probs.shape == (600, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    # Batches of 100 against one batch of 600: the BLAS may block the two products differently
    # (seen on AMD), so float32 logits agree to rounding, not bit for bit.
    np.testing.assert_allclose(probs, net(images.astype(np.float32) / 255), rtol=1e-5, atol=1e-7)
    predicted = predict(net, images, batch_size=7)
    np.testing.assert_array_equal(predicted, probs.argmax(axis=1))
    result = evaluate(net, images, labels, class_names=["a", "b", "c"])
    assert result["accuracy"] == pytest.approx((predicted == labels).mean())
    assert result["confusion_matrix"].sum() == 600 and result["confusion_matrix"].shape == (3, 3)
    assert set(result["report"]) >= {"a", "b", "c", "accuracy", "macro avg", "weighted avg"}
    assert "precision" in result["report_text"]


def test_evaluate_rejects_mismatched_labels():
    images, labels = blobs()
    with pytest.raises(ValueError, match=r"^labels must have shape \(600,\)"):
        evaluate(small_net(), images, labels[:10])


def test_fit_builds_the_configured_model():
    images, labels = blobs()
    config = TrainConfig(hidden=(12, 6), lr=0.2, epochs=2, batch_size=50, seed=3)
    net, optimizer, history = fit(config, (images, labels), progress=False)
    assert [(layer.num_inputs, layer.num_outputs) for layer in net.linear_layers()] == [
        (16, 12),
        (12, 6),
        (6, 3),
    ]
    assert type(net.layers[-1]).__name__ == "Softmax"
    assert optimizer.step_count == 2 * 12 and len(history["epoch"]) == 2
    again, _, _ = fit(config, (images, labels), progress=False)
    for a, b in zip(net.parameters(), again.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same run


def test_train_config_round_trip_and_unknown_keys():
    config = TrainConfig(hidden=(64,), lr=0.01)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown training settings \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    net = build_model(784, 10, TrainConfig(hidden=(5,), dtype="float64"))
    assert net.dtype == np.float64


# ----------------------------------------------------------------------------
# data as train takes it, single images, bad values (issue 10 "Minor", issue 11 point 6)


def trained_net(features=16):
    images, labels = blobs(features=features)
    net = small_net(features=features)
    train(
        net,
        SGD(net, lr=0.5, lr_scheduler=None),
        DataLoader((images, labels), seed=0),
        epochs=2,
        progress=False,
    )
    return net, images, labels


def test_evaluate_takes_a_pair_as_train_does():
    net, images, labels = trained_net()
    pair = evaluate(net, (images, labels))
    apart = evaluate(net, images, labels)
    assert pair["accuracy"] == apart["accuracy"] > 0.9 and pair["loss"] == apart["loss"]
    np.testing.assert_array_equal(pair["predictions"], apart["predictions"])
    with pytest.raises(TypeError, match=r"data must be a pair \(images, labels\)"):
        evaluate(net, images)


@pytest.mark.parametrize("shape", [(16,), (4, 4), (1, 16), (2, 2, 4)])
def test_a_single_image_is_one_sample(shape):
    net, images, _ = trained_net()
    image = images[5].reshape(shape)
    assert predict(net, image).shape == (1,)
    assert predict(net, image)[0] == predict(net, images[5:6])[0]
    np.testing.assert_array_equal(predict_proba(net, image), predict_proba(net, images[5:6]))
    result = evaluate(net, image, np.int64(2))
    assert result["predictions"].shape == (1,)


def test_a_28_by_28_image_is_one_mnist_sample():
    net = Module(Linear(784, 10, rng=0), Softmax())
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    assert predict(net, image).shape == (1,)
    assert predict_proba(net, image).shape == (1, 10)
    assert predict(net, image.reshape(1, 28, 28)).shape == (1,)
    with pytest.raises(ValueError, match=r"images must have 784 features per sample"):
        predict(net, image[:, :27])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_images_are_refused_not_predicted_as_class_0(bad):
    net, images, labels = trained_net()
    floats = images.astype(np.float32) / 255
    floats[7, 3] = bad
    for call in (
        lambda: predict(net, floats),
        lambda: predict_proba(net, floats),
        lambda: evaluate(net, floats, labels),
    ):
        with pytest.raises(
            ValueError,
            match=r"^images must be finite, got .?(nan|inf) at sample "
            r"7, feature 3$",
        ):
            call()
    with pytest.raises(
        ValueError,
        match=r"val_data\[0\] \(images\) must be finite, got .* at "
        r"sample 7, feature 3",
    ):
        train(
            net,
            SGD(net, lr=0.1, lr_scheduler=None),
            DataLoader((images, labels)),
            1,
            val_data=(floats, labels),
            progress=False,
        )
    # DataLoader itself refuses them, before any training can start.
    with pytest.raises(ValueError, match=r"^images must be finite, got .* at sample 7"):
        DataLoader((floats, labels))


@pytest.mark.parametrize(
    "value, error, message",
    [
        (True, TypeError, "an integer, got bool"),
        (False, TypeError, "an integer, got bool"),
        (1.0, TypeError, "an integer, got float"),
        ("2", TypeError, "an integer, got str"),
        (0, ValueError, "an integer >= 1, got 0"),
    ],
)
def test_epochs_must_be_a_true_integer(value, error, message):
    images, labels = blobs()
    net = small_net()
    with pytest.raises(error, match=rf"^epochs must be {message}"):
        train(
            net,
            SGD(net, lr=0.1, lr_scheduler=None),
            DataLoader((images, labels)),
            value,
            progress=False,
        )
    with pytest.raises(error, match=rf"^early_stopping must be {message}"):
        train(
            net,
            SGD(net, lr=0.1, lr_scheduler=None),
            DataLoader((images, labels)),
            2,
            val_data=(images, labels),
            early_stopping=value,
            progress=False,
        )


def test_labels_out_of_range_or_float_fail_before_any_work():
    images, labels = blobs()
    net = small_net()  # 3 classes
    optimizer = SGD(net, lr=0.1, lr_scheduler=None)
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(
        ValueError,
        match=r"loader.labels must be class indices in \[0, 3\) for "
        r"this net, got 3",
    ):
        train(
            net,
            optimizer,
            DataLoader((images, np.where(labels == 2, 3, labels))),
            1,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"^labels must be class indices >= 0, got -1"):
        DataLoader((images, labels - 1))
    huge = labels.astype(np.uint64)
    huge[0] = 2**64 - 1
    with pytest.raises(ValueError, match=r"got 18446744073709551615"):
        evaluate(net, images, huge)
    with pytest.raises(
        ValueError,
        match=r"^labels must be class indices >= 0, got "
        r"18446744073709551615",
    ):
        DataLoader((images, huge))
    with pytest.raises(ValueError, match=r"test_data\[1\] \(labels\) must be class indices"):
        train(
            net,
            optimizer,
            DataLoader((images, labels)),
            1,
            test_data=(images, labels + 1),
            progress=False,
        )
    assert optimizer.step_count == 0
    for old, new in zip(before, net.parameters(), strict=True):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(
        TypeError,
        match=r"labels must have an integer dtype \(class indices\), "
        r"got float64",
    ):
        evaluate(net, images, labels.astype(np.float64))
    with pytest.raises(TypeError, match=r"train labels must have an integer dtype"):
        fit(TrainConfig(hidden=(4,), epochs=1), (images, labels.astype(np.float32)), progress=False)


def test_an_epoch_completed_in_the_interrupted_last_batch_is_recorded():
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=0.1, lr_scheduler=None)
    loader = InterruptingLoader(
        (images, labels), batch_size=32, seed=0, at_epoch=2, at_batch=-(-600 // 32)
    )
    history = train(net, optimizer, loader, epochs=5, val_data=(images, labels), progress=False)
    assert history["interrupted"] is True and history["stop_reason"] == "interrupted"
    assert history["epoch"] == [1, 2] and len(history["val_accuracy"]) == 2
    assert optimizer.step_count == 2 * len(loader)


def test_an_epoch_completed_in_the_interrupted_last_fused_chunk_is_recorded(monkeypatch):
    import fcnn.training

    real = fcnn.training._core
    calls = []

    class InterruptingCore:
        def train_epoch(self, *args):
            calls.append(1)
            if len(calls) == 2:  # the second epoch's only chunk
                signal.raise_signal(signal.SIGINT)
            return real.train_epoch(*args)

    monkeypatch.setattr(fcnn.training, "_core", InterruptingCore())
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=0.1, lr_scheduler=None)
    loader = DataLoader((images, labels), batch_size=32, seed=0)
    history = train(net, optimizer, loader, epochs=5, progress=False, fused=True)
    assert history["interrupted"] is True and history["epoch"] == [1, 2]
    assert optimizer.step_count == 2 * len(loader)


# ----------------------------------------------------------------------------
# early stopping (issue 11 point 2)


def test_early_stopping_restores_the_best_epoch_and_says_why():
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=0.3, lr_scheduler=None, momentum=0.9)
    loader = DataLoader((images[:400], labels[:400]), batch_size=32, seed=0)
    # Validation labels the net cannot learn: its accuracy peaks early, then wanders.
    val_data = (images[400:], (labels[400:] + 1) % 3)
    snapshots = {}

    def snapshot(epoch, history):
        snapshots[epoch] = (
            net.state_dict(),
            {k: v.copy() for k, v in optimizer.velocities.items()},
            optimizer.step_count,
        )

    history = train(
        net,
        optimizer,
        loader,
        epochs=40,
        val_data=val_data,
        early_stopping=3,
        on_epoch_end=snapshot,
        progress=False,
    )
    best = history["best_epoch"]
    accuracies = history["val_accuracy"]
    assert history["stop_reason"] == "early_stopping"
    assert best == 1 + int(np.argmax(accuracies))  # the first of the best
    assert history["epoch"][-1] == best + 3 < 40  # 3 epochs without a better one
    weights, velocities, steps = snapshots[best]
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, weights[name])
    assert optimizer.velocities.keys() == velocities.keys()
    for name, value in optimizer.velocities.items():
        np.testing.assert_array_equal(value, velocities[name])
    assert optimizer.step_count == steps == best * len(loader)
    last_weights = snapshots[history["epoch"][-1]][0]
    assert any((last_weights[k] != weights[k]).any() for k in weights)


def test_early_stopping_that_never_triggers_still_returns_the_best():
    images, labels = blobs()
    net = small_net()
    history = train(
        net,
        SGD(net, lr=0.3, lr_scheduler=None),
        DataLoader((images[:400], labels[:400]), seed=0),
        epochs=3,
        val_data=(images[400:], labels[400:]),
        early_stopping=5,
        progress=False,
    )
    assert history["stop_reason"] == "completed" and len(history["epoch"]) == 3
    assert history["best_epoch"] == 1 + int(np.argmax(history["val_accuracy"]))
    assert evaluate(net, (images[400:], labels[400:]))["accuracy"] == max(history["val_accuracy"])


def test_early_stopping_needs_val_data_and_fit_passes_it_through():
    images, labels = blobs()
    net = small_net()
    with pytest.raises(ValueError, match=r"early_stopping needs val_data"):
        train(
            net,
            SGD(net, lr=0.1, lr_scheduler=None),
            DataLoader((images, labels)),
            3,
            early_stopping=2,
            progress=False,
        )
    history = train(
        net, SGD(net, lr=0.1, lr_scheduler=None), DataLoader((images, labels)), 1, progress=False
    )
    assert history["stop_reason"] == "completed" and "best_epoch" not in history
    config = TrainConfig(hidden=(8,), lr=0.2, epochs=4, early_stopping=1, seed=1)
    assert TrainConfig.from_dict(config.to_dict()) == config
    _, _, history = fit(
        config,
        (images[:400], labels[:400]),
        val_data=(images[400:], (labels[400:] + 1) % 3),
        progress=False,
    )
    assert "best_epoch" in history and history["stop_reason"] in ("early_stopping", "completed")
    with pytest.raises(ValueError, match=r"early_stopping needs val_data"):
        fit(config, (images, labels), progress=False)


# ----------------------------------------------------------------------------
# importing from a checkout whose C core is not built (issue 11 point 6)


def test_import_from_an_unbuilt_checkout_says_how_to_build(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import fcnn

    package = tmp_path / "fcnn"
    package.mkdir()
    for source in Path(fcnn.__file__).parent.glob("*.py"):
        shutil.copy(source, package)  # the Python files only: no compiled _core
    # An editable install maps fcnn._core to the built file whichever fcnn is imported:
    # drop its finder so that the copy is a checkout as a fresh clone has it.
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if '__editable__' not in getattr(f, '__module__', '')]\n"
        "import fcnn\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fcnn's C core (fcnn._core) is not built"), last
    assert "pip install ." in last and "python setup.py build_ext --inplace" in last
    assert "circular import" not in result.stderr
