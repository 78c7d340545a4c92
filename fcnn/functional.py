"""The layers and the loss of the original project: Linear, ReLU, Softmax, CrossEntropyLoss.

Each layer keeps what its backward pass needs from the last forward pass and
calls the kernels of the active backend (``fcnn._core`` by default, see
:func:`fcnn.set_backend`); ``inference`` runs a layer without keeping anything,
for prediction from many threads. Parameters and their gradients are plain NumPy
arrays under the original attribute names ``weight``, ``bias``, ``weight_grad``
and ``bias_grad``; backward passes overwrite the gradients in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._backend import kernels
from ._checks import INT32_MAX, acquire_training_lock, check_int

if TYPE_CHECKING:
    from .nn import Module

__all__ = ["Layer", "Linear", "ReLU", "Softmax", "CrossEntropyLoss", "Loss", "DEFAULT_DTYPE"]

#: float32 is the fast default; float64 is there for checking and for reproducing
#: the original project, which computed in float64.
DEFAULT_DTYPE = np.float32


def _float_dtype(dtype: npt.DTypeLike) -> np.dtype:
    resolved = np.dtype(dtype)
    if resolved not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def _batch(x: object, name: str = "x") -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {x.shape}")
    return x


def _can_hold(gradient: object, parameter: np.ndarray) -> bool:
    """Whether ``gradient`` can be written in place as the gradient of ``parameter``."""
    if not isinstance(gradient, np.ndarray):
        return False
    flags = gradient.flags
    return (
        gradient.shape == parameter.shape
        and gradient.dtype == parameter.dtype
        and flags.c_contiguous
        and flags.writeable
        and flags.aligned
    )


class Layer:
    """Base of every layer: ``forward`` caches what ``backward`` needs; ``inference`` does not.

    ``forward`` writes the layer's cache, so one layer must not run ``forward`` or
    ``backward`` from two threads at once; ``inference`` only reads the parameters
    and may run from any number of threads. A layer that defines only ``forward``
    inherits an ``inference`` that calls it (and so is not thread-safe).
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inference(self, x: np.ndarray) -> np.ndarray:
        """The output of ``forward`` for ``x``, caching nothing (no backward can follow)."""
        return self.forward(x)

    def backward(self, dout: np.ndarray, compute_dx: bool = True) -> np.ndarray | None:
        """Gradient w.r.t. the last forward input; ``compute_dx=False`` may skip it."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def parameters(self) -> dict[str, np.ndarray]:
        """The layer's trainable arrays by name (empty for layers without any)."""
        return {}

    def _cached(self, value: np.ndarray | None) -> np.ndarray:
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return value


class Linear(Layer):
    """Fully-connected layer ``y = x @ weight + bias``.

    Args:
        num_inputs: input features (``in_features`` in PyTorch's terms).
        num_outputs: output features.
        dtype: float32 (default, fast) or float64.
        init: ``"kaiming"`` (default): weights ~ N(0, 2 / num_inputs), right for
            ReLU nets; ``"normal"``: standard normal, the original project's
            choice. Biases start at zero.
        rng: a seed or ``numpy.random.Generator`` for the initial weights.

    Shape:
        x (B, num_inputs) -> (B, num_outputs); ``weight`` is (num_inputs,
        num_outputs), as in the original project (PyTorch stores the transpose).

    Example:
        >>> layer = Linear(784, 10, rng=0)
        >>> layer(np.zeros((2, 784), np.float32)).shape
        (2, 10)
    """

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        dtype: npt.DTypeLike = DEFAULT_DTYPE,
        init: str = "kaiming",
        rng: int | np.random.Generator | None = None,
    ) -> None:
        self.num_inputs = check_int(num_inputs, "num_inputs", 1, INT32_MAX)
        self.num_outputs = check_int(num_outputs, "num_outputs", 1, INT32_MAX)
        dtype = _float_dtype(dtype)
        if init not in ("kaiming", "normal"):
            raise ValueError(f"init must be 'kaiming' or 'normal', got {init!r}")
        self.init = init
        generator = np.random.default_rng(rng)
        shape = (self.num_inputs, self.num_outputs)
        try:
            weight = generator.standard_normal(shape, dtype=dtype)
        except (MemoryError, ValueError):  # ValueError: beyond NumPy's own size limit
            gib = self.num_inputs * self.num_outputs * dtype.itemsize / 2**30
            raise MemoryError(
                f"Linear({self.num_inputs}, {self.num_outputs}) needs {gib:.3g} GiB for its "
                f"{dtype} weight, more than this machine can allocate"
            ) from None
        if init == "kaiming":
            weight *= dtype.type(np.sqrt(2.0 / self.num_inputs))
        self.weight = weight
        self.bias = np.zeros(self.num_outputs, dtype)
        self.weight_grad = np.zeros_like(self.weight)
        self.bias_grad = np.zeros_like(self.bias)
        self._input: np.ndarray | None = None
        self._dx_buffer: np.ndarray | None = None

    in_features = property(lambda self: self.num_inputs)
    out_features = property(lambda self: self.num_outputs)

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    def _checked(self, x: object) -> np.ndarray:
        """``x`` as a (B, num_inputs) batch of the weights' dtype, or an error saying why not."""
        x = _batch(x)
        if x.shape[1] != self.num_inputs:
            raise ValueError(
                f"x must have {self.num_inputs} features for {self!r}, got shape {x.shape}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"x must hold at least one sample, got shape {x.shape}")
        if x.dtype != self.weight.dtype:
            x = x.astype(self.weight.dtype)
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._checked(x)
        self._input = x
        return kernels().linear_forward(x, self.weight, self.bias)

    def inference(self, x: np.ndarray) -> np.ndarray:
        return kernels().linear_forward(self._checked(x), self.weight, self.bias)

    def backward(self, dout: np.ndarray, compute_dx: bool = True) -> np.ndarray | None:
        """Writes ``weight_grad`` and ``bias_grad`` in place (the same arrays every step,
        as PyTorch's ``.grad``) and returns the gradient w.r.t. the input, or None.

        The returned array is the layer's own, overwritten by its next backward pass of
        the same batch size: copy it to keep it. Fresh (B, C) arrays every step made
        the allocator give memory back and fault it in again, step after step.
        """
        x = self._cached(self._input)
        weight = self.weight
        expected = (x.shape[0], weight.shape[1])
        if not isinstance(dout, np.ndarray):
            raise TypeError(f"dout must be a numpy.ndarray, got {type(dout).__name__}")
        if dout.shape != expected or dout.dtype != weight.dtype:
            raise (TypeError if dout.shape == expected else ValueError)(
                f"dout must be a {weight.dtype} array of shape {expected} (the batch of the "
                f"last forward pass by the outputs of {self!r}), got {dout.dtype} {dout.shape}"
            )
        dx = None
        if compute_dx:
            dx = self._dx_buffer
            if dx is None or dx.shape != (x.shape[0], weight.shape[0]) or dx.dtype != weight.dtype:
                dx = self._dx_buffer = np.empty((x.shape[0], weight.shape[0]), weight.dtype)
        backward_out = kernels()._linear_backward_out
        try:
            backward_out(dx, self.weight_grad, self.bias_grad, dout, x, weight)
        except (TypeError, ValueError):
            # Gradient arrays someone replaced by ones that cannot take the result (another
            # shape or dtype, read-only, ...) are replaced by fresh ones; a bad dout raises
            # and leaves the gradients as they were.
            if _can_hold(self.weight_grad, weight) and _can_hold(self.bias_grad, self.bias):
                raise
            self.weight_grad, self.bias_grad = np.zeros_like(weight), np.zeros_like(self.bias)
            backward_out(dx, self.weight_grad, self.bias_grad, dout, x, weight)
        return dx

    def parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of :meth:`parameters`, by the same names."""
        return {"weight": self.weight_grad, "bias": self.bias_grad}

    def __repr__(self) -> str:
        return f"Linear({self.num_inputs}, {self.num_outputs}, dtype={self.dtype})"


class ReLU(Layer):
    """``max(x, 0)`` elementwise. Shape: (B, C) -> (B, C)."""

    def __init__(self) -> None:
        self._input: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._input = _batch(x)
        return kernels().relu_forward(x)

    def inference(self, x: np.ndarray) -> np.ndarray:
        return kernels().relu_forward(_batch(x))

    def backward(self, dout: np.ndarray, compute_dx: bool = True) -> np.ndarray:
        return kernels().relu_backward(dout, self._cached(self._input))

    def __repr__(self) -> str:
        return "ReLU()"


class Softmax(Layer):
    """Row-wise softmax, turning logits into class probabilities. Shape: (B, C) -> (B, C).

    As the last layer of a net trained with :class:`CrossEntropyLoss`, its
    backward is fused into the loss: the loss reads the logits this layer
    received and starts the backward pass below it.
    """

    def __init__(self) -> None:
        self.logits: np.ndarray | None = None
        self._probs: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.logits = _batch(x)
        self._probs = kernels().softmax_forward(x)
        return self._probs

    def inference(self, x: np.ndarray) -> np.ndarray:
        return kernels().softmax_forward(_batch(x))

    def backward(self, dout: np.ndarray, compute_dx: bool = True) -> np.ndarray:
        return kernels().softmax_backward(dout, self._cached(self._probs))

    def __repr__(self) -> str:
        return "Softmax()"


class Loss:
    """The value of a loss on one batch: ``.item()`` and ``.backward()``."""

    def __init__(
        self,
        value: float,
        logits: np.ndarray,
        labels: np.ndarray,
        net: Module | None,
        start: int | None,
    ) -> None:
        self._value = value
        self._logits = logits
        self._labels = labels
        self._net = net
        self._start = start
        # Which forward pass of the net this loss belongs to: backward refuses to run on
        # the caches of a later one (another batch, maybe from another thread).
        self._forward_count = getattr(net, "_forward_count", 0)

    def item(self) -> float:
        """The mean loss over the batch as a Python float."""
        return self._value

    def backward(self) -> np.ndarray:
        """Backpropagates through the whole net; returns the gradient w.r.t. the logits.

        Raises:
            RuntimeError: the net ran forward again since this loss was computed, so its
                layers hold another batch (call ``backward`` before the next ``net(x)``).
        """
        net = self._net
        if net is None:
            return kernels().softmax_cross_entropy_backward(self._logits, self._labels)
        lock = acquire_training_lock(net, "loss.backward()")
        try:
            if getattr(net, "_forward_count", 0) != self._forward_count:
                raise RuntimeError(
                    "loss.backward() after another forward pass of the net: its layers now "
                    "hold that batch; call backward before the next net(x)"
                )
            dlogits = kernels().softmax_cross_entropy_backward(self._logits, self._labels)
            net.backward(dlogits, start=self._start)
        finally:
            lock.release()
        return dlogits

    def __float__(self) -> float:
        return self._value

    def __repr__(self) -> str:
        return f"Loss({self._value:.6g})"


class CrossEntropyLoss:
    """Mean cross-entropy of a net's output against integer class labels.

    Computed from the logits with log-sum-exp, never from ``log(probs)``: when the
    net ends with :class:`Softmax`, the loss reads the logits that layer received,
    so ``criterion(net(x), labels)`` works exactly as in the original project.
    Without a final Softmax, ``output`` is taken to be the logits. The gradient
    w.r.t. the logits is ``(softmax - onehot) / B`` (the original divided by the
    number of classes instead of the batch size).

    Args:
        net: the Module whose backward ``loss.backward()`` runs; ``None`` to only
            compute values and the gradient w.r.t. the logits.

    Shape:
        output (B, C), labels (B,) of an integer dtype with values in [0, C).

    Example:
        >>> criterion = CrossEntropyLoss(net)
        >>> loss = criterion(net(images), labels)
        >>> loss.backward(); optimizer.step(); loss.item()
    """

    def __init__(self, net: Module | None = None) -> None:
        self.net = net

    def __call__(self, output: np.ndarray, labels: np.ndarray) -> Loss:
        output = _batch(output, "output")
        start = None
        logits = output
        last = self.net.layers[-1] if self.net is not None and self.net.layers else None
        if isinstance(last, Softmax):
            if last.logits is None or last._probs is not output:
                raise ValueError(
                    "output must be what the net's forward just returned: the loss reads the "
                    "logits its final Softmax received"
                )
            logits = last.logits
            start = len(self.net.layers) - 1
        elif self.net is not None and getattr(self.net, "_last_output", output) is not output:
            # Without a final Softmax, nothing else ties output to the caches that
            # loss.backward() will use (net.inference's output, say, or an older batch's).
            raise ValueError(
                "output must be what the net's forward just returned: loss.backward() runs "
                "the net's backward on the caches of that pass"
            )
        value = kernels().softmax_cross_entropy_forward(logits, labels)
        return Loss(value, logits, labels, self.net, start)
