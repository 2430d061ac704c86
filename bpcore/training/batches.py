"""Mini-batches for the training loop, gathered without per-step allocation.

The sample order is drawn on the host from a seeded generator, so the same
seed gives the same batches on every device.  Shuffled batches are gathered
with ``take(..., out=buffer)`` into buffers allocated once: on the host for
host data (then copied into a device buffer allocated once, when the network
is on a GPU), on the device for device data.  Without shuffling, batches are
contiguous views and nothing is gathered; a full batch is moved to the
device once for the whole of training.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backends import Backend
from .data import Dataset


def batch_bounds(samples: int, batch_size: int, *, merge_single: bool) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch; a trailing batch of one sample joins the previous one
    when ``merge_single`` (batch statistics need at least two samples)."""
    bounds = [(start, min(start + batch_size, samples)) for start in range(0, samples, batch_size)]
    if merge_single and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        start, _ = bounds[-2]
        bounds[-2:] = [(start, samples)]
    return bounds


class _Stage:
    """Copies host arrays into device buffers allocated once per slot and shape (identity on the CPU).

    ``slot`` names what the array is (``"x"``, ``"y"``, ``"mask"``): features
    and targets of one shape and dtype (a network whose output is as wide as
    its input) must not share a buffer, or the targets' copy would overwrite
    the features of the same batch.
    """

    def __init__(self, source: Backend, target: Backend) -> None:
        self._identity = source is target or not target.device.is_cuda
        self._target = target
        self._buffers: dict[tuple[str, tuple[int, ...], Any], Any] = {}

    def __call__(self, array: Any, slot: str) -> Any:
        if self._identity:
            return array
        key = (slot, tuple(array.shape), array.dtype)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = self._target.empty(array.shape, array.dtype)
        buffer.set(np.ascontiguousarray(array))  # queued on the device's stream after the last step's work
        return buffer


class Batches:
    """The batches of one ``fit``: ``for xb, yb, mb in batches.epoch(): ...`` (``mb``: the mask or None)."""

    def __init__(
        self,
        data: Dataset,
        network_backend: Backend,
        *,
        batch_size: int | None,
        shuffle: bool,
        rng: np.random.Generator,
        merge_single: bool,
    ) -> None:
        n = len(data)
        size = n if batch_size is None else min(int(batch_size), n)
        self.data = data
        self.full = size >= n
        self.bounds = [(0, n)] if self.full else batch_bounds(n, size, merge_single=merge_single)
        self.shuffle = bool(shuffle) and not self.full  # one full batch: the order changes nothing
        self._rng = rng
        self._stage = _Stage(data.backend, network_backend)
        self._xp = data.backend.xp
        self._order = np.arange(n, dtype=np.int64)
        self._device_order: Any = None
        self._x_buffers: dict[int, Any] = {}
        self._y_buffers: dict[int, Any] = {}
        self._mask_buffers: dict[int, Any] = {}
        self._full: tuple[Any, Any, Any] | None = None  # one full batch, staged at the first epoch

    @property
    def steps(self) -> int:
        return len(self.bounds)

    def sizes(self) -> list[int]:
        return [stop - start for start, stop in self.bounds]

    def _buffer(self, store: dict[int, Any], source: Any, rows: int) -> Any:
        buffer = store.get(rows)
        if buffer is None:
            buffer = store[rows] = self._xp.empty((rows, *source.shape[1:]), dtype=source.dtype)
        return buffer

    def epoch(self) -> Iterator[tuple[Any, Any, Any]]:
        """The batches of one epoch ``(x, y, mask or None)``, in a fresh order when shuffling."""
        if self.full:
            if self._full is None:  # once for the whole fit
                stage, mask = self._stage, self.data.mask
                self._full = (stage(self.data.x, "x"), stage(self.data.y, "y"),
                              None if mask is None else stage(mask, "mask"))
            yield self._full
            return
        data, stage = self.data, self._stage
        mask = data.mask
        if not self.shuffle:
            for start, stop in self.bounds:
                mb = None if mask is None else stage(mask[start:stop], "mask")
                yield stage(data.x[start:stop], "x"), stage(data.y[start:stop], "y"), mb
            return
        self._rng.shuffle(self._order)
        order = self._order
        if data.on_device:
            if self._device_order is None:
                self._device_order = data.backend.asarray(order)
            else:
                self._device_order.set(order)
            order = self._device_order
        take = self._xp.take
        for start, stop in self.bounds:
            rows = stop - start
            index = order[start:stop]
            xb = take(data.x, index, axis=0, out=self._buffer(self._x_buffers, data.x, rows))
            yb = take(data.y, index, axis=0, out=self._buffer(self._y_buffers, data.y, rows))
            mb = None if mask is None else take(mask, index, axis=0,
                                                out=self._buffer(self._mask_buffers, mask, rows))
            yield stage(xb, "x"), stage(yb, "y"), None if mb is None else stage(mb, "mask")
