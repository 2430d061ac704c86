"""What ``fit(..., distributed=True)`` does differently: PyTorch's DistributedSampler + DDP semantics.

* Every rank holds the whole data set and draws the same seeded sample order
  each epoch; the global batches are exactly those of a single process with
  the same ``batch_size`` and ``seed``, and each rank takes its disjoint,
  contiguous share of every global batch (``np.array_split``: the first
  ``b % p`` ranks take one sample more).
* After each backward pass the flat gradient buffer is scaled by the rank's
  share of the batch (``share / b`` for a mean loss) and summed over the
  ranks in ONE all-reduce, so every rank holds the gradient of the whole
  batch, as one process would, and takes the identical optimiser step.
* Rank 0's parameters and buffers are broadcast at the start (after a resume
  too); the ranks' networks, data sizes and settings are checked to agree.
* The epoch's loss and metric sums and the validation sums (each rank
  evaluates its share of the validation set) are summed over the ranks: every
  rank sees the same logs, so early stopping, schedules and divergence
  checks decide alike, and a callback's request to stop on any rank stops all.
* BatchNorm normalises each rank's share with that share's statistics (as
  DDP does without SyncBatchNorm); the running statistics are rank 0's,
  broadcast at the end of every epoch, so all ranks evaluate and end alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..training.batches import Batches
from ..training.data import Dataset
from ..training.inference import evaluation_sums
from .collectives import DistributedError
from .context import Context, init
from .network_sync import broadcast_buffers, broadcast_parameters, check_same_network, fingerprint


def share_bounds(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of the samples ``start:stop`` (sizes differ by at most one)."""
    size, extra = divmod(stop - start, world_size)
    lo = start + rank * size + min(rank, extra)
    return lo, lo + size + (1 if rank < extra else 0)


def _arrays(data: Dataset) -> tuple[Any, ...]:
    """What the ranks must agree on: features, targets and (for padded sequences) the mask."""
    return (data.x, data.y) if data.mask is None else (data.x, data.y, data.mask)


class ShardedBatches(Batches):
    """The global batches of one ``fit``, of which this rank gets its share.

    ``bounds`` and ``sizes()`` are this rank's shares (positions in the global
    sample order), ``global_sizes()`` the global batches; the sample order and
    its generator are the global ones, so a checkpoint resumes on any number
    of ranks.
    """

    def __init__(self, data: Dataset, network_backend: Backend, *, rank: int, world_size: int,
                 **options: Any) -> None:
        super().__init__(data, network_backend, **options)  # the global batches, as in one process
        self.global_bounds = list(self.bounds)
        self.bounds = [share_bounds(start, stop, rank, world_size) for start, stop in self.global_bounds]
        if self.full:  # a full batch: this rank's share, a contiguous slice staged per epoch, unshuffled
            self.full = False
            self.shuffle = False

    def global_sizes(self) -> list[int]:
        return [stop - start for start, stop in self.global_bounds]


class DataParallel:
    """The hooks ``fit`` calls when ``distributed=True`` (one object per ``fit`` call)."""

    def __init__(self, ctx: Context, network: Any) -> None:
        self.ctx = ctx
        self.network = network
        self.collectives = ctx.collectives_for(network.backend)
        self.is_root = ctx.is_root
        self.factors: list[float] = []
        self.empty_steps: frozenset[int] = frozenset()
        self._buffers = any(layer.buffers() for layer in network.walk())

    @classmethod
    def start(cls, network: Any) -> DataParallel:
        """Join the job (:func:`init` with its defaults, unless already done)."""
        return cls(init(), network)

    # --- before training ---------------------------------------------------------
    def agree_on_seed(self, seed: int | None) -> int:
        """The shuffling seed of every rank: ``seed``, or one drawn on rank 0 when it is None."""
        if seed is None and self.is_root:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        return int(self.ctx.comm.bcast(seed, root=0))

    def check(
        self, network: Any, data: Dataset, validation: Dataset | None, settings: dict[str, Any]
    ) -> None:
        """Raise DistributedError on every rank unless all ranks train the same network on the same data."""
        check_same_network(network)
        mine = {
            **settings,
            "samples": len(data),
            "data": fingerprint(*_arrays(data)),
            "validation samples": 0 if validation is None else len(validation),
            "validation data": None if validation is None else fingerprint(*_arrays(validation)),
        }
        everyone = self.ctx.comm.allgather(mine)
        for other, theirs in enumerate(everyone):
            differ = sorted(key for key in mine if theirs.get(key) != everyone[0].get(key))
            if differ:
                detail = "; ".join(f"{key}: rank 0 {everyone[0][key]!r}, rank {other} {theirs[key]!r}"
                                   for key in differ)
                raise DistributedError(
                    f"fit(distributed=True): the ranks disagree ({detail}). Every rank must call fit with "
                    "the whole data set (each takes its own share of every batch) and the same settings"
                )

    def batches(self, data: Dataset, backend: Backend, *, batch_size: int | None, shuffle: bool,
                rng: np.random.Generator, merge_single: bool, loss: Any) -> ShardedBatches:
        """This rank's shares of the global batches, and each step's gradient weight."""
        batches = ShardedBatches(data, backend, batch_size=batch_size, shuffle=shuffle, rng=rng,
                                 merge_single=merge_single, rank=self.ctx.rank,
                                 world_size=self.ctx.world_size)
        shares, totals = batches.sizes(), batches.global_sizes()
        if merge_single and any(share == 1 for share in shares):
            step = shares.index(1)
            raise ValueError(
                f"batch_size: BatchNorm needs at least 2 samples per rank in training, but rank "
                f"{self.ctx.rank}'s share of global batch {step + 1} ({totals[step]} samples over "
                f"{self.ctx.world_size} ranks) is 1 sample; use a batch size of at least "
                f"{2 * self.ctx.world_size} and a number of samples that leaves a last batch of at least that"
            )
        mean = getattr(loss, "reduction", "mean") != "sum"
        self.factors = [share / total if mean else 1.0 for share, total in zip(shares, totals, strict=True)]
        self.empty_steps = frozenset(step for step, share in enumerate(shares) if share == 0)
        return batches

    def begin(self, network: Any) -> None:
        """Every rank starts from rank 0's parameters and buffers (after a resume, too)."""
        broadcast_parameters(network)

    # --- during training ---------------------------------------------------------
    def reduce_gradients(self, step: int) -> None:
        """Weight this rank's gradient by its share of global batch ``step`` and sum over the ranks."""
        grad = self.network.store.grad
        factor = self.factors[step]
        if factor != 1.0:
            grad *= factor
        self.collectives.all_reduce_sum(grad, self.network.backend)

    def empty_step(self, step: int, losses: Any, metric_sums: Any) -> None:
        """A global batch smaller than the world: this rank has no sample, it adds a zero gradient."""
        losses[step] = 0.0
        metric_sums[:, step] = 0.0
        self.network.store.grad.fill(0)
        self.collectives.all_reduce_sum(self.network.store.grad, self.network.backend)

    def end_of_steps(self) -> None:
        """After an epoch's steps: rank 0's running statistics to every rank."""
        if self._buffers:
            broadcast_buffers(self.network, self.collectives)

    def evaluation_sums(
        self, network: Any, validation: Dataset, loss: Any, metrics: Any, batch_size: int
    ) -> Any:
        """This rank's contribution to the validation sums: its contiguous share of the validation set."""
        lo, hi = share_bounds(0, len(validation), self.ctx.rank, self.ctx.world_size)
        sums = evaluation_sums(network, validation.take(lo, hi), loss, metrics, batch_size)
        if hi > lo and getattr(loss, "reduction", "mean") != "sum":
            sums[0] *= (hi - lo) / len(validation)
        return sums

    def reduce_summary(self, host: np.ndarray) -> np.ndarray:
        """The epoch's summary vector summed over the ranks (position 1: all parameters finite everywhere)."""
        total = self.sum(host)
        total[1] = float(total[1] == self.ctx.world_size)
        return total

    def sum(self, host: np.ndarray) -> np.ndarray:
        """A host vector summed over the ranks (a new array)."""
        total = np.ascontiguousarray(host, dtype=np.float64).copy()
        self.ctx.host_collectives.all_reduce_sum(total, self.network.backend)
        return total

    def agree_to_stop(self, stoppers: list[str]) -> list[str]:
        """The callbacks that asked to stop on the first rank where any did (empty: none did)."""
        for names in self.ctx.comm.allgather(stoppers):
            if names:
                return list(names)
        return []

