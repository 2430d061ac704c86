"""``History``: what ``fit`` records per epoch."""

from __future__ import annotations

import json
import math
from typing import Any

MAXIMISED_SUFFIXES = ("accuracy",)


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
    if there is validation data, else ``loss``, or the early-stopping
    monitor).  Everything is plain Python data: ``to_dict()`` is JSON-able.
    """

    def __init__(self, monitor: str = "loss") -> None:
        self.epochs: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.monitor = monitor
        self.stopped_early = False
        self.stop_reason: str | None = None

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
        """The epoch (from 1) with the best ``monitor`` value; the first one on ties."""
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

    def __repr__(self) -> str:
        last = {key: round(values[-1], 6) for key, values in self.history.items() if values}
        return f"History(epochs={len(self.epochs)}, best_epoch={self.best_epoch}, last={last})"
