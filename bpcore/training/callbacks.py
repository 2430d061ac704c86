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
    """Stop training when ``monitor`` has stopped improving: Keras's ``EarlyStopping``.

    The arguments are Keras 3's, in its order and with its meaning:

    * ``monitor``: the value watched, one that ``fit`` records (``val_loss``,
      ``loss``, ``val_accuracy``, ...).
    * ``min_delta``: the least change that counts as an improvement (its
      absolute value is used): with ``mode="min"`` an epoch improves on the
      best when ``value + min_delta < best``, with ``"max"`` when
      ``value - min_delta > best``.
    * ``patience``: epochs without improvement after which training stops.
      It never stops after its first epoch.
    * ``verbose``: 0 logs the stop and the restore at DEBUG on the
      ``bpcore`` logger, 1 at INFO (bpcore never prints).
    * ``mode``: ``"min"``, ``"max"`` or ``"auto"`` (``max`` for accuracies,
      ``min`` for losses and errors).
    * ``baseline``: a value to reach: an epoch that improves on the best but
      not on ``baseline`` does not reset the patience count, so training stops
      after ``patience`` epochs that never reach it.
    * ``restore_best_weights``: when training ends, stopped early or not, set
      the network's parameters and layer buffers back, bit for bit, to those
      after the best epoch (after the first epoch counted if none improved).
    * ``start_from_epoch``: epochs to train before any is counted (a warm-up
      whose values are not compared).

    Two defaults are bpcore's, not Keras's: ``patience=5`` (Keras: 0, which
    stops at the first epoch that does not improve) and
    ``restore_best_weights=True`` (Keras: False, which keeps the last epoch's
    weights).  Pass ``patience=0, restore_best_weights=False`` for Keras's.
    One rule differs from Keras's: a NaN value never improves (in Keras a NaN
    on the first epoch counted becomes the best, which nothing can then beat).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 5,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = True,
        start_from_epoch: int = 0,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"EarlyStopping(monitor): expected a name such as 'val_loss', got {monitor!r}")
        self.min_delta = abs(checks.real(min_delta, "EarlyStopping(min_delta)"))
        self.patience = checks.non_negative_int(patience, "EarlyStopping(patience)")
        self.verbose = checks.verbosity(verbose, "EarlyStopping(verbose)")
        mode = checks.choice(mode, "EarlyStopping(mode)", ("auto", "min", "max"))
        self.baseline = checks.optional(checks.real, baseline, "EarlyStopping(baseline)", finite=False)
        self.restore_best_weights = checks.flag(restore_best_weights, "EarlyStopping(restore_best_weights)")
        self.start_from_epoch = checks.non_negative_int(start_from_epoch, "EarlyStopping(start_from_epoch)")
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
            f"EarlyStopping(monitor={self.monitor!r}, min_delta={self.min_delta}, patience={self.patience}, "
            f"verbose={self.verbose}, mode={self.mode!r}, baseline={self.baseline}, "
            f"restore_best_weights={self.restore_best_weights}, start_from_epoch={self.start_from_epoch})"
        )

    def improves(self, value: float, reference: float | None = None) -> bool:
        """Whether ``value`` beats ``reference`` (default: the best so far) by more than ``min_delta``.

        Keras's comparison, ``value + min_delta < reference`` (``-`` and
        ``>`` for ``mode="max"``); anything beats no reference, NaN nothing.
        """
        reference = self.best if reference is None else reference
        if math.isnan(value):
            return False
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def _log(self, message: str, *args: Any) -> None:
        logger.log(logging.INFO if self.verbose else logging.DEBUG, message, *args)

    def on_train_begin(self, network: Any) -> None:
        self._reset()
        self._network = network
        if self.restore_best_weights:
            self._snapshot = Snapshot(network)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping: monitor {self.monitor!r} is not among this epoch's values {sorted(logs)}"
            )
        value = float(logs[self.monitor])
        self._last_epoch = epoch
        if epoch <= self.start_from_epoch:  # epochs are numbered from 1: the warm-up is not counted
            return False
        self.wait += 1
        if self.improves(value):
            self.best, self.best_epoch = value, epoch
            if self._snapshot is not None:
                self._snapshot.take()
            if self.baseline is None or self.improves(value, self.baseline):
                self.wait = 0
            return False
        if self._snapshot is not None and not self._snapshot.taken:
            # Nothing has improved yet (a NaN): the first epoch counted holds the best weights so far.
            self._snapshot.take()
            self.best_epoch = epoch
        if self.wait >= self.patience and epoch > 1:  # never after the first epoch, as Keras
            self.stopped_epoch = epoch
            self._log(
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
            self._log("restored the parameters of epoch %s (best %s = %.6g)",
                      self.best_epoch, self.monitor, self.best if self.best is not None else float("nan"))
        self._network = None
        self._snapshot = None
