"""The training loop, its history, divergence and Ctrl-C handling, and evaluation."""

import signal

import numpy as np
import pytest

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

from synthetic import blobs


def small_net(features=16, classes=3, seed=0):
    return Module(Linear(features, 8, rng=seed), ReLU(), Linear(8, classes, rng=seed + 1),
                  Softmax())


def test_train_records_history():
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=0.5, lr_scheduler=None)
    loader = DataLoader((images[:400], labels[:400]), batch_size=32, seed=0)
    history = train(net, optimizer, loader, epochs=3, val_data=(images[400:500], labels[400:500]),
                    test_data=(images[500:], labels[500:]), progress=False)
    assert history["epoch"] == [1, 2, 3]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
                "test_accuracy", "lr", "epoch_time"):
        assert len(history[key]) == 3, key
    assert history["train_loss"][2] < history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.95
    assert all(0 <= a <= 1 for a in history["train_accuracy"])
    assert "interrupted" not in history
    assert optimizer.step_count == 3 * len(loader)


def test_train_without_eval_data_has_no_eval_keys():
    images, labels = blobs()
    history = train(small_net(), SGD(small_net(), lr=0.1, lr_scheduler=None),
                    DataLoader((images, labels)), epochs=1, progress=False)
    assert "val_loss" not in history and "test_accuracy" not in history


def test_divergence_names_epoch_and_step_and_keeps_finite_weights():
    images, labels = blobs()
    net = small_net()
    optimizer = SGD(net, lr=1e30, lr_scheduler=None)
    with pytest.raises(DivergenceError, match=r"diverged at epoch 1, step \d+: the loss is"):
        train(net, optimizer, DataLoader((images, labels), batch_size=32, seed=0), epochs=2,
              progress=False)
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
    train(net, SGD(net, lr=0.5, lr_scheduler=None), DataLoader((images, labels), seed=0),
          epochs=3, progress=False)
    probs = predict_proba(net, images, batch_size=100)
    assert probs.shape == (600, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(probs, net(images.astype(np.float32) / 255), rtol=1e-6)
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
        (16, 12), (12, 6), (6, 3)]
    assert type(net.layers[-1]).__name__ == "Softmax"
    assert optimizer.step_count == 2 * 12 and len(history["epoch"]) == 2
    again, _, _ = fit(config, (images, labels), progress=False)
    for a, b in zip(net.parameters(), again.parameters()):
        np.testing.assert_array_equal(a, b)  # same seed, same run


def test_train_config_round_trip_and_unknown_keys():
    config = TrainConfig(hidden=(64,), lr=0.01)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown training settings \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    net = build_model(784, 10, TrainConfig(hidden=(5,), dtype="float64"))
    assert net.dtype == np.float64
