"""SGD with the original project's weight decay, and the exponential learning-rate schedule."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import kernels
from ._checks import acquire_training_lock, check_int, check_real
from .functional import Layer, Linear
from .nn import Module

__all__ = ["SGD", "ExponentialScheduler", "ConstantScheduler"]


def _alias(
    new_name: str, new_value: Any, old_name: str, old_value: Any, default: Any
) -> tuple[str, Any]:
    """``(name given, value)`` of a setting that also goes by the original project's name.

    The name is the one the caller used, so that an error message names it.
    """
    if old_value is None:
        return new_name, default if new_value is None else new_value
    if new_value is not None:
        raise TypeError(
            f"give {new_name} or {old_name}, not both ({old_name} is the original "
            f"project's name for {new_name})"
        )
    return old_name, old_value


class ExponentialScheduler:
    """Exponential decay of the learning rate, called as ``scheduler(step)``.

    ``lr = initial_lr * lr_decay ** floor(step / lr_step)`` with
    ``staircase=True`` (the original project's documented formula), or
    ``initial_lr * lr_decay ** (step / lr_step)`` with ``staircase=False``.
    The original's code dropped the floor, so its rate shrank every step;
    fcnn follows the formula.

    Parameters
    ----------
    initial_lr : float
        The rate at step 0 (finite, >= 0).
    lr_step : int, default=500
        Steps per stage, T (>= 1; the original used 500). ``stage_length``,
        the original's name, is accepted as a keyword.
    lr_decay : float, default=0.5
        The factor per stage, alpha, in (0, 1] (the original used 0.5).
        ``decay``, the original's name, is accepted as a keyword.
    staircase : bool, default=True
        Floor the exponent (default) or not.

    Examples
    --------
    >>> ExponentialScheduler(0.5)(1000)
    0.125
    >>> ExponentialScheduler(0.5, lr_step=100, lr_decay=0.8)(250)
    0.32000000000000006
    """

    def __init__(
        self,
        initial_lr: float,
        lr_step: int | None = None,
        lr_decay: float | None = None,
        staircase: bool = True,
        *,
        stage_length: int | None = None,
        decay: float | None = None,
    ) -> None:
        step_name, lr_step = _alias("lr_step", lr_step, "stage_length", stage_length, 500)
        decay_name, lr_decay = _alias("lr_decay", lr_decay, "decay", decay, 0.5)
        self.initial_lr = check_real(initial_lr, "initial_lr", minimum=0)
        self.lr_step = check_int(lr_step, step_name, minimum=1)
        self.lr_decay = check_real(lr_decay, decay_name, minimum=0)
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"{decay_name} must be in (0, 1], got {lr_decay!r}")
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        """The learning rate at ``step`` (an integer >= 0)."""
        return kernels().exponential_lr(
            self.initial_lr, step, self.lr_step, self.lr_decay, self.staircase
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": "exponential",
            "initial_lr": self.initial_lr,
            "lr_step": self.lr_step,
            "lr_decay": self.lr_decay,
            "staircase": self.staircase,
        }

    def __repr__(self) -> str:
        return (
            f"ExponentialScheduler(initial_lr={self.initial_lr}, "
            f"lr_step={self.lr_step}, lr_decay={self.lr_decay}, "
            f"staircase={self.staircase})"
        )


class ConstantScheduler:
    """A learning rate that never changes: ``lr_scheduler=None`` in :class:`SGD`."""

    def __init__(self, initial_lr: float) -> None:
        self.initial_lr = check_real(initial_lr, "initial_lr", minimum=0)

    def __call__(self, step: int) -> float:
        return self.initial_lr

    def state_dict(self) -> dict[str, Any]:
        return {"name": "constant", "initial_lr": self.initial_lr}

    def __repr__(self) -> str:
        return f"ConstantScheduler(initial_lr={self.initial_lr})"


class SGD:
    """Stochastic gradient descent over every parameter a layer of the net declares.

    Each :meth:`step` applies ``w <- (1 - weight_decay * lr) * w - lr * grad`` to
    weights and biases alike (the original project's rule), with ``lr`` taken
    from the scheduler at the current step count.

    Parameters
    ----------
    net : Module
        The Module to train.
    lr : float, optional
        The initial learning rate. May be omitted when ``lr_scheduler`` is an
        instance (its ``initial_lr`` is used).
    lr_scheduler : class, callable or None, default=ExponentialScheduler
        A scheduler class, called as ``lr_scheduler(lr)``; an instance (anything
        callable as ``scheduler(step)``); or ``None`` for a constant rate. The
        default is the original project's.
    weight_decay : float, optional
        The weight decay, lambda (``None`` or 0 for none). ``decay``, the
        original project's name, is accepted as a keyword.
    momentum : float, default=0.0
        Heavy-ball momentum in [0, 1) (0 is the original's plain SGD):
        ``v <- momentum * v + grad``, step along ``v``.
    nesterov : bool, default=False
        Step along ``grad + momentum * v`` instead (needs momentum > 0).

    Examples
    --------
    >>> optimizer = SGD(net, lr=0.5, lr_scheduler=ExponentialScheduler, weight_decay=1e-5)
    >>> loss.backward(); optimizer.step()
    """

    def __init__(
        self,
        net: Module,
        lr: float | None = None,
        lr_scheduler: Any = ExponentialScheduler,
        weight_decay: float | None = None,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        decay: float | None = None,
    ) -> None:
        if not isinstance(net, Module):
            raise TypeError(f"net must be an fcnn.nn.Module, got {type(net).__name__}")
        self.net = net
        decay_name, weight_decay = _alias("weight_decay", weight_decay, "decay", decay, 0.0)
        self.weight_decay = check_real(weight_decay, decay_name, minimum=0)
        if isinstance(lr_scheduler, type):
            if lr is None:
                raise TypeError("lr is required when lr_scheduler is a class")
            self.scheduler = lr_scheduler(check_real(lr, "lr", minimum=0))
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
        self.momentum = check_real(momentum, "momentum", minimum=0)
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
        lock = acquire_training_lock(self.net, "optimizer.step()")
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

        The momentum velocities are arrays, not part of this JSON state:
        :func:`fcnn.serialization.restore_optimizer` restores them from the checkpoint's arrays.
        Scheduler states saved under the original project's names (``stage_length``,
        ``decay``) load as well.
        """
        scheduler = state.get("scheduler") or {}
        settings = {key: value for key, value in scheduler.items() if key != "name"}
        if scheduler.get("name") == "exponential":
            self.scheduler = ExponentialScheduler(**settings)
        elif scheduler.get("name") == "constant":
            self.scheduler = ConstantScheduler(**settings)
        self.weight_decay = check_real(state["weight_decay"], "weight_decay", minimum=0)
        self.momentum = check_real(state.get("momentum", 0.0), "momentum", minimum=0)
        self.nesterov = bool(state.get("nesterov", False))
        self.step_count = check_int(state["step_count"], "step_count", minimum=0)
