"""Callbacks run by ``fit`` after each epoch, and early stopping.

A callback is any object with ``on_epoch_end(epoch, logs)`` (or a plain
function of ``(epoch, logs)``).  ``epoch`` is numbered from 1 and ``logs`` is
a dict of this epoch's values (``loss``, ``val_loss``, metrics, ``lr``) as
Python floats.  Returning ``True`` asks ``fit`` to stop after this epoch.
Optional hooks: ``on_train_begin(network)`` and ``on_train_end(history)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from .. import checks
from .history import monitor_mode
from .snapshot import Snapshot

logger = logging.getLogger("bpcore")


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_train_begin(self, network: Any) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        """Called after each epoch; return True to stop training."""
        return None

    def on_train_end(self, history: Any) -> None:
        """Called once after the last epoch (also after an early stop)."""


class FunctionCallback(Callback):
    """Wraps a plain ``function(epoch, logs)`` as a callback."""

    def __init__(self, function: Callable[[int, dict[str, float]], Any]) -> None:
        self.function = function

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        return bool(self.function(epoch, logs))

    def __repr__(self) -> str:
        return f"FunctionCallback({getattr(self.function, '__name__', self.function)!r})"


def as_callbacks(callbacks: Any) -> list[Any]:
    """Check the ``callbacks`` argument of ``fit`` and return it as a list."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, Iterable) or hasattr(callbacks, "on_epoch_end"):
        raise TypeError(
            f"callbacks: expected a sequence of callbacks, got {type(callbacks).__name__}; "
            "wrap a single callback in a list"
        )
    checked: list[Any] = []
    for position, callback in enumerate(callbacks):
        if hasattr(callback, "on_epoch_end"):
            checked.append(callback)
        elif callable(callback):
            checked.append(FunctionCallback(callback))
        else:
            raise TypeError(
                f"callbacks[{position}]: expected an object with on_epoch_end(epoch, logs) or a function "
                f"of (epoch, logs), got {type(callback).__name__}"
            )
    return checked


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves on the best so far when its value is lower by more than
    ``min_delta`` (higher, for ``mode="max"``; ``mode="auto"`` picks ``max``
    for accuracies and ``min`` otherwise).  With ``restore_best=True`` the
    network's parameters and layer buffers are set back, bit for bit, to
    those after the best epoch when training ends, whether it stopped early
    or ran all its epochs.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
        mode: str = "auto",
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"EarlyStopping(monitor): expected a name such as 'val_loss', got {monitor!r}")
        self.patience = checks.non_negative_int(patience, "EarlyStopping(patience)")
        self.min_delta = checks.non_negative(min_delta, "EarlyStopping(min_delta)")
        mode = checks.choice(mode, "EarlyStopping(mode)", ("auto", "min", "max"))
        self.restore_best = checks.flag(restore_best, "EarlyStopping(restore_best)")
        self.monitor = monitor
        self.mode = monitor_mode(monitor) if mode == "auto" else mode
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self._network: Any = None
        self._snapshot: Snapshot | None = None
        self._last_epoch: int | None = None

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
            f"restore_best={self.restore_best}, mode={self.mode!r})"
        )

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, network: Any) -> None:
        self._reset()
        self._network = network
        if self.restore_best:
            self._snapshot = Snapshot(network)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping: monitor {self.monitor!r} is not among this epoch's values {sorted(logs)}"
            )
        value = float(logs[self.monitor])
        self._last_epoch = epoch
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self._snapshot is not None:
                self._snapshot.take()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            logger.info(
                "early stopping after epoch %d: %s has not improved on %.6g (epoch %s) for %d epoch(s)",
                epoch, self.monitor, self.best if self.best is not None else float("nan"),
                self.best_epoch, self.wait,
            )
            return True
        return False

    def on_train_end(self, history: Any) -> None:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.taken and self.best_epoch != self._last_epoch:
            snapshot.restore()
            logger.info("restored the parameters of epoch %s (best %s = %.6g)",
                        self.best_epoch, self.monitor, self.best)
        self._network = None
        self._snapshot = None
