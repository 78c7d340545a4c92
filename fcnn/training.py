"""Training and evaluation: the epoch loop with its history, predictions, and the report.

``train`` runs epochs over a DataLoader and records per-epoch train/validation/
test loss and accuracy and the learning rate; ``predict``, ``predict_proba`` and
``evaluate`` run a trained net over a whole image set in batches.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from . import _core
from ._backend import get_backend, kernels
from .dataloader import DataLoader
from .functional import CrossEntropyLoss, Linear, ReLU, Softmax
from .metrics import classification_report, confusion_matrix
from .nn import Module
from .optim import SGD, ExponentialScheduler

__all__ = ["DivergenceError", "History", "TrainConfig", "build_model", "build_optimizer", "evaluate",
           "fit", "fused_eligible", "predict", "predict_proba", "train"]

#: Per-epoch records: "epoch", "train_loss", "train_accuracy", "val_loss",
#: "val_accuracy", "test_loss", "test_accuracy", "lr" (at the end of the epoch),
#: "epoch_time" (seconds of training, evaluation excluded). Accuracies are
#: fractions in [0, 1]. Validation/test keys appear only when that data was
#: given; "interrupted": True appears when Ctrl-C stopped training.
History = dict[str, Any]

EVAL_BATCH_SIZE = 1000


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and step."""


def _images_2d(images: np.ndarray, name: str = "images") -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(images).__name__}")
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {images.shape}")
    return images.reshape(images.shape[0], -1)


def _logits_and_probs(net: Module, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and class probabilities of one batch, writing nothing into the net.

    ``net.logits`` leaves the layers' caches alone, so any number of threads may
    predict with one net at once (a final Softmax's cache once served as the logits,
    and threads overwrote each other's).
    """
    if type(net).forward is not Module.forward:
        # A subclass with its own forward: net.logits would skip it. Its forward fills the
        # caches, so such a net predicts from one thread at a time.
        output = net(batch)
        last = net.layers[-1] if net.layers else None
        if isinstance(last, Softmax):
            return last.logits, output
        return output, kernels().softmax_forward(output)
    logits = net.logits(batch)
    return logits, kernels().softmax_forward(logits)


def _batches(net: Module, images: np.ndarray, batch_size: int):
    """(logits, probs) per batch of ``images``, checked whole (shape, range, NaN) first."""
    flat = _images_2d(images)
    num_inputs = next((layer.num_inputs for layer in net.layers if isinstance(layer, Linear)),
                      None)
    if num_inputs is not None and flat.shape[1] != num_inputs:
        raise ValueError(
            f"images must have {num_inputs} features per sample (the net's first layer "
            f"takes {num_inputs}), got shape {images.shape}"
        )
    loader = DataLoader((flat, np.zeros(flat.shape[0], np.int64)), batch_size=batch_size,
                        shuffle=False, dtype=net.dtype)
    for batch, _ in loader:
        yield _logits_and_probs(net, batch)


def predict_proba(net: Module, images: np.ndarray,
                  batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Class probabilities (N, classes) for images (N, ...), uint8 (rescaled) or float."""
    return np.concatenate([probs for _, probs in _batches(net, images, batch_size)])


def predict(net: Module, images: np.ndarray, batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Predicted class (N,) int64 for images (N, ...)."""
    return np.concatenate(
        [logits.argmax(axis=1) for logits, _ in _batches(net, images, batch_size)])


def _loss_and_accuracy(net: Module, images: np.ndarray, labels: np.ndarray,
                       batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, float, np.ndarray]:
    criterion = CrossEntropyLoss()
    total_loss = 0.0
    predictions = []
    start = 0
    for logits, _ in _batches(net, images, batch_size):
        batch_labels = labels[start:start + logits.shape[0]]
        total_loss += criterion(logits, batch_labels).item() * logits.shape[0]
        predictions.append(logits.argmax(axis=1))
        start += logits.shape[0]
    predicted = np.concatenate(predictions)
    return total_loss / labels.shape[0], float((predicted == labels).mean()), predicted


def evaluate(net: Module, images: np.ndarray, labels: np.ndarray,
             class_names: list[str] | None = None,
             batch_size: int = EVAL_BATCH_SIZE) -> dict[str, Any]:
    """Loss, accuracy, confusion matrix and classification report of ``net`` on a data set.

    Returns:
        ``{"loss", "accuracy", "confusion_matrix" (K, K) int64 array, "report"
        (dict, as :func:`fcnn.metrics.classification_report` with output_dict=True),
        "report_text" (the printed table), "predictions" (N,)}``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != _images_2d(images).shape[0]:
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
    loss, accuracy, predicted = _loss_and_accuracy(net, images, labels, batch_size)
    num_classes = net.linear_layers()[-1].num_outputs
    return {
        "loss": loss,
        "accuracy": accuracy,
        "confusion_matrix": confusion_matrix(labels, predicted, num_classes=num_classes),
        "report": classification_report(labels, predicted, target_names=class_names,
                                        output_dict=True, num_classes=num_classes, digits=4),
        "report_text": classification_report(labels, predicted, target_names=class_names,
                                             num_classes=num_classes, digits=4),
        "predictions": predicted,
    }


class _StopOnInterrupt:
    """Turns Ctrl-C into a request to stop after the current batch (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


#: The first layer works on the non-zeros only when fewer than this share of a batch's
#: pixels are non-zero. benchmarks/bench_sparse.py (784-1024-10, batch 64, 2 threads):
#: the sparse path is 2.9x faster at MNIST's 19%, 1.06x at 60%, and the dense one wins
#: from about 70%.
SPARSE_THRESHOLD = 0.65

#: Batches per call of the fused kernel: between calls the progress bar moves and
#: Ctrl-C is honoured.
FUSED_CHUNK = 64


def fused_eligible(net: Module, optimizer: SGD, loader: DataLoader) -> str | None:
    """Why the fused C epoch cannot train this setup, or None when it can.

    It takes a plain MLP (Linear, then any number of ReLU + Linear pairs, then an
    optional Softmax) trained by :class:`~fcnn.optim.SGD` on a :class:`DataLoader`
    of uint8 images (or float images of the net's dtype), on the C backend.
    """
    layers = net.layers
    if get_backend() != "c":
        return "the NumPy backend is selected"
    if type(optimizer) is not SGD:
        return f"the optimizer is {type(optimizer).__name__}, not fcnn.optim.SGD"
    if type(loader).__iter__ is not DataLoader.__iter__ or not isinstance(loader, DataLoader):
        return "the loader is not a plain fcnn DataLoader"
    body = layers[:-1] if layers and type(layers[-1]) is Softmax else layers
    if not body or len(body) % 2 == 0:
        return "the net is not Linear, (ReLU, Linear)*, [Softmax]"
    for index, layer in enumerate(body):
        expected = Linear if index % 2 == 0 else ReLU
        if type(layer) is not expected:
            return "the net is not Linear, (ReLU, Linear)*, [Softmax]"
    dtype = net.dtype
    if loader.images.dtype != np.uint8 and loader.images.dtype != dtype:
        return f"the images are {loader.images.dtype}, not uint8 or {dtype}"
    if loader.dtype != dtype:
        return f"the loader makes {loader.dtype} batches for a {dtype} net"
    if loader.images.shape[1] != body[0].num_inputs:
        return "the images do not match the first layer"
    return None


def _module_epoch(net: Module, optimizer: SGD, loader: DataLoader, epoch: int, bar: Any,
                  interrupt: _StopOnInterrupt) -> tuple[float, int, int]:
    """One epoch through the Module API, batch by batch; returns (loss sum, correct, seen)."""
    criterion = CrossEntropyLoss(net)
    total_loss, correct, seen = 0.0, 0, 0
    for step, (images, labels) in enumerate(loader, start=1):
        output = net(images)
        loss = criterion(output, labels)
        value = loss.item()
        if not math.isfinite(value):
            raise DivergenceError(
                f"training diverged at epoch {epoch}, step {step}: the loss is {value} "
                f"(learning rate {optimizer.lr:g}); try a smaller learning rate"
            )
        loss.backward()
        optimizer.step()
        total_loss += value * labels.shape[0]
        correct += int((output.argmax(axis=1) == labels).sum())
        seen += labels.shape[0]
        bar.update(1)
        if interrupt.requested:
            break
    return total_loss, correct, seen


def _fused_epoch(net: Module, optimizer: SGD, loader: DataLoader, epoch: int, bar: Any,
                 interrupt: _StopOnInterrupt) -> tuple[float, int, int]:
    """One epoch through fcnn._core.train_epoch, FUSED_CHUNK batches per call."""
    linears = net.linear_layers()
    weights = [layer.weight for layer in linears]
    biases = [layer.bias for layer in linears]
    weight_velocities = bias_velocities = None
    if optimizer.momentum > 0:
        index_of = {id(layer): index for index, layer in enumerate(net.layers)}
        velocity = optimizer.velocities
        for layer in linears:
            for name, param in layer.parameters().items():
                key = f"layers.{index_of[id(layer)]}.{name}"
                if key not in velocity:
                    velocity[key] = np.zeros_like(param)
        weight_velocities = [velocity[f"layers.{index_of[id(layer)]}.weight"] for layer in linears]
        bias_velocities = [velocity[f"layers.{index_of[id(layer)]}.bias"] for layer in linears]
    batch_size = loader.batch_size
    order = loader.epoch_order()[:len(loader) * batch_size]
    images = np.ascontiguousarray(loader.images)
    total_loss, correct, seen = 0.0, 0, 0
    for first in range(0, len(loader), FUSED_CHUNK):
        chunk = order[first * batch_size:(first + FUSED_CHUNK) * batch_size]
        batches = -(-chunk.shape[0] // batch_size)
        lrs = np.array([optimizer.scheduler(optimizer.step_count + i) for i in range(batches)],
                       np.float64)
        steps, loss_sum, chunk_correct = _core.train_epoch(
            images, loader.labels, chunk, weights, biases, lrs, batch_size,
            optimizer.weight_decay, optimizer.momentum, weight_velocities, bias_velocities,
            optimizer.nesterov, SPARSE_THRESHOLD)
        optimizer.step_count += steps
        total_loss += loss_sum
        correct += chunk_correct
        seen += min(steps * batch_size, chunk.shape[0])
        bar.update(steps)
        if steps < batches:
            raise DivergenceError(
                f"training diverged at epoch {epoch}, step {first + steps + 1}: the loss is not "
                f"finite (learning rate {lrs[steps]:g}); try a smaller learning rate"
            )
        if interrupt.requested:
            break
    return total_loss, correct, seen


def train(net: Module, optimizer: SGD, loader: DataLoader, epochs: int,
          val_data: tuple[np.ndarray, np.ndarray] | None = None,
          test_data: tuple[np.ndarray, np.ndarray] | None = None,
          progress: bool = True,
          on_epoch_end: Callable[[int, History], None] | None = None,
          fused: bool | None = None) -> History:
    """Trains ``net`` for ``epochs`` epochs and returns the per-epoch history.

    Args:
        net: the Module to train, in place.
        optimizer: the SGD over ``net``.
        loader: the training batches.
        epochs: number of passes over ``loader`` (>= 1).
        val_data: ``(images, labels)`` for model selection, evaluated each epoch.
        test_data: ``(images, labels)`` for reporting, evaluated each epoch.
        progress: show a tqdm progress bar (terminal or Jupyter).
        on_epoch_end: called as ``on_epoch_end(epoch, history)`` after each epoch.
        fused: ``None`` (default) trains with the fused C epoch whenever
            :func:`fused_eligible` allows and batch by batch through the Module API
            otherwise; ``False`` always goes batch by batch; ``True`` requires the
            fused epoch (ValueError saying why not).

    Returns:
        The :data:`History`. If Ctrl-C was pressed, training stops between batches
        (within FUSED_CHUNK batches on the fused path), the net holds the weights
        of the last completed step and the history has ``"interrupted": True`` and
        the completed epochs only.

    Raises:
        DivergenceError: the training loss became NaN or infinite; the net keeps
            the weights from before the failing step.
    """
    from tqdm.auto import tqdm

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    reason = fused_eligible(net, optimizer, loader)
    if fused and reason is not None:
        raise ValueError(f"fused=True, but the fused epoch cannot train this: {reason}")
    run_epoch = _fused_epoch if fused is not False and reason is None else _module_epoch
    history: History = {"epoch": [], "train_loss": [], "train_accuracy": [], "lr": [],
                        "epoch_time": []}
    for name, data in (("val", val_data), ("test", test_data)):
        if data is not None:
            history[f"{name}_loss"], history[f"{name}_accuracy"] = [], []
    with _StopOnInterrupt() as interrupt:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            with tqdm(total=len(loader), desc=f"epoch {epoch}/{epochs}", disable=not progress,
                      leave=False, unit="batch") as bar:
                total_loss, correct, seen = run_epoch(net, optimizer, loader, epoch, bar,
                                                      interrupt)
            train_seconds = time.perf_counter() - started
            if interrupt.requested:
                history["interrupted"] = True
                break
            history["epoch"].append(epoch)
            history["train_loss"].append(total_loss / seen)
            history["train_accuracy"].append(correct / seen)
            history["lr"].append(optimizer.lr)
            for name, data in (("val", val_data), ("test", test_data)):
                if data is not None:
                    loss_value, accuracy, _ = _loss_and_accuracy(net, data[0], data[1])
                    history[f"{name}_loss"].append(loss_value)
                    history[f"{name}_accuracy"].append(accuracy)
            history["epoch_time"].append(train_seconds)
            if progress:
                tqdm.write(_epoch_line(history))
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
    return history


def _epoch_line(history: History) -> str:
    parts = [f"epoch {history['epoch'][-1]}"]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
                "test_accuracy"):
        if key in history:
            value = history[key][-1]
            parts.append(f"{key} {value:.2%}" if key.endswith("accuracy") else f"{key} {value:.4f}")
    parts.append(f"lr {history['lr'][-1]:.3g}")
    parts.append(f"{history['epoch_time'][-1]:.1f}s")
    return "  ".join(parts)


# ----------------------------------------------------------------------------
# training from settings, as the command line and the search do it


@dataclass
class TrainConfig:
    """Every setting of one training run, with the defaults of ``fcnn train``.

    ``lr_decay`` and ``lr_step`` are the exponential schedule's alpha and T
    (in steps); ``weight_decay`` is the SGD decay lambda. The defaults are what
    fcnn's search selects on MNIST's validation split (ORIGINAL_STAGES, then
    FURTHER_STAGES at 10 epochs, then FINAL_STAGES at 30, see fcnn.search).
    """

    hidden: tuple[int, ...] = (1024,)
    lr: float = 0.1
    lr_decay: float = 0.8
    lr_step: int = 5000
    staircase: bool = True
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    epochs: int = 30
    batch_size: int = 64
    seed: int = 0
    dtype: str = "float32"
    init: str = "kaiming"

    def to_dict(self) -> dict[str, Any]:
        settings = asdict(self)
        settings["hidden"] = list(self.hidden)
        return settings

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(settings.keys() - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        values = dict(settings)
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)


def build_model(num_inputs: int, num_classes: int, config: TrainConfig) -> Module:
    """``Linear, ReLU`` per hidden size, then ``Linear, Softmax``, seeded by ``config.seed``."""
    rng = np.random.default_rng(config.seed)
    sizes = [num_inputs, *config.hidden, num_classes]
    layers: list = []
    for index, (inputs, outputs) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(inputs, outputs, dtype=config.dtype, init=config.init, rng=rng))
        layers.append(ReLU() if index < len(sizes) - 2 else Softmax())
    return Module(layers)


def build_optimizer(net: Module, config: TrainConfig) -> SGD:
    """SGD with the exponential schedule, weight decay and momentum of ``config``."""
    scheduler = ExponentialScheduler(config.lr, stage_length=config.lr_step,
                                     decay=config.lr_decay, staircase=config.staircase)
    return SGD(net, lr_scheduler=scheduler, decay=config.weight_decay,
               momentum=config.momentum, nesterov=config.nesterov)


def fit(config: TrainConfig, train_data: tuple[np.ndarray, np.ndarray],
        val_data: tuple[np.ndarray, np.ndarray] | None = None,
        test_data: tuple[np.ndarray, np.ndarray] | None = None,
        num_classes: int | None = None, progress: bool = True,
        ) -> tuple[Module, SGD, History]:
    """Builds a net and its optimiser from ``config`` and trains it on ``train_data``.

    Returns:
        ``(net, optimizer, history)``.
    """
    images, labels = train_data
    flat = _images_2d(images, "train images")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    net = build_model(flat.shape[1], num_classes, config)
    optimizer = build_optimizer(net, config)
    loader = DataLoader((flat, labels), batch_size=config.batch_size, seed=config.seed,
                        dtype=config.dtype)
    history = train(net, optimizer, loader, config.epochs, val_data=val_data,
                    test_data=test_data, progress=progress)
    return net, optimizer, history
