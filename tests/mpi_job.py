"""One rank of the MPI jobs that tests/test_distributed.py starts with ``mpiexec -n P``.

    mpiexec -n 2 python tests/mpi_job.py SCENARIO OUT_DIR [options]

Scenarios: ``train`` (a small float64 network, or with ``--masked`` a GRU on
padded sequences; writes ``rank<r>.npz``),
``fail`` (rank 1 raises during epoch 2), ``mismatch`` (rank 1 builds a wider
network).  The tests import :func:`problem` to train the same network in one
process for comparison.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
from typing import Any, ClassVar

import numpy as np

import bpcore
from bpcore.layers import GRU, BatchNorm, Dense, Tanh
from bpcore.optim import Adam

FIT = {"loss": "cross_entropy", "seed": 0, "metrics": ["accuracy"]}


def problem(
    samples: int = 50, *, batch_norm: bool = False, hidden: int = 16, seed: int = 0
) -> tuple[Any, ...]:
    """The network, its optimiser and the data every rank (and the one-process reference) trains."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 6))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    layers = [Dense(6, hidden), *([BatchNorm(hidden)] if batch_norm else []), Tanh(), Dense(hidden, 3)]
    network = bpcore.Network(layers, dtype="float64", seed=seed)
    return network, Adam(network.parameters(), lr=0.02), x, y


def masked_problem(samples: int = 50, *, seed: int = 0) -> tuple[Any, ...]:
    """A GRU over padded sequences with their mask: network, optimiser, x, y and the mask."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 6, size=samples)
    mask = np.arange(5)[None, :] < lengths[:, None]
    x = rng.normal(size=(samples, 5, 2))
    y = ((x[:, :, 0] * mask).sum(axis=1) > 0).astype(np.int64) + (lengths > 3).astype(np.int64)
    network = bpcore.Network([GRU(2, 8), Dense(8, 3)], dtype="float64", seed=seed)
    return network, Adam(network.parameters(), lr=0.02), x, y, mask


def state(network: Any) -> dict[str, np.ndarray]:
    """Parameters and layer buffers as NumPy arrays."""
    arrays = {"parameters": np.array(network.store.data)}
    for position, layer in enumerate(network.walk()):
        for name, value in layer.buffers().items():
            arrays[f"{position}.{name}"] = np.array(value)
    return arrays


class FakeNccl:
    """Stands in for ``cupy.cuda.nccl`` on the CPU: NCCL's calls, carried out by MPI on the memory
    their pointers name, so that a wrong count, type or pointer gives a wrong result."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0
    _TYPES: ClassVar[dict[int, Any]] = {7: ctypes.c_float, 8: ctypes.c_double}
    calls: ClassVar[list[str]] = []

    @staticmethod
    def get_unique_id() -> tuple[int, ...]:
        return tuple(int(b) for b in np.random.default_rng().integers(-128, 128, 128))

    class NcclCommunicator:
        def __init__(self, ndev: int, comm_id: tuple[int, ...], rank: int) -> None:
            from mpi4py import MPI

            self.comm = MPI.COMM_WORLD
            ids = self.comm.allgather(comm_id)
            assert len(comm_id) == 128 and all(other == ids[0] for other in ids), "unique id not shared"
            assert ndev == self.comm.Get_size() and rank == self.comm.Get_rank()

        def _view(self, pointer: int, count: int, datatype: int) -> np.ndarray:
            return np.ctypeslib.as_array((FakeNccl._TYPES[datatype] * count).from_address(pointer))

        def allReduce(  # the name of CuPy's method
            self, send: int, receive: int, count: int, datatype: int, op: int, stream: int
        ) -> None:
            from mpi4py import MPI

            assert send == receive and op == FakeNccl.NCCL_SUM and stream == 0
            FakeNccl.calls.append("allReduce")
            self.comm.Allreduce(MPI.IN_PLACE, self._view(receive, count, datatype), op=MPI.SUM)

        def bcast(self, buffer: int, count: int, datatype: int, root: int, stream: int) -> None:
            FakeNccl.calls.append("bcast")
            self.comm.Bcast(self._view(buffer, count, datatype), root=root)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["train", "fail", "mismatch"])
    parser.add_argument("out")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--validation-split", type=float, default=0.0)
    parser.add_argument("--batch-norm", action="store_true")
    parser.add_argument("--checkpoints", default=None, help="ModelCheckpoint directory (rank suffix added)")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--fake-nccl", action="store_true")
    parser.add_argument("--masked", action="store_true", help="a GRU on padded sequences, fit(mask=...)")
    args = parser.parse_args()

    from bpcore import distributed

    collectives: Any = "auto"
    if args.fake_nccl:
        from mpi4py import MPI

        collectives = distributed.NcclCollectives(
            MPI.COMM_WORLD, 0, nccl=FakeNccl, stream=lambda: 0, pointer=lambda a: a.ctypes.data, device=None
        )
    ctx = distributed.init(collectives=collectives)
    hidden = 24 if args.scenario == "mismatch" and ctx.rank == 1 else 16
    # Different seeds on purpose: fit broadcasts rank 0's parameters first.
    network, optimizer, x, y = problem(args.samples, batch_norm=args.batch_norm, hidden=hidden, seed=ctx.rank)
    masked: dict[str, Any] = {}
    if args.masked:
        network, optimizer, x, y, masked["mask"] = masked_problem(args.samples, seed=ctx.rank)
    callbacks: list[Any] = []
    if args.checkpoints:
        directory = f"{args.checkpoints}-rank{ctx.rank}"  # rank 1 must not write into its own
        callbacks.append(bpcore.ModelCheckpoint(directory, every=1, save_best=False))
    if args.scenario == "fail":
        def fail(epoch: int, logs: dict[str, float]) -> None:
            if epoch == 2 and ctx.rank == 1:
                raise RuntimeError("injected failure on rank 1")
        callbacks.append(fail)
    history = network.fit(
        x, y, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
        validation_split=args.validation_split, callbacks=callbacks, resume_from=args.resume,
        distributed=True, **FIT, **masked,
    )
    np.savez(os.path.join(args.out, f"rank{ctx.rank}.npz"), **state(network))
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as stream:
        json.dump({"history": history.history, "world": ctx.world_size, "calls": FakeNccl.calls,
                   "collectives": ctx.collectives.name, "device": str(network.device)}, stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
