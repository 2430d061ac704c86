"""``BPCORE_KERNELS=auto``: whether a ``fit``, ``predict`` or ``evaluate`` on the CPU runs the Numba kernels.

The fused CPU kernels make a training step faster, but the first one a
process runs costs Numba's start-up (``import numba`` and its one-time
initialisation, about a second of CPU time with a warm kernel cache).  A
short run of a small network never earns that back: ``examples/digits.py``
trains for about 0.25 s.  So in ``auto`` mode (the default) each call decides
once, before its first step, from the size of its work alone:

    predicted saving = steps * (STEP + PARAMETER * parameters + TIME_STEP * recurrent time steps)
                       + rows * (FLAT * flat elements + GRID * grid elements)

where ``steps`` and ``rows`` are the planned optimiser steps and the rows
they process (``epochs`` times the training set, plus the validation
passes), and the elements are the per-sample outputs of the network's
top-level layers for the data's sample shape: *flat* for outputs of one
axis (Dense, activations), *grid* for outputs of two or more (convolutions,
pooling, sequences).  ``predict`` and ``evaluate`` have no optimiser steps
and no parameter updates: their saving is the forward share of the same
terms.  The fused kernels run when the predicted saving exceeds
``MARGIN * NUMBA_START_UP`` seconds, else the generic versions do.

The decision depends on those sizes and these constants only, never on
what the process did before (whether Numba is already loaded, earlier
calls): the same seeded call gives the same bits in any process.  A
resumed ``fit`` decides from its full ``epochs``, as the uninterrupted run
did.  The constants were measured on a 2-core CPU (README, "Cold start").

Calls of ``Network.forward`` / ``backward`` (custom loops: DQN, GANs,
benchmarks) are not decided here: in ``auto`` mode they run the fused
kernels, since such loops are long runs of small steps, where fused pays.
``BPCORE_KERNELS=fused`` and ``generic`` force one kind everywhere, and on
a GPU ``auto`` is ``fused``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any

from ..backends import get_backend
from ..layers.fusion import output_shapes
from ..layers.recurrent import Recurrent
from ..losses import Loss

# --- the cost model (seconds), calibrated by timing fused against generic training steps -----------
#: Numba's fixed cost in a process with a warm kernel cache: ``import numba``, its first-call
#: initialisation and loading a network's few kernels.
NUMBA_START_UP = 0.9
#: Fused when the predicted saving exceeds this multiple of the start-up.
MARGIN = 1.5
#: Saving per training step whatever its size (fewer Python-level operations).
STEP = 10e-6
#: Per parameter and step: the optimiser update and gradient passes over the flat buffers.
PARAMETER = 4e-9
#: Per element of a one-axis layer output and row (bias + activation, softmax cross-entropy).
FLAT = 0.2e-9
#: Per element of a layer output of two or more axes and row (im2col, pooling, channel passes).
GRID = 12e-9
#: Per recurrent layer time step and step (a fused cell instead of several array operations).
TIME_STEP = 300e-6
#: The forward pass's share of a training step's saving (predict, evaluate, validation passes).
FORWARD_SHARE = 1 / 3


@dataclasses.dataclass(frozen=True)
class WorkSize:
    """What one sample and one step cost a network: the sizes the rule reads."""

    parameters: int
    flat: int  # elements of one-axis layer outputs per sample
    grid: int  # elements of layer outputs of two or more axes per sample
    time_steps: int  # recurrent layers' time steps per sample, summed over those layers

    @classmethod
    def of(cls, network: Any, sample_shape: tuple[int, ...]) -> WorkSize:
        """The sizes of ``network`` (its top-level layers) for samples of ``sample_shape``.

        Kept per network and sample shape (a network's layers are fixed), so
        that a ``predict`` of one row pays a dictionary look-up for it.
        """
        cache = network.__dict__.setdefault("_work_sizes", {})
        found = cache.get(sample_shape)
        if found is None:
            found = cache[sample_shape] = cls._measure(network, sample_shape)
        return found

    @classmethod
    def _measure(cls, network: Any, sample_shape: tuple[int, ...]) -> WorkSize:
        flat = grid = time_steps = 0
        steps_in = int(sample_shape[0]) if len(sample_shape) >= 2 else 0  # a sequence's length
        outputs = output_shapes(network.layers, tuple(sample_shape), owner="layers")
        for layer, out in zip(network.layers, outputs, strict=True):
            recurrent = sum(isinstance(member, Recurrent) for member in (layer, *layer.walk()))
            time_steps += recurrent * steps_in
            dims = [1 if size is None else int(size) for size in (out or ())]
            if len(dims) >= 2:
                grid += math.prod(dims)
                steps_in = dims[0]
            else:
                flat += math.prod(dims)
                steps_in = 0
        return cls(int(network.store.size), flat, grid, time_steps)

    def training_saving(self, steps: int, rows: int) -> float:
        """Predicted seconds the fused kernels save over ``steps`` training steps of ``rows`` rows in all."""
        per_step = STEP + PARAMETER * self.parameters + TIME_STEP * self.time_steps
        return steps * per_step + rows * (FLAT * self.flat + GRID * self.grid)

    def inference_saving(self, steps: int, rows: int) -> float:
        """The same for forward passes in evaluation mode only (no optimiser)."""
        per_step = STEP + TIME_STEP * self.time_steps
        return FORWARD_SHARE * (steps * per_step + rows * (FLAT * self.flat + GRID * self.grid))


@dataclasses.dataclass(frozen=True)
class KernelChoice:
    """The kernels one call (``what``: fit, predict, evaluate) runs, ``fused`` or ``generic``, and why."""

    kernels: str
    what: str
    saving: float | None = None  # predicted seconds saved by the fused kernels (auto mode, CPU)
    work: str = ""  # the work the saving was predicted for, in words
    why: str = ""  # why the rule did not decide (a forced mode, a GPU)

    @property
    def reason(self) -> str:
        """The choice and its reason in one line (for the log)."""
        if self.saving is None:
            return f"{self.what}: the {self.kernels} kernels ({self.why})"
        relation = "exceeds" if self.kernels == "fused" else "does not exceed"
        return (
            f"{self.what}: BPCORE_KERNELS=auto chose the {self.kernels} kernels: their predicted saving of "
            f"{self.saving:.3g} s over {self.work} {relation} {MARGIN:g} x Numba's start-up of "
            f"{NUMBA_START_UP:g} s"
        )


def threshold() -> float:
    """The predicted saving (seconds) above which ``auto`` runs the fused kernels."""
    return MARGIN * NUMBA_START_UP


def _decide(what: str, saving: float, work: str) -> KernelChoice:
    return KernelChoice("fused" if saving > threshold() else "generic", what, saving, work)


def _forced(network: Any, what: str) -> KernelChoice | None:
    """The choice when it is not the rule's to make: a forced mode, or a GPU; None in auto mode on the CPU."""
    backend = network.backend
    if backend.kernels != "auto":
        return KernelChoice(backend.kernels, what, why="the network's mode")
    if backend.device.is_cuda:
        return KernelChoice("fused", what, why=f"BPCORE_KERNELS=auto on {backend.device}")
    return None


def for_fit(
    network: Any,
    sample_shape: tuple[int, ...],
    *,
    samples: int,
    batch_size: int | None,
    epochs: int,
    validation_samples: int = 0,
    validation_batch: int = 4096,
) -> KernelChoice:
    """The kernels a ``fit`` of ``epochs`` over ``samples`` rows in batches of ``batch_size`` runs."""
    forced = _forced(network, "fit")
    if forced is not None:
        return forced
    size = WorkSize.of(network, sample_shape)
    batch = samples if batch_size is None else min(batch_size, samples)
    steps = epochs * math.ceil(samples / max(batch, 1))
    saving = size.training_saving(steps, epochs * samples)
    if validation_samples:
        passes = epochs * math.ceil(validation_samples / validation_batch)
        saving += size.inference_saving(passes, epochs * validation_samples)
    work = (f"{steps:,} steps of {batch:,} rows ({size.parameters:,} parameters, "
            f"{size.flat + size.grid:,} output elements a sample)")
    return _decide("fit", saving, work)


def for_inference(
    network: Any, what: str, sample_shape: tuple[int, ...], *, rows: int, batch_size: int
) -> KernelChoice:
    """The kernels a ``predict`` or ``evaluate`` (``what``) over ``rows`` rows runs."""
    forced = _forced(network, what)
    if forced is not None:
        return forced
    size = WorkSize.of(network, sample_shape)
    steps = math.ceil(rows / batch_size)
    saving = size.inference_saving(steps, rows)
    return _decide(what, saving, f"{rows} rows in {steps} batches")


@contextlib.contextmanager
def bound(network: Any, choice: KernelChoice, loss: Any = None) -> Iterator[KernelChoice]:
    """Run ``network`` and ``loss`` with ``choice``'s kernels inside the block; restored on exit.

    In ``auto`` mode a ``generic`` choice binds the generic twin of the
    network's CPU backend (the same device and arrays, nothing copied) to
    the network, its layers and its parameter store (the optimiser follows
    the store).  A bpcore ``loss`` computes with the network's backend (or
    its twin) inside the block, whatever ``BPCORE_KERNELS`` says when it is
    called.  The caller holds the network's lock, so no other thread sees
    the twin.
    """
    backend = network.backend
    twin = backend
    if choice.kernels != "fused" and backend.kernels != choice.kernels:
        twin = get_backend(backend.device, kernels=choice.kernels)
    binds_loss = isinstance(loss, Loss)
    previous_loss = loss._backend if binds_loss else None
    try:
        if twin is not backend:
            network._use_kernels(twin)
        if binds_loss:
            loss._backend = twin
        yield choice
    finally:
        if twin is not backend and network.backend is twin:  # (a callback may have moved the network)
            network._use_kernels(backend)
        if binds_loss:
            loss._backend = previous_loss
