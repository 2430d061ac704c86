"""``History``: what ``fit`` records per epoch."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

MAXIMISED_SUFFIXES = ("accuracy",)
PLOT_HINT = "pip install 'bpcore[plot]' (or pip install matplotlib)"


def monitor_mode(monitor: str) -> str:
    """``"max"`` for quantities that improve upwards (accuracy), else ``"min"``."""
    return "max" if monitor.endswith(MAXIMISED_SUFFIXES) else "min"


class History:
    """Per-epoch training record returned by :func:`bpcore.training.fit`.

    Epochs are numbered from 1.  ``history[key]`` (or ``history.history[key]``)
    is the list of one value per epoch for each key: ``loss``, ``val_loss``
    when there is validation data, each metric (``accuracy``, ...) and its
    ``val_`` counterpart, and ``lr``, the learning rate used in the epoch.
    Training metrics are averaged over the epoch's batches as they were
    trained (so with dropout they are measured with dropout on); validation
    values are measured in evaluation mode after the epoch.

    ``best_epoch`` is the epoch with the best ``monitor`` value (``val_loss``
    if there is validation data, else ``loss``), or, when ``fit`` ran with
    early stopping, the best epoch by its rules (its monitor, mode and
    ``min_delta``: the epoch whose weights it restores).  Everything is plain
    Python data: ``to_dict()`` is JSON-able.
    """

    def __init__(self, monitor: str = "loss") -> None:
        self.epochs: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.monitor = monitor
        self.stopped_early = False
        self.stop_reason: str | None = None
        #: the best epoch as early stopping decided it; None: the best ``monitor`` value's epoch
        self.decided_best_epoch: int | None = None

    # --- recording -----------------------------------------------------------
    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Record the values of one epoch."""
        self.epochs.append(int(epoch))
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def stop(self, reason: str) -> None:
        """Mark that training ended before the requested number of epochs."""
        self.stopped_early = True
        self.stop_reason = reason

    # --- reading -------------------------------------------------------------
    def __getitem__(self, key: str) -> list[float]:
        try:
            return self.history[key]
        except KeyError:
            raise KeyError(f"History has no {key!r}; it records {sorted(self.history)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def __len__(self) -> int:
        return len(self.epochs)

    def keys(self) -> list[str]:
        return list(self.history)

    @property
    def loss(self) -> list[float]:
        return self.history.get("loss", [])

    @property
    def val_loss(self) -> list[float]:
        return self.history.get("val_loss", [])

    @property
    def best_epoch(self) -> int | None:
        """The epoch (from 1) with the best ``monitor`` value (the first one on ties), or early stopping's."""
        if self.decided_best_epoch is not None:
            return self.decided_best_epoch
        values = self.history.get(self.monitor)
        if not values:
            return None
        finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
        if not finite:
            return None
        if monitor_mode(self.monitor) == "max":
            best = max(finite, key=lambda pair: (pair[0], -pair[1]))
        else:
            best = min(finite, key=lambda pair: (pair[0], pair[1]))
        return self.epochs[best[1]]

    @property
    def best(self) -> float | None:
        """The best ``monitor`` value, at :attr:`best_epoch`."""
        epoch = self.best_epoch
        return None if epoch is None else self.history[self.monitor][self.epochs.index(epoch)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary of everything recorded."""
        return {
            "epochs": list(self.epochs),
            "history": {key: list(values) for key, values in self.history.items()},
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
        }

    def to_json(self, **options: Any) -> str:
        return json.dumps(self.to_dict(), **options)

    # --- plotting ------------------------------------------------------------
    def plot(self, ax: Any = None, metrics: Sequence[str] | None = None) -> Any:
        """Draw the training and validation curves per epoch with matplotlib.

        One panel for the loss and one per metric (``metrics``: names such as
        ``["accuracy"]`` or ``["lr"]``; by default every recorded metric except
        ``lr``), each with its training curve, its ``val_`` curve when there is
        one, and the best epoch of the monitored quantity marked.  ``ax`` is
        one matplotlib Axes per panel (a single Axes when there is one panel,
        e.g. with ``metrics=[]``); without it a new Figure is made, never a
        pyplot window, so this works in scripts, notebooks and servers alike
        (``axes.flat[0].figure.savefig(...)``).  Returns the Axes, or a NumPy
        array of Axes when there are several panels.  Needs matplotlib
        (``pip install 'bpcore[plot]'``).
        """
        import numpy as np

        if not self.epochs:
            raise ValueError("History.plot: nothing to plot, no epoch was recorded")
        panels = ["loss", *self._plot_metrics(metrics)]
        if ax is None:
            try:
                from matplotlib.figure import Figure
            except ImportError as exc:
                raise ImportError(f"History.plot needs matplotlib: {PLOT_HINT}") from exc
            figure = Figure(figsize=(4.5 * len(panels), 3.5), layout="constrained")
            axes = np.asarray(figure.subplots(1, len(panels), squeeze=False)[0], dtype=object)
        else:
            axes = np.asarray([ax] if hasattr(ax, "plot") else list(ax), dtype=object).ravel()
            if axes.size != len(panels) or not all(hasattr(one, "plot") for one in axes):
                raise ValueError(
                    f"ax: expected {len(panels)} matplotlib Axes (one per panel: {', '.join(panels)}), "
                    f"got {axes.size} object(s); pass metrics=[] to draw only the loss"
                )
        best = self.best_epoch
        for one, key in zip(axes, panels, strict=True):
            one.plot(self.epochs, self.history[key], label="training")
            if f"val_{key}" in self.history:
                one.plot(self.epochs, self.history[f"val_{key}"], label="validation")
            if best is not None and self.monitor in (key, f"val_{key}"):
                one.axvline(best, color="gray", linestyle=":", label=f"best epoch ({best})")
            one.set_xlabel("epoch")
            one.set_ylabel(key)
            one.set_title(key)
            one.legend()
        return axes[0] if len(panels) == 1 else axes

    def _plot_metrics(self, metrics: Sequence[str] | None) -> list[str]:
        """The metric panels of :meth:`plot`: recorded training keys other than the loss."""
        recorded = [key for key in self.history if key != "loss" and not key.startswith("val_")]
        if metrics is None:
            return [key for key in recorded if key != "lr"]
        if isinstance(metrics, str) or not isinstance(metrics, Sequence):
            raise TypeError(
                f"metrics: expected None or a list of metric names, got {type(metrics).__name__} {metrics!r}"
            )
        for index, name in enumerate(metrics):
            if name not in recorded:
                raise ValueError(f"metrics[{index}]: {name!r} is not a recorded metric; History records "
                                 f"{recorded} besides the loss")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics: names must be unique, got {list(metrics)}")
        return list(metrics)

    def __repr__(self) -> str:
        last = {key: round(values[-1], 6) for key, values in self.history.items() if values}
        return f"History(epochs={len(self.epochs)}, best_epoch={self.best_epoch}, last={last})"
