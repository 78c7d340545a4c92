"""The layers and the loss: Linear, ReLU, Sigmoid, Tanh, Softmax, Dropout, CrossEntropyLoss.

Each layer keeps what its backward pass needs from the last forward pass and
calls the kernels of the active backend (``fcnn._core`` by default, see
:func:`fcnn.set_backend`); ``inference`` runs a layer without keeping anything,
for prediction from many threads. Parameters and their gradients are plain NumPy
arrays under the original attribute names ``weight``, ``bias``, ``weight_grad``
and ``bias_grad``; backward passes overwrite the gradients in place.

Each layer class describes itself once (:class:`Layer`: ``params``,
``hyperparams``, ``kernel_names``) and is listed in :data:`LAYERS` by
:func:`register_layer`; ``Module.parameters``, :class:`fcnn.optim.SGD` and
:mod:`fcnn.serialization` read that description and never name a layer type. A
new activation is its two kernels, their twins, one row of ``csrc/module.c``
and a subclass of :class:`Activation` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._backend import kernels
from ._checks import INT32_MAX, INT64_MAX, acquire_training_lock, check_dropout_rate, check_int

if TYPE_CHECKING:
    from .nn import Module

__all__ = [
    "DEFAULT_DTYPE",
    "LAYERS",
    "Activation",
    "CrossEntropyLoss",
    "Dropout",
    "Layer",
    "Linear",
    "Loss",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "register_layer",
]

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

    A layer class declares what it is made of, in three class attributes that the rest
    of fcnn reads instead of testing for layer types:

    ``params``
        ``(parameter, gradient)`` attribute name pairs, in ``state_dict`` order:
        :meth:`parameters` and :meth:`gradients` list them, :class:`fcnn.optim.SGD`
        steps each parameter along its gradient, :func:`fcnn.save` stores them under
        ``layers.<i>.<parameter>``. Their shapes come from :meth:`param_shapes`.
    ``hyperparams``
        names of the constructor arguments that rebuild the layer, each kept in an
        attribute of the same name holding a JSON value (number, string, bool, None,
        list or dict): :func:`fcnn.save` stores them and :func:`fcnn.load` passes them
        back through :meth:`from_config`.
    ``kernel_names``
        the backend kernels (``fcnn._core`` / ``fcnn.reference`` names) it calls.
    """

    params: tuple[tuple[str, str], ...] = ()
    hyperparams: tuple[str, ...] = ()
    kernel_names: tuple[str, ...] = ()
    #: Whether the layer is the identity outside training (Dropout): ``inference`` passes
    #: its input through and :func:`fcnn.export_onnx` leaves it out.
    identity_at_inference = False
    #: Training mode (True) or evaluation mode, set by :meth:`fcnn.nn.Module.train` and
    #: :meth:`~fcnn.nn.Module.eval`; only layers that train differently (Dropout) read it.
    training = True

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
        return {name: getattr(self, name) for name, _ in self.params}

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of :meth:`parameters`, by the same names."""
        return {name: getattr(self, gradient) for name, gradient in self.params}

    def config(self) -> dict[str, Any]:
        """The hyper-parameters by name: ``type(self).from_config(self.config(), dtype)``
        builds a layer like this one (with fresh parameters)."""
        return {name: getattr(self, name) for name in self.hyperparams}

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """The shape of each parameter of a layer built from ``config``, computed without
        building it (so that a model file's claims are checked before any allocation).

        Raises
        ------
        TypeError, ValueError
            A hyper-parameter has the wrong type or value; the message names it.
        """
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], dtype: npt.DTypeLike) -> Layer:
        """A new layer from :meth:`config`'s dict, its parameters (if any) of ``dtype``."""
        return cls(**config)

    def _cached(self, value: np.ndarray | None) -> np.ndarray:
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return value


#: Every layer type fcnn can save and load, by class name (see :func:`register_layer`).
LAYERS: dict[str, type[Layer]] = {}


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Lists the layer class ``cls`` in :data:`LAYERS` under its name, so that nets holding
    it can be saved and loaded; returns ``cls`` (use it as a class decorator).

    ``cls`` must describe itself fully (see :class:`Layer`): every array it trains in
    ``params`` with its shapes in ``param_shapes``, and every constructor argument that
    matters in ``hyperparams``.

    Raises
    ------
    TypeError
        ``cls`` is not a subclass of :class:`Layer`.
    ValueError
        Another class is registered under the same name, or a hyper-parameter is
        named ``type``.

    Examples
    --------
    >>> @register_layer
    ... class Swish(Activation): ...
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"cls must be a subclass of fcnn.functional.Layer, got {cls!r}")
    if "type" in cls.hyperparams:  # the key of the class name in a saved layer record
        raise ValueError(f"{cls.__name__}.hyperparams must not hold 'type'")
    known = LAYERS.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"a layer named {cls.__name__!r} is registered already: {known!r}")
    LAYERS[cls.__name__] = cls
    return cls


@register_layer
class Linear(Layer):
    """Fully-connected layer ``y = x @ weight + bias``.

    Parameters
    ----------
    num_inputs
        input features (``in_features`` in PyTorch's terms).
    num_outputs
        output features.
    dtype
        float32 (default, fast) or float64.
    init
        ``"kaiming"`` (default): weights ~ N(0, 2 / num_inputs), right for
        ReLU nets; ``"normal"``: standard normal, the original project's
        choice. Biases start at zero.
    rng
        a seed or ``numpy.random.Generator`` for the initial weights.

    Notes
    -----
    Shape: x (B, num_inputs) -> (B, num_outputs); ``weight`` is (num_inputs,
    num_outputs), as in the original project (PyTorch stores the transpose).

    Examples
    --------
    >>> layer = Linear(784, 10, rng=0)
    >>> layer(np.zeros((2, 784), np.float32)).shape
    (2, 10)
    """

    params = (("weight", "weight_grad"), ("bias", "bias_grad"))
    hyperparams = ("num_inputs", "num_outputs")
    kernel_names = ("linear_forward", "_linear_backward_out")

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

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        num_inputs, num_outputs = (
            check_int(config[name], name, 1, INT32_MAX) for name in cls.hyperparams
        )
        return {"weight": (num_inputs, num_outputs), "bias": (num_outputs,)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], dtype: npt.DTypeLike) -> Linear:
        # rng=0: whoever rebuilds a layer from its config loads its weights next.
        return cls(**config, dtype=dtype, rng=0)

    def __repr__(self) -> str:
        return f"Linear({self.num_inputs}, {self.num_outputs}, dtype={self.dtype})"


class Activation(Layer):
    """A layer without parameters run by two kernels named in ``kernel_names``:
    ``forward(x)`` and ``backward(dout, saved)``, where ``saved`` is the forward's input
    (``saves = "input"``) or its output (``saves = "output"``). Shape: (B, C) -> (B, C).

    A subclass only names its kernels, for instance ``kernel_names =
    ("sigmoid_forward", "sigmoid_backward")`` and ``saves = "output"``, and the ONNX
    operator that computes it elementwise in ``onnx_op`` (None: not exportable).
    """

    saves = "input"
    onnx_op: str | None = None

    def __init__(self) -> None:
        self._saved: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _batch(x)
        out = getattr(kernels(), self.kernel_names[0])(x)
        self._saved = x if self.saves == "input" else out
        return out

    def inference(self, x: np.ndarray) -> np.ndarray:
        return getattr(kernels(), self.kernel_names[0])(_batch(x))

    def backward(self, dout: np.ndarray, compute_dx: bool = True) -> np.ndarray:
        saved = self._cached(getattr(self, "_saved", None))
        return getattr(kernels(), self.kernel_names[1])(dout, saved)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_layer
class ReLU(Activation):
    """``max(x, 0)`` elementwise. Shape: (B, C) -> (B, C)."""

    kernel_names = ("relu_forward", "relu_backward")
    saves = "input"
    onnx_op = "Relu"


@register_layer
class Sigmoid(Activation):
    """The logistic function ``1 / (1 + exp(-x))`` elementwise, computed so that it never
    overflows (0 and 1 at the extremes). Shape: (B, C) -> (B, C).

    Examples
    --------
    >>> Sigmoid()(np.array([[-100.0, 0.0, 100.0]]))
    array([[3.72007598e-44, 5.00000000e-01, 1.00000000e+00]])
    """

    kernel_names = ("sigmoid_forward", "sigmoid_backward")
    saves = "output"
    onnx_op = "Sigmoid"


@register_layer
class Tanh(Activation):
    """The hyperbolic tangent elementwise. Shape: (B, C) -> (B, C).

    Examples
    --------
    >>> Tanh()(np.array([[-100.0, 0.0, 100.0]]))
    array([[-1.,  0.,  1.]])
    """

    kernel_names = ("tanh_forward", "tanh_backward")
    saves = "output"
    onnx_op = "Tanh"


@register_layer
class Softmax(Activation):
    """Row-wise softmax, turning logits into class probabilities. Shape: (B, C) -> (B, C).

    As the last layer of a net trained with :class:`CrossEntropyLoss`, its
    backward is fused into the loss: the loss reads :attr:`logits` (what the last
    forward pass received) and :attr:`probs` (what it returned) and starts the
    backward pass below this layer.
    """

    kernel_names = ("softmax_forward", "softmax_backward")
    saves = "output"

    def __init__(self) -> None:
        super().__init__()
        #: The input of the last forward pass (None before the first).
        self.logits: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.logits = _batch(x)
        return super().forward(x)

    @property
    def probs(self) -> np.ndarray | None:
        """The output of the last forward pass (None before the first)."""
        return getattr(self, "_saved", None)

    # The name of fcnn 0.1, read by code written against it.
    _probs = probs


#: Seeds of Dropout layers are in [0, 2**64), the range of csrc/random.h's keys.
_SEED_MAX = 2**64 - 1


@register_layer
class Dropout(Layer):
    """Inverted dropout: in training mode each unit is zeroed with probability ``p`` and
    the kept ones are scaled by ``1 / (1 - p)``; in evaluation mode (:meth:`Module.eval
    <fcnn.nn.Module.eval>`), in :meth:`inference` and so in ``fcnn.predict``, it is the
    identity. Shape: (B, H) -> (B, H).

    The mask is a function of ``(seed, step, unit)`` only: unit ``j`` of row ``b`` is
    kept in training step ``step`` iff ``random_uniform(random_key(seed, step), b * H +
    j) >= p`` (``fcnn.reference``; csrc/random.h in C). Every training forward pass
    draws the mask of :attr:`step` and then counts it, so each step gets a new mask, the
    backward pass draws the same one again, and the fused C epoch of ``fcnn.train``
    draws the same masks as this layer: a run is reproducible for a fixed seed.

    Parameters
    ----------
    p
        probability of dropping a unit, in [0, 1) (default 0.5; 0 turns dropout off).
    seed
        an integer in [0, 2**64); None (default) draws one at random. Saved with the
        model by :func:`fcnn.save`, as are ``p`` and ``step``.
    step
        the number of the next training step, an integer >= 0 (default 0): a loaded
        model carries on with new masks; set it to replay a mask.

    Examples
    --------
    >>> net = Module(Linear(784, 256), ReLU(), Dropout(0.2, seed=0), Linear(256, 10))
    >>> probs = net.eval().inference(images)   # no dropout
    """

    hyperparams = ("p", "seed", "step")
    kernel_names = ("dropout_forward", "dropout_backward")
    identity_at_inference = True

    def __init__(self, p: float = 0.5, seed: int | None = None, step: int = 0) -> None:
        self.p = check_dropout_rate(p, "p")
        if seed is None:
            seed = int(np.random.default_rng().integers(2**63))
        self.seed = check_int(seed, "seed", 0, _SEED_MAX)
        self.step = check_int(step, "step", 0, INT64_MAX)
        # The step whose mask the last forward pass drew; None: it passed its input through.
        self._mask_step: int | None = None
        self._forwarded = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _batch(x)
        self._forwarded = True
        if not self.training:
            self._mask_step = None
            return x
        step = self._mask_step = self.step
        self.step = step + 1
        return getattr(kernels(), self.kernel_names[0])(x, self.p, self.seed, step)

    def inference(self, x: np.ndarray) -> np.ndarray:
        return _batch(x)

    def backward(self, dout: np.ndarray, compute_dx: bool = True) -> np.ndarray:
        if not self._forwarded:
            raise RuntimeError("Dropout.backward called before forward")
        if self._mask_step is None:
            return _batch(dout, "dout")
        return getattr(kernels(), self.kernel_names[1])(dout, self.p, self.seed, self._mask_step)

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        check_dropout_rate(config["p"], "p")
        check_int(config["seed"], "seed", 0, _SEED_MAX)
        return {}

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, seed={self.seed})"


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

        Raises
        ------
        RuntimeError
            the net ran forward again since this loss was computed, so its
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

    Parameters
    ----------
    net
        the Module whose backward ``loss.backward()`` runs; ``None`` to only
        compute values and the gradient w.r.t. the logits.

    Notes
    -----
    Shape: output (B, C), labels (B,) of an integer dtype with values in [0, C).

    Examples
    --------
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
            if last.logits is None or last.probs is not output:
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
