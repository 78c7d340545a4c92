"""SGD with the original project's weight decay, and the exponential learning-rate schedule."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ._backend import kernels
from .functional import Layer, Linear, _exclusive
from .nn import Module

__all__ = ["SGD", "ExponentialScheduler", "ConstantScheduler"]


def _rate(value: object, name: str) -> float:
    """A finite, non-negative float setting, or a ValueError/TypeError naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        and not hasattr(value, "__float__")
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return number


class ExponentialScheduler:
    """Exponential decay of the learning rate, called as ``scheduler(step)``.

    ``lr = initial_lr * decay ** floor(step / stage_length)`` with
    ``staircase=True`` (the original project's documented formula), or
    ``initial_lr * decay ** (step / stage_length)`` with ``staircase=False``.
    The original's code dropped the floor, so its rate shrank every step;
    fcnn follows the formula.

    Args:
        initial_lr: the rate at step 0 (finite, >= 0).
        stage_length: steps per stage, T (>= 1; the original used 500).
        decay: the factor per stage, alpha, in (0, 1] (the original used 0.5).
        staircase: floor the exponent (default) or not.

    Example:
        >>> ExponentialScheduler(0.5)(1000)
        0.125
    """

    def __init__(
        self, initial_lr: float, stage_length: int = 500, decay: float = 0.5, staircase: bool = True
    ) -> None:
        self.initial_lr = _rate(initial_lr, "initial_lr")
        try:
            self.stage_length = operator.index(stage_length)
        except TypeError:
            raise TypeError(
                f"stage_length must be an integer, got {type(stage_length).__name__}"
            ) from None
        if self.stage_length < 1:
            raise ValueError(f"stage_length must be >= 1, got {stage_length}")
        self.decay = _rate(decay, "decay")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay!r}")
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        """The learning rate at ``step`` (an integer >= 0)."""
        return kernels().exponential_lr(
            self.initial_lr, step, self.stage_length, self.decay, self.staircase
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": "exponential",
            "initial_lr": self.initial_lr,
            "stage_length": self.stage_length,
            "decay": self.decay,
            "staircase": self.staircase,
        }

    def __repr__(self) -> str:
        return (
            f"ExponentialScheduler(initial_lr={self.initial_lr}, "
            f"stage_length={self.stage_length}, decay={self.decay}, "
            f"staircase={self.staircase})"
        )


class ConstantScheduler:
    """A learning rate that never changes: ``lr_scheduler=None`` in :class:`SGD`."""

    def __init__(self, initial_lr: float) -> None:
        self.initial_lr = _rate(initial_lr, "initial_lr")

    def __call__(self, step: int) -> float:
        return self.initial_lr

    def state_dict(self) -> dict[str, Any]:
        return {"name": "constant", "initial_lr": self.initial_lr}

    def __repr__(self) -> str:
        return f"ConstantScheduler(initial_lr={self.initial_lr})"


class SGD:
    """Stochastic gradient descent over every Linear layer of a net.

    Each :meth:`step` applies ``w <- (1 - decay * lr) * w - lr * grad`` to
    weights and biases alike (the original project's rule), with ``lr`` taken
    from the scheduler at the current step count.

    Args:
        net: the Module to train.
        lr: the initial learning rate. May be omitted when ``lr_scheduler`` is
            an instance (its ``initial_lr`` is used).
        lr_scheduler: a scheduler class, called as ``lr_scheduler(lr)``; an
            instance (anything callable as ``scheduler(step)``); or ``None`` for
            a constant rate. Default: :class:`ExponentialScheduler`, as in the
            original project.
        decay: the weight decay, lambda (``None`` or 0 for none). ``weight_decay``
            is accepted as PyTorch's name for the same setting.
        momentum: heavy-ball momentum in [0, 1) (0, the default, is the
            original's plain SGD): ``v <- momentum * v + grad``, step along ``v``.
        nesterov: step along ``grad + momentum * v`` instead (needs momentum > 0).

    Example:
        >>> optimizer = SGD(net, lr=0.5, lr_scheduler=ExponentialScheduler, decay=1e-5)
        >>> loss.backward(); optimizer.step()
    """

    def __init__(
        self,
        net: Module,
        lr: float | None = None,
        lr_scheduler: Any = ExponentialScheduler,
        decay: float | None = None,
        *,
        weight_decay: float | None = None,
        momentum: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if not isinstance(net, Module):
            raise TypeError(f"net must be an fcnn.nn.Module, got {type(net).__name__}")
        self.net = net
        if decay is not None and weight_decay is not None:
            raise ValueError("give decay or weight_decay, not both (they are one setting)")
        chosen_decay = decay if decay is not None else weight_decay
        self.weight_decay = 0.0 if chosen_decay is None else _rate(chosen_decay, "decay")
        if isinstance(lr_scheduler, type):
            if lr is None:
                raise TypeError("lr is required when lr_scheduler is a class")
            self.scheduler = lr_scheduler(_rate(lr, "lr"))
        elif lr_scheduler is None:
            if lr is None:
                raise TypeError("lr is required without a scheduler")
            self.scheduler = ConstantScheduler(lr)
        elif callable(lr_scheduler):
            if lr is not None and float(lr) != getattr(lr_scheduler, "initial_lr", float(lr)):
                raise ValueError(
                    f"lr ({lr}) differs from the scheduler's initial_lr "
                    f"({lr_scheduler.initial_lr}); give one of them"
                )
            self.scheduler = lr_scheduler
        else:
            raise TypeError(
                "lr_scheduler must be a scheduler class, a callable scheduler(step) or None, "
                f"got {type(lr_scheduler).__name__}"
            )
        self.momentum = _rate(momentum, "momentum")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0, got momentum 0")
        # One velocity per parameter, by state_dict name, created on first use.
        self.velocities: dict[str, np.ndarray] = {}
        self.step_count = 0
        self._plan: list[tuple[Linear, np.ndarray | None, np.ndarray | None]] = []
        self._plan_key: tuple[list, object, bool] | None = None

    @property
    def lr(self) -> float:
        """The learning rate the next :meth:`step` will use."""
        return float(self.scheduler(self.step_count))

    def get_last_lr(self) -> list[float]:
        """PyTorch's name for :attr:`lr`, as a one-element list."""
        return [self.lr]

    def _current_plan(self) -> list[tuple[Layer, str, str, np.ndarray | None]]:
        """``(layer, parameter name, gradient name, velocity or None)`` for every parameter
        the net's layers declare (their ``params``), in ``state_dict`` order.

        Built again only when the net's layer list, the ``velocities`` dict (replaced
        whole, as ``fcnn.load_checkpoint`` does) or whether there is momentum changed:
        a step then costs no name formatting or dict lookups. Parameters and gradients
        are read from the layers at each step, so assigning a new ``layer.weight`` works.
        """
        layers = self.net.layers
        with_momentum = self.momentum > 0
        key = self._plan_key
        if (
            key is not None
            and key[0] == layers
            and key[1] is self.velocities
            and key[2] == with_momentum
        ):
            return self._plan
        plan = []
        for index, layer in enumerate(layers):
            for name, gradient_name in layer.params:
                velocity = None
                if with_momentum:
                    velocity_key = f"layers.{index}.{name}"
                    velocity = self.velocities.get(velocity_key)
                    if velocity is None:
                        velocity = self.velocities[velocity_key] = np.zeros_like(
                            getattr(layer, name)
                        )
                plan.append((layer, name, gradient_name, velocity))
        self._plan, self._plan_key = plan, (list(layers), self.velocities, with_momentum)
        return plan

    def step(self) -> None:
        """Updates every parameter in place from the gradients of the last backward pass.

        Raises RuntimeError while another thread runs forward, backward or a step on
        the same net (see :meth:`fcnn.nn.Module.forward`).
        """
        lr = self.lr
        sgd_step = kernels().sgd_step
        weight_decay, momentum, nesterov = self.weight_decay, self.momentum, self.nesterov
        lock = _exclusive(self.net, "optimizer.step()")
        try:
            for layer, name, gradient_name, velocity in self._current_plan():
                sgd_step(
                    getattr(layer, name),
                    getattr(layer, gradient_name),
                    lr,
                    weight_decay,
                    momentum,
                    velocity,
                    nesterov,
                )
            self.step_count += 1
        finally:
            lock.release()

    def zero_grad(self) -> None:
        """Sets every gradient to zero. Optional: each backward pass overwrites them."""
        for layer in self.net.linear_layers():
            layer.weight_grad[...] = 0
            layer.bias_grad[...] = 0

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's settings and step count (JSON-serialisable)."""
        scheduler_state = (
            self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else None
        )
        return {
            "name": "sgd",
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "step_count": self.step_count,
            "scheduler": scheduler_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the step count, weight decay, momentum and scheduler of :meth:`state_dict`.

        The momentum velocities are arrays, not part of this JSON state: a resumed
        run starts them from zero.
        """
        scheduler = state.get("scheduler") or {}
        settings = {key: value for key, value in scheduler.items() if key != "name"}
        if scheduler.get("name") == "exponential":
            self.scheduler = ExponentialScheduler(**settings)
        elif scheduler.get("name") == "constant":
            self.scheduler = ConstantScheduler(**settings)
        self.weight_decay = _rate(state["weight_decay"], "weight_decay")
        self.momentum = _rate(state.get("momentum", 0.0), "momentum")
        self.nesterov = bool(state.get("nesterov", False))
        count = operator.index(state["step_count"])
        if count < 0:
            raise ValueError(f"step_count must be >= 0, got {count}")
        self.step_count = count
