"""What is timed: bpcore's training step, and its matrix products alone.

A :class:`Contender` is one way of training one model at one batch size on
one device; ``run(steps)`` performs that many complete training steps
(forward, loss, backward, optimiser), cycling through the synthetic batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..backends import KERNELS_ENV_VAR, Backend, get_backend
from .ceilings import device_clock
from .models import AnyModel, ConvModelSpec, SyntheticData
from .timing import Clock

LEARNING_RATE = 1e-3


@dataclasses.dataclass
class Contender:
    """One implementation of a training step, ready to be timed."""

    key: str  # unique within a run, e.g. "bpcore" or "torch-adam-fused"
    label: str  # what it is, with the settings that matter (optimiser, dtype)
    role: str  # "bpcore", "baseline" or "ceiling"
    device: str
    dtype: str
    run: Callable[[int], Any]
    clock: Clock
    notes: str = ""
    min_steps: int = 1  # steps of one timed call at least (e.g. a whole pass for per-call overheads)


class BatchCycle:
    """Index slicing through a fixed set of batches: ``next()`` gives the next (x, labels) pair."""

    def __init__(self, x: Any, labels: Any, batch: int) -> None:
        self.x = x
        self.labels = labels
        self.batch = batch
        self.count = x.shape[0] // batch
        self.position = 0

    def next(self) -> tuple[Any, Any]:
        start = self.position * self.batch
        self.position = (self.position + 1) % self.count
        return self.x[start : start + self.batch], self.labels[start : start + self.batch]


@contextlib.contextmanager
def kernel_mode(mode: str) -> Iterator[None]:
    """Build networks with ``mode`` kernels (``fused`` or ``generic``) inside the block."""
    previous = os.environ.get(KERNELS_ENV_VAR)
    os.environ[KERNELS_ENV_VAR] = mode
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(KERNELS_ENV_VAR, None)
        else:
            os.environ[KERNELS_ENV_VAR] = previous


def bpcore_step(spec: AnyModel, data: SyntheticData, device: str, dtype: str, *, kernels: str = "fused",
                seed: int = 0) -> Contender:
    """bpcore's own training step, exactly the loop that ``Network.fit`` runs, with Adam and cross-entropy."""
    from ..losses import CrossEntropy
    from ..network import Network
    from ..optim import Adam

    backend = get_backend(device, kernels=kernels)
    with kernel_mode(kernels):
        network = Network(spec.layers(), dtype=dtype, seed=seed, device=device)
    criterion = CrossEntropy()
    optimizer = Adam(network.parameters(), lr=LEARNING_RATE)
    batches = BatchCycle(backend.asarray(data.x, dtype=dtype), backend.asarray(data.labels), data.batch)
    losses = backend.zeros((data.batches,), np.float64)
    loss = functools.partial(criterion, check=False)  # targets are validated once by fit, not per step
    forward, backward, step = network._forward, network._backward, optimizer.step

    def run(steps: int) -> None:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for _ in range(steps):
                index = batches.position
                xb, yb = batches.next()
                out = forward(xb, True)
                losses[index] = loss(out, yb)
                backward(criterion.backward(), accumulate=False, need_input_grad=False)
                step()

    name = "bpcore" if kernels == "fused" else f"bpcore-{kernels}"
    return Contender(
        key=name,
        label=f"bpcore ({kernels} kernels), the step of Network.fit, Adam",
        role="bpcore",
        device=str(backend.device),
        dtype=str(np.dtype(dtype)),
        run=run,
        clock=device_clock(backend),
    )


def matmuls_only(spec: AnyModel, data: SyntheticData, device: str, dtype: str) -> Contender:
    """The training step's matrix products alone, into preallocated outputs: its floor.

    Per layer: the forward product, the weight gradient and (except for the
    first layer) the input gradient, at the step's exact shapes (for a
    convolution, those of its im2col formulation, as Conv2D runs them).
    """
    backend: Backend = get_backend(device)
    xp = backend.xp
    rng = np.random.default_rng(2)
    batch = data.batch

    def array(*shape: int) -> Any:
        return backend.asarray(rng.standard_normal(shape, dtype=np.float32), dtype=dtype)

    if isinstance(spec, ConvModelSpec):
        return _conv_matmuls_only(spec, backend, array, batch, dtype)
    layers = []
    for position, (fan_in, fan_out) in enumerate(spec.shapes):
        x = backend.asarray(data.x[:batch], dtype=dtype) if position == 0 else array(batch, fan_in)
        layers.append((position, x, array(fan_in, fan_out), array(batch, fan_out),
                       backend.empty((batch, fan_out), dtype), backend.empty((fan_in, fan_out), dtype),
                       backend.empty((batch, fan_in), dtype)))

    def run(steps: int) -> None:
        for _ in range(steps):
            for _, x, w, _, z, _, _ in layers:
                xp.matmul(x, w, out=z)
            for position, x, w, g, _, grad_w, grad_x in reversed(layers):
                xp.matmul(x.T, g, out=grad_w)
                if position > 0:
                    xp.matmul(g, w.T, out=grad_x)

    return Contender(
        key="matmuls",
        label="the step's matrix products alone",
        role="ceiling",
        device=str(backend.device),
        dtype=str(np.dtype(dtype)),
        run=run,
        clock=device_clock(backend),
    )


def _conv_matmuls_only(
    spec: ConvModelSpec, backend: Backend, array: Callable[..., Any], batch: int, dtype: str
) -> Contender:
    """:func:`matmuls_only` for a CNN: Conv2D's three products per convolution, then the Dense layers'.

    Each product runs on one BLAS thread where its layer runs it so
    (:func:`~bpcore.backends.blas_threads.small_product`, with Conv2D's and Dense's
    ``SMALL_PRODUCT``), else at the process's thread count.
    """
    from ..backends.blas_threads import SPLIT_FROM, one_thread
    from ..layers import conv, dense
    from ..layers.conv import weight_grad_by_columns

    def on_one_thread(multiply_adds: int, most: int) -> bool:
        return xp is np and SPLIT_FROM < multiply_adds <= most

    xp = backend.xp
    # (a, b, out, one BLAS thread) of each product, in the step's order
    products: list[tuple[Any, Any, Any, bool]] = []
    backward: list[tuple[Any, Any, Any, bool]] = []
    for position, (out_channels, width, pixels) in enumerate(spec.conv_products(batch)):
        weight, cols, grad = array(out_channels, width), array(width, pixels), array(out_channels, pixels)
        single = on_one_thread(out_channels * width * pixels, conv.SMALL_PRODUCT)
        products.append((weight, cols, backend.empty((out_channels, pixels), dtype), single))
        if weight_grad_by_columns(out_channels, width):  # as Conv2D computes it
            backward.append((cols, grad.T, backend.empty((width, out_channels), dtype), single))
        else:
            backward.append((grad, cols.T, backend.empty((out_channels, width), dtype), single))
        if position > 0:
            backward.append((weight.T, grad, backend.empty((width, pixels), dtype), single))
    for fan_in, fan_out in spec.dense:
        x, w, g = array(batch, fan_in), array(fan_in, fan_out), array(batch, fan_out)
        single = on_one_thread(batch * fan_in * fan_out, dense.SMALL_PRODUCT)
        products.append((x, w, backend.empty((batch, fan_out), dtype), single))
        backward += [(x.T, g, backend.empty((fan_in, fan_out), dtype), single),
                     (g, w.T, backend.empty((batch, fan_in), dtype), single)]
    every = products + backward[::-1]

    def run(steps: int) -> None:
        for _ in range(steps):
            for a, b, out, single in every:
                if single:
                    with one_thread():
                        xp.matmul(a, b, out=out)
                else:
                    xp.matmul(a, b, out=out)

    return Contender(
        key="matmuls",
        label="the step's matrix products alone (convolutions as im2col products)",
        role="ceiling",
        device=str(backend.device),
        dtype=str(np.dtype(dtype)),
        run=run,
        clock=device_clock(backend),
    )
