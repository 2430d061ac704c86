"""Metrics reported by ``fit`` and ``evaluate``: ``accuracy``, ``mse`` and ``mae``.

Each metric returns, for one batch, the *sum* of its per-sample (or
per-output) values as a 0-d array on the device, so that sums over an epoch
accumulate there and are read with the loss in one transfer.

``accuracy`` compares the arg-max of a multi-column output with the class
index (or with the arg-max of one-hot / probability targets); for an output
(n, ..., k) the arg-max runs over the last axis and every label (time step,
pixel) counts once.  For a single
output column it thresholds the output at 0.5, or at 0 when the loss takes
logits (``BinaryCrossEntropy(from_logits=True)``), and the target at 0.5.
With ``CrossEntropy(ignore_index=...)`` the ignored labels are not counted.
``mse`` and ``mae`` average over every output of every sample and need
targets of the output's shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

INDEX, DENSE = "index", "dense"


def _accuracy(xp: Any, pred: Any, target: Any, kind: str, threshold: float) -> Any:
    if pred.ndim == 2 and pred.shape[1] == 1:
        hit = (pred[:, 0] > threshold) == (target[:, 0] > 0.5)
    else:
        truth = target if kind == INDEX else xp.argmax(target, axis=-1)
        hit = xp.argmax(pred, axis=-1) == truth
    return hit.sum(dtype=xp.float64)


def _accuracy_counted(xp: Any, pred: Any, target: Any, ignore: int) -> Any:
    """Hits among the class labels that are not ``ignore``."""
    hit = (xp.argmax(pred, axis=-1) == target) & (target != ignore)
    return hit.sum(dtype=xp.float64)


def _squared_error(xp: Any, pred: Any, target: Any, kind: str, threshold: float) -> Any:
    difference = pred - target
    return xp.square(difference, out=difference).sum(dtype=xp.float64)


def _absolute_error(xp: Any, pred: Any, target: Any, kind: str, threshold: float) -> Any:
    difference = pred - target
    return xp.abs(difference, out=difference).sum(dtype=xp.float64)


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """How to compute one named metric."""

    name: str
    batch_sum: Callable[[Any, Any, Any, str, float], Any]
    per_output: bool
    needs_dense_target: bool


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", _accuracy, per_output=False, needs_dense_target=False),
        MetricSpec("mse", _squared_error, per_output=True, needs_dense_target=True),
        MetricSpec("mae", _absolute_error, per_output=True, needs_dense_target=True),
    )
}


class BoundMetric:
    """A metric bound to one target layout and output width, ready for the training loop."""

    def __init__(
        self, spec: MetricSpec, xp: Any, kind: str, threshold: float, outputs: int, labels: int = 1,
        *, ignore: int | None = None, counted: int | None = None,
    ) -> None:
        self.spec = spec
        self._ignore = ignore  # a class label not counted (accuracy on index targets only)
        self._counted = counted  # then: how many labels the data holds that count
        self.name = spec.name
        self._xp = xp
        self._kind = kind
        self._threshold = threshold
        self._outputs = outputs
        self._labels = labels

    def __call__(self, pred: Any, target: Any) -> Any:
        """The sum of this metric over the batch, as a 0-d device array."""
        if self._ignore is not None:
            return _accuracy_counted(self._xp, pred, target, self._ignore)
        return self.spec.batch_sum(self._xp, pred, target, self._kind, self._threshold)

    def denominator(self, samples: int) -> int:
        """What the summed values are divided by to give the mean."""
        if self._counted is not None:
            return self._counted
        return samples * (self._outputs if self.spec.per_output else self._labels)


def check_metrics(metrics: Any) -> list[str]:
    """The ``metrics`` argument as a list of known, distinct names."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    if metrics is None:
        return []
    if not isinstance(metrics, Sequence):
        raise TypeError(f"metrics: expected a sequence of metric names, got {type(metrics).__name__}")
    names: list[str] = []
    for position, name in enumerate(metrics):
        if name not in METRICS:
            raise ValueError(f"metrics[{position}]: expected one of {sorted(METRICS)}, got {name!r}")
        if name in names:
            raise ValueError(f"metrics: {name!r} is listed twice")
        names.append(name)
    return names


def bind_metrics(
    names: Sequence[str], *, xp: Any, kind: str, outputs: int, logits: bool, labels: int = 1,
    ignore_index: int | None = None, counted: int | None = None,
) -> list[BoundMetric]:
    """Bind checked metric names to a target layout (``"index"`` or ``"dense"``).

    ``outputs`` is the number of target values per sample (``mse``, ``mae``),
    ``labels`` the number of class labels per sample (``accuracy``: 1, or the
    time steps / pixels of a per-label output).  ``ignore_index`` (the loss's)
    and ``counted`` (how many labels of the data are not ignored) make
    ``accuracy`` on index targets skip the ignored labels.
    """
    bound = []
    for name in names:
        spec = METRICS[name]
        if spec.needs_dense_target and kind == INDEX:
            raise ValueError(
                f"metrics: {name!r} needs targets of the output's shape (n, {outputs}), "
                "but the targets are class indices; use 'accuracy', or one-hot targets"
            )
        skip = ignore_index if name == "accuracy" and kind == INDEX and counted is not None else None
        bound.append(BoundMetric(spec, xp, kind, 0.0 if logits else 0.5, outputs, labels,
                                 ignore=skip, counted=counted if skip is not None else None))
    return bound
