"""``Module``: a network as an ordered list of layers, as in the original project.

``Dropout`` is importable from here too (``fcnn.nn.Dropout``), as in PyTorch's ``torch.nn``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._checks import acquire_training_lock
from .functional import Dropout, Layer, Linear, Softmax

__all__ = ["Dropout", "Module"]


class Module:
    """A feed-forward network: ``forward`` runs ``layers`` in order, ``backward`` in reverse.

    Build one from layers, or subclass it and set ``self.layers`` as the
    original project did.

    Threads: :meth:`inference` and :meth:`logits` (and so ``fcnn.predict``) may run
    on one net from many threads at once. Training is one thread per net: ``net(x)``,
    ``backward``, ``loss.backward()`` and ``optimizer.step()`` raise RuntimeError
    while another thread is inside one of them on the same net.

    Parameters
    ----------
    *layers
        the layers, in order (a single list is accepted too).

    Examples
    --------
    >>> from fcnn.functional import Linear, ReLU, Softmax
    >>> net = Module(Linear(784, 1024), ReLU(), Linear(1024, 10), Softmax())
    >>> probs = net(images)          # images: (B, 784)
    """

    def __init__(self, *layers: Layer | list[Layer]) -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"layers[{index}] must be an fcnn layer, got {type(layer).__name__}"
                )
        self.layers: list[Layer] = list(layers)

    #: Training mode (True, the default) or evaluation mode: see :meth:`train`.
    training = True

    def train(self, mode: bool = True) -> Module:
        """Puts the net and every layer in training mode (``mode=True``) or evaluation mode
        (``False``), as PyTorch's ``Module.train``; returns the net.

        Only layers that train differently care: :class:`~fcnn.functional.Dropout` drops
        units in training mode and passes its input through in evaluation mode.
        :meth:`inference`, ``fcnn.predict``, ``predict_proba`` and ``evaluate`` always
        run as in evaluation mode; :func:`fcnn.train` trains in training mode and puts
        the net back in the mode it found it in.
        """
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
        self.training = bool(mode)
        for layer in self.layers:
            layer.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``self.train(False)``; returns the net."""
        return self.train(False)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Runs every layer on the batch ``x`` (B, features) and returns the last output.

        Each layer keeps what its backward pass needs, so the net trains from one thread
        at a time: a forward or backward pass while another thread runs one on the same
        net raises RuntimeError. Use :meth:`inference` to predict from many threads.

        Raises
        ------
        ValueError, TypeError
            ``x`` does not fit a layer; the message starts with
            that layer's index, as in ``layers[0]: x must have 784 features ...``.
        """
        lock = acquire_training_lock(self, "net(x)")
        try:
            # Counted first: even a failed pass leaves older losses without their caches.
            self._forward_count = getattr(self, "_forward_count", 0) + 1
            self._last_output = None
            x = self._last_output = self._run(x, cache=True)
        finally:
            lock.release()
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def inference(self, x: np.ndarray) -> np.ndarray:
        """The output of :meth:`forward` for ``x``, leaving every layer's cache untouched.

        Reads only the parameters: any number of threads may call it at once (while
        another thread steps an optimizer on this net, it may see weights half updated).
        No backward pass can follow it.
        """
        return self._run(x, cache=False)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """:meth:`inference` without a final Softmax: the scores whose argmax is the class."""
        layers = self.layers
        if layers and isinstance(layers[-1], Softmax):
            layers = layers[:-1]
        return self._run(x, cache=False, layers=layers)

    def _run(self, x: np.ndarray, cache: bool, layers: list[Layer] | None = None) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(
                f"x must be 2-D (batch, features) with at least one sample, got shape {x.shape}"
            )
        for index, layer in enumerate(self.layers if layers is None else layers):
            try:
                x = layer.forward(x) if cache else layer.inference(x)
            except (TypeError, ValueError) as error:
                if type(error) not in (TypeError, ValueError):
                    raise
                # The same class, its message prefixed with the layer it came from.
                raise type(error)(f"layers[{index}]: {error}") from error
        return x

    def backward(self, dout: np.ndarray, start: int | None = None) -> None:
        """Backpropagates ``dout``, the gradient w.r.t. the output of ``layers[start - 1]``.

        ``start=None`` means the whole net (``dout`` is w.r.t. the net's output);
        the loss passes the index of a final Softmax whose backward it has fused.
        Every layer's gradients (its declared ``params``, e.g. Linear's ``weight_grad``
        and ``bias_grad``) are overwritten in place.
        """
        lock = acquire_training_lock(self, "net.backward()")
        try:
            layers = self.layers
            stop = len(layers) if start is None else start
            index = stop - 1
            for index in range(stop - 1, -1, -1):
                # The first layer's input gradient is never used: skip its matrix product.
                dout = layers[index].backward(dout, compute_dx=index > 0)
        except (TypeError, ValueError) as error:
            if type(error) not in (TypeError, ValueError):
                raise
            raise type(error)(f"layers[{index}]: {error}") from error
        finally:
            lock.release()

    def linear_layers(self) -> list[Linear]:
        """The Linear layers, in order."""
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """``("layers.<i>.<name>", array)`` for every trainable array, as in ``state_dict``."""
        for index, layer in enumerate(self.layers):
            for name, array in layer.parameters().items():
                yield f"layers.{index}.{name}", array

    def parameters(self) -> list[np.ndarray]:
        """Every trainable array (the arrays themselves, not copies)."""
        return [array for _, array in self.named_parameters()]

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (float32 unless built otherwise)."""
        params = self.parameters()
        return params[0].dtype if params else np.dtype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter, keyed ``"layers.<i>.weight"`` / ``"layers.<i>.bias"``."""
        return {name: array.copy() for name, array in self.named_parameters()}

    def load_state_dict(self, state_dict: dict[str, np.ndarray]) -> None:
        """Copies parameters in place from ``state_dict``.

        Raises
        ------
        ValueError
            a key is missing or unexpected, or an array's shape differs.
        TypeError
            an entry is not an array of a floating dtype.
        """
        own = dict(self.named_parameters())
        missing = sorted(own.keys() - state_dict.keys())
        unexpected = sorted(state_dict.keys() - own.keys())
        if missing or unexpected:
            raise ValueError(
                f"state_dict must have exactly the keys {sorted(own)}; "
                f"missing {missing}, unexpected {unexpected}"
            )
        for name, target in own.items():
            value = state_dict[name]
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise TypeError(f"state_dict[{name!r}] must be a floating-point numpy array")
            if value.shape != target.shape:
                raise ValueError(
                    f"state_dict[{name!r}] must have shape {target.shape}, got {value.shape}"
                )
        for name, target in own.items():
            # In place, so optimisers holding these arrays keep working.
            np.copyto(target, state_dict[name], casting="same_kind")

    def __getstate__(self) -> dict:
        # The training lock (_checks.acquire_training_lock) belongs to this process's threads:
        # copies and pickles get their own on first use.
        state = self.__dict__.copy()
        state.pop("_training_lock", None)
        return state

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"{type(self).__name__}(\n{inner}\n)"
