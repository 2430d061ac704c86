"""Learning-rate schedules with torch.optim.lr_scheduler's semantics.

As in torch, a schedule takes effect when it is created: it records the
optimiser's learning rate as its base rate (``optimizer.initial_lr``, set by
the first schedule attached, so chained schedules share one base) and sets
the rate for step 0.  Each ``step()`` (normally once per epoch, after
``optimizer.step()``) moves to the next rate.  The rules are torch's
recursive ("chainable") forms, which modify the optimiser's *current* rate,
so two schedules on one optimiser compose as they do in torch.
``get_last_lr()`` returns a one-element list, as torch does for one
parameter group.
"""

from __future__ import annotations

import math
from typing import Any

from .. import checks
from .optimizers import Optimizer


def _check_optimizer(optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"{type(optimizer).__name__} is not an Optimizer (optimizer: expected a bpcore optimiser)"
        )
    return optimizer




class LRScheduler:
    """Base class: applies ``_next_lr()`` to the optimiser at each step, starting at creation."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = _check_optimizer(optimizer)
        if optimizer.initial_lr is None:
            optimizer.initial_lr = optimizer.lr
        self.base_lr: float = optimizer.initial_lr
        self.last_epoch = -1
        self._step_count = 0
        self._last_lr = optimizer.lr
        self.step()

    def step(self) -> None:
        """Advance one epoch and set the optimiser's learning rate for it."""
        self._step_count += 1
        self.last_epoch += 1
        lr = self._next_lr()
        self.optimizer.lr = lr
        self._last_lr = lr

    def _next_lr(self) -> float:
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rate this schedule last set, as a one-element list (torch's form)."""
        return [self._last_lr]

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position and settings (plain Python values), without the optimiser."""
        return {key: value for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` of the same kind of schedule."""
        mine = self.state_dict()
        if not isinstance(state_dict, dict) or set(state_dict) != set(mine):
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: expected the keys {sorted(mine)}, got {got}"
            )
        self.__dict__.update(state_dict)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} epoch={self.last_epoch} lr={self._last_lr}>"


class StepLR(LRScheduler):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base * gamma ** (epoch // step_size)`` up to rounding: as torch, the
    current rate is multiplied by ``gamma`` at each step (so that it chains
    with other schedules), which matches torch bit for bit.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = checks.positive_int(step_size, "step_size")
        self.gamma = checks.positive(gamma, "gamma")
        super().__init__(optimizer)

    def _next_lr(self) -> float:
        lr = self.optimizer.lr
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma


class ExponentialLR(LRScheduler):
    """Multiply the rate by ``gamma`` every epoch: ``lr = base * gamma ** epoch``.

    Up to rounding: as torch, the current rate is multiplied by ``gamma`` at
    each step, which matches torch bit for bit and chains with other schedules.
    """

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = checks.positive(gamma, "gamma")
        super().__init__(optimizer)

    def _next_lr(self) -> float:
        lr = self.optimizer.lr
        return lr if self.last_epoch == 0 else lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base rate down to ``eta_min`` over ``T_max`` epochs.

    ``lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``,
    computed, as torch does, by its recursive form (which continues as a
    cosine wave after ``T_max``).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = checks.positive_int(T_max, "T_max")
        self.eta_min = checks.non_negative(eta_min, "eta_min")
        super().__init__(optimizer)

    def _next_lr(self) -> float:
        lr, epoch, t_max, eta_min = self.optimizer.lr, self.last_epoch, self.T_max, self.eta_min
        if epoch == 0:
            return lr
        if self._step_count == 1 and epoch > 0:
            return eta_min + (self.base_lr - eta_min) * (1 + math.cos(epoch * math.pi / t_max)) / 2
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            return lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        return (1 + math.cos(math.pi * epoch / t_max)) / (1 + math.cos(math.pi * (epoch - 1) / t_max)) * (
            lr - eta_min
        ) + eta_min


class LinearWarmup(LRScheduler):
    """Linear warm-up: torch's ``LinearLR(start_factor, end_factor=1.0, total_iters=warmup_steps)``.

    The rate starts at ``base * start_factor`` on creation and grows linearly
    to ``base`` after ``warmup_steps`` steps, then stays there:
    ``lr = base * (start_factor + (1 - start_factor) * min(epoch, warmup_steps) / warmup_steps)``.
    ``start_factor`` is in (0, 1] (torch's default 1/3).
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 1.0 / 3) -> None:
        self.warmup_steps = checks.positive_int(warmup_steps, "warmup_steps")
        factor = checks.real(start_factor, "start_factor")
        if not 0 < factor <= 1:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or equal to 1. "
                f"(start_factor: got {start_factor!r})"
            )
        self.start_factor = factor
        self.end_factor = 1.0
        super().__init__(optimizer)

    def _next_lr(self) -> float:
        lr, epoch = self.optimizer.lr, self.last_epoch
        if epoch == 0:
            return lr * self.start_factor
        if epoch > self.warmup_steps:
            return lr
        span = self.end_factor - self.start_factor
        return lr * (1.0 + span / (self.warmup_steps * self.start_factor + (epoch - 1) * span))


class ReduceLROnPlateau:
    """Divide the rate by ``1 / factor`` when a metric has stopped improving (torch's rule).

    ``step(metric)`` once per epoch.  An epoch is an improvement when the
    metric beats the best so far by more than ``threshold`` (relative:
    ``best * (1 -/+ threshold)``, or absolute: ``best -/+ threshold``); after
    more than ``patience`` epochs without one, ``lr = max(lr * factor,
    min_lr)`` (skipped if the change is at most ``eps``), followed by
    ``cooldown`` epochs in which bad epochs are not counted.  Unlike the
    other schedules it does not change the rate on creation.  ``metric`` may
    be a 0-d device array; reading it is one synchronisation.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.optimizer = _check_optimizer(optimizer)
        factor = checks.real(factor, "factor")
        if factor >= 1.0:
            raise ValueError(f"Factor should be < 1.0. (factor: got {factor!r})")
        if not factor > 0:
            raise ValueError(f"factor: expected a number in (0, 1), got {factor!r}")
        self.mode = checks.choice(mode, "mode", ("min", "max"))
        self.threshold_mode = checks.choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.factor = factor
        self.patience = checks.non_negative_int(patience, "patience")
        self.threshold = checks.non_negative(threshold, "threshold")
        self.cooldown = checks.non_negative_int(cooldown, "cooldown")
        self.min_lr = checks.non_negative(min_lr, "min_lr")
        self.eps = checks.non_negative(eps, "eps")
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = optimizer.lr

    def is_better(self, current: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return current < best * (1.0 - self.threshold)
        if self.mode == "min":
            return current < best - self.threshold
        if self.threshold_mode == "rel":
            return current > best * (self.threshold + 1.0)
        return current > best + self.threshold

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metric: Any) -> None:
        """Record this epoch's ``metric`` and reduce the rate if it has plateaued."""
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"metric: expected a number, got {type(metric).__name__} {metric!r}") from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old_lr = self.optimizer.lr
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self.optimizer.lr

    def get_last_lr(self) -> list[float]:
        """The optimiser's rate after the last step, as a one-element list (torch's form)."""
        return [self._last_lr]

    state_dict = LRScheduler.state_dict
    load_state_dict = LRScheduler.load_state_dict

    def __repr__(self) -> str:
        return f"<ReduceLROnPlateau epoch={self.last_epoch} lr={self._last_lr} best={self.best}>"
