"""``predict`` and ``evaluate``: the network in evaluation mode, in batches."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import checks
from ..interop import import_array
from . import kernel_choice
from .batches import _Stage
from .data import (
    Dataset,
    check_loss,
    counted_labels,
    ignored_label,
    label_counts,
    prepare,
    storage_backend,
    takes_logits,
    target_sizes,
)
from .metrics import BoundMetric, bind_metrics, check_metrics

DEFAULT_BATCH_SIZE = 4096

logger = logging.getLogger("bpcore")


def check_batch_size(batch_size: Any, *, allow_none: bool, argument: str = "batch_size") -> int | None:
    if batch_size is None and allow_none:
        return None
    expected = "None (one full batch) or a positive integer" if allow_none else "a positive integer"
    return checks.integer(batch_size, argument, minimum=1, expected=expected)


def resolve_loss(loss: Any) -> Any:
    """A loss object from an instance or a name such as ``"mse"`` (see :func:`bpcore.losses.get`)."""
    from .. import losses

    if isinstance(loss, (str, dict)):
        return losses.get(loss)
    check_loss(loss)
    return loss


def unchecked(loss: Any) -> Callable[[Any, Any], Any]:
    """``loss`` called without re-checking targets that were validated once up front."""
    from .. import losses

    return functools.partial(loss, check=False) if isinstance(loss, losses.Loss) else loss


def loss_weights(loss: Any, sizes: Sequence[int], samples: int) -> np.ndarray:
    """Weights turning per-batch loss values into the loss over all samples.

    For ``reduction="mean"`` each batch counts in proportion to its size, which
    gives exactly the mean over all samples; for ``"sum"`` the batch sums add up.
    """
    if getattr(loss, "reduction", "mean") == "sum":
        return np.ones(len(sizes), dtype=np.float64)
    return np.asarray(sizes, dtype=np.float64) / samples


def predict(
    network: Any, x: Any, *, mask: Any = None, lengths: Any = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> Any:
    """The network's outputs for ``x`` (n, features) in evaluation mode, ``batch_size`` rows at a time.

    Returns an array of the network's array module: NumPy for a network on
    the CPU, CuPy (on the network's GPU) for a network on a GPU, whatever
    ``x`` was; ``bpcore.backends`` ``to_numpy`` or ``cupy.asnumpy`` bring it
    to the host.  Dropout is off and batch normalisation uses its running
    statistics.  The result is a new array owned by the caller.  Padded
    sequences: ``mask`` (boolean (n, T), True at real steps) or ``lengths``
    (n,), as in :meth:`bpcore.Network.forward`.
    """
    size = check_batch_size(batch_size, allow_none=False)
    assert size is not None
    with network.exclusive(), contextlib.ExitStack() as scope:
        imported = import_array(x, argument="x")
        backend = storage_backend(network, imported)
        features = network.as_input(imported, backend=backend)
        real = network.as_mask(mask, lengths=lengths, shape=features.shape)
        n = int(features.shape[0])
        for rows in {min(n, size), n % size or min(n, size)}:  # the sizes of the batches to come
            network.check_forward_batch(rows)
        choice = kernel_choice.for_inference(network, "predict", tuple(features.shape[1:]), rows=n,
                                             batch_size=size)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(choice.reason)
        scope.enter_context(kernel_choice.bound(network, choice))
        stage = _Stage(backend, network.backend)
        if n <= size:
            return network._forward(stage(features, "x"), False, real).copy()
        out: Any = None
        for start in range(0, n, size):
            stop = min(start + size, n)
            batch = network._forward(stage(features[start:stop], "x"), False, _rows(real, start, stop))
            if out is None:
                out = network.backend.empty((n, *batch.shape[1:]), batch.dtype)
            out[start:stop] = batch
        return out


def _rows(mask: Any, start: int, stop: int) -> Any:
    return None if mask is None else mask[start:stop]


def evaluation_sums(
    network: Any, data: Dataset, loss: Any, metrics: Sequence[BoundMetric], batch_size: int
) -> Any:
    """A float64 device vector: the loss over ``data``, then each metric's sum; no host synchronisation."""
    xp = network.backend.xp
    n = len(data)
    sizes = [min(start + batch_size, n) - start for start in range(0, n, batch_size)]
    weights = loss_weights(loss, sizes, n)
    counts = label_counts(data, loss) if getattr(loss, "reduction", "mean") == "mean" else None
    if counts is not None and counts.sum() > 0:
        # The mean over the labels that count: each batch weighs by its own count of them.
        per_batch = np.add.reduceat(counts, np.arange(0, n, batch_size))
        weights = per_batch / counts.sum()
    call = unchecked(loss)
    stage = _Stage(data.backend, network.backend)
    totals = xp.zeros(1 + len(metrics), dtype=np.float64)
    for start, size, weight in zip(range(0, n, batch_size), sizes, weights, strict=True):
        xb, yb = stage(data.x[start : start + size], "x"), stage(data.y[start : start + size], "y")
        mb = None if data.mask is None else stage(data.mask[start : start + size], "mask")
        pred = network._forward(xb, False, mb)
        if weight or counts is None:  # a batch whose labels are all ignored has a NaN mean, weight 0
            totals[0] += call(pred, yb) * float(weight)
        for position, metric in enumerate(metrics, start=1):
            totals[position] += metric(pred, yb)
    return totals


def summarise(
    host_totals: np.ndarray, metrics: Sequence[BoundMetric], samples: int, prefix: str = ""
) -> dict[str, float]:
    """Turn the vector of :func:`evaluation_sums` (read on the host) into named means."""
    values = {f"{prefix}loss": float(host_totals[0])}
    for position, metric in enumerate(metrics, start=1):
        values[f"{prefix}{metric.name}"] = float(host_totals[position]) / metric.denominator(samples)
    return values


def evaluate(
    network: Any,
    x: Any,
    y: Any,
    *,
    loss: Any,
    metrics: Sequence[str] = (),
    mask: Any = None,
    lengths: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, float]:
    """``{"loss": ..., <metric>: ...}`` on ``(x, y)`` in evaluation mode, as Python floats.

    The loss is what ``loss(network.predict(x), y)`` would give (the mean or
    the sum, following the loss's reduction), computed in batches; metrics
    are ``"accuracy"``, ``"mse"`` and ``"mae"`` (see :mod:`bpcore.training.metrics`).
    Reads the device once.  ``mask`` or ``lengths``: as in :func:`predict`
    (the mask picks the steps the layers read; per-step losses skip padding
    through their labels, e.g. ``CrossEntropy(ignore_index=-100)``).
    """
    loss = resolve_loss(loss)
    names = check_metrics(metrics)
    size = check_batch_size(batch_size, allow_none=False)
    assert size is not None
    with network.exclusive(), contextlib.ExitStack() as scope:
        data = prepare(network, x, y, loss=loss, mask=mask, lengths=lengths)
        choice = kernel_choice.for_inference(network, "evaluate", tuple(data.x.shape[1:]), rows=len(data),
                                             batch_size=size)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(choice.reason)
        scope.enter_context(kernel_choice.bound(network, choice, loss))
        outputs, labels = target_sizes(data, network)
        bound = bind_metrics(names, xp=network.backend.xp, kind=data.kind, outputs=outputs,
                             logits=takes_logits(loss), labels=labels, ignore_index=ignored_label(loss),
                             counted=counted_labels(data, loss))
        totals = evaluation_sums(network, data, loss, bound, size)
        return summarise(network.backend.to_numpy(totals), bound, len(data))
