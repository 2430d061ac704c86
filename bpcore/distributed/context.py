"""Joining an MPI job: this process's rank, the world size, its device and what happens on failure.

:func:`init` is called once per process (``fit(..., distributed=True)`` calls
it when needed).  It reads the rank and the world size from MPI, gives each
rank its device, creates the communicator for that device and makes a rank
that raises abort the whole job.  What it sets up is the process's place in
the MPI job, which MPI itself holds per process; bpcore keeps one
:class:`Context` for it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from typing import Any

from ..backends import Device, DeviceLike, set_device
from .collectives import Collectives, DistributedError, MpiCollectives, NcclCollectives
from .placement import (
    by_local_rank,
    choose_device,
    gpu_bus_id,
    nccl_obstacle,
    placement_problem,
    refuse_placement,
    use_nccl,
)

logger = logging.getLogger("bpcore")

MPI_INSTALL_HINT = "pip install 'bpcore[mpi]' (mpi4py and MPICH, which provides mpiexec)"
COLLECTIVES = ("auto", "mpi", "nccl")


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place in the job."""

    comm: Any  #: the mpi4py communicator of the job
    rank: int
    world_size: int
    local_rank: int  #: the rank among the processes on this host
    local_size: int
    device: Device  #: this rank's device (also made bpcore's default device)
    collectives: Collectives  #: for arrays on ``device`` (NCCL on GPUs where available)
    host_collectives: MpiCollectives  #: MPI, for host arrays

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def collectives_for(self, backend: Any) -> Collectives:
        """The collectives for arrays on ``backend``: this rank's device's, or MPI for host arrays."""
        device = backend.device
        if device == self.device:
            return self.collectives
        if device.is_cuda and isinstance(self.collectives, NcclCollectives):
            raise DistributedError(
                f"rank {self.rank}: the network is on {device} but this rank's NCCL communicator is on "
                f"{self.device}; create the network after bpcore.distributed.init(), or move it with "
                "network.to(bpcore.distributed.device())"
            )
        return self.host_collectives


_context: Context | None = None
_lock = threading.Lock()


def import_mpi() -> Any:
    """mpi4py's ``MPI`` module (initialises MPI), or DistributedError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"bpcore.distributed needs mpi4py ({exc}); install it: {MPI_INSTALL_HINT}"
        ) from exc
    return MPI


class _RootOnly(logging.Filter):
    """On ranks other than 0: bpcore's warnings and errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


#: Seconds between a failing rank's traceback and its ``Abort``: MPICH's launcher kills every rank at the
#: first ``Abort`` and drops output it has not forwarded yet (measured: 3 ranks failing alike at once on
#: 2 cores printed all, some or none of their 3 tracebacks), so a rank gives its output time to get out.
ABORT_GRACE_SECONDS = 1.0


def _abort_on_uncaught(comm: Any, rank: int, size: int) -> None:
    """Make an uncaught exception on this rank print its traceback and abort the whole job."""
    previous = sys.excepthook

    def abort(kind: Any, value: Any, traceback: Any) -> None:
        try:
            sys.stderr.write(f"bpcore.distributed: rank {rank} of {size} failed; aborting all {size} ranks\n")
            previous(kind, value, traceback)
            sys.stderr.flush()
            time.sleep(ABORT_GRACE_SECONDS)
        finally:
            comm.Abort(1)

    sys.excepthook = abort


def init(
    *,
    device: DeviceLike | None = None,
    collectives: str | Collectives = "auto",
    comm: Any = None,
    abort_on_error: bool = True,
) -> Context:
    """Join the MPI job this process was started in (``mpiexec -n P python script.py``).

    * ``device``: this rank's device; by default ``BPCORE_DEVICE``, where
      ``cuda`` (or ``auto`` on a machine with GPUs) gives each rank
      ``cuda:<local rank>`` (modulo the GPUs it sees, so that a launcher
      giving each rank its own GPU through ``CUDA_VISIBLE_DEVICES`` works);
      two ranks placed so on one physical GPU are refused (DeviceError on
      every rank).  It becomes bpcore's default device, so networks created
      afterwards live there.
    * ``collectives``: ``"auto"`` (NCCL when every rank has a GPU of its own
      and CuPy has NCCL, else MPI on every rank), ``"mpi"`` (on GPUs through
      the host), ``"nccl"`` (DistributedError on every rank when some rank
      cannot use it, saying which and why), or an object with
      ``all_reduce_sum`` and ``broadcast``.
    * ``comm``: an mpi4py communicator (default ``MPI.COMM_WORLD``).
    * ``abort_on_error``: an exception that no code catches prints its
      traceback on stderr and, a second later (:data:`ABORT_GRACE_SECONDS`,
      so that the launcher forwards it), aborts every rank
      (``comm.Abort(1)``), so a failing rank never leaves the others waiting
      in a collective.

    A second call returns the first call's context.  Started without
    ``mpiexec``, the process is a job of one rank.
    """
    global _context
    with _lock:
        if _context is not None:
            return _context
        if isinstance(collectives, str) and collectives not in COLLECTIVES:
            raise ValueError(
                f"collectives: expected one of {list(COLLECTIVES)} or an object, got {collectives!r}"
            )
        MPI = import_mpi()
        comm = MPI.COMM_WORLD if comm is None else comm
        rank, size = int(comm.Get_rank()), int(comm.Get_size())
        if abort_on_error:
            _abort_on_uncaught(comm, rank, size)
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
        try:
            local_rank, local_size = int(local.Get_rank()), int(local.Get_size())
            chosen = choose_device(device, local_rank, local_size)
            # Every rank learns where the ranks of its host are, then what every rank found, so that
            # all of them refuse, or choose NCCL or MPI, alike (see placement.py).
            bus_ids = local.allgather(gpu_bus_id(chosen))
        finally:
            local.Free()
        implied = by_local_rank(device)
        refuse_placement(comm.allgather(placement_problem(bus_ids, local_rank, local_size, implied, chosen)))
        set_device(chosen)
        host = MpiCollectives(comm)
        chosen_collectives: Collectives = host
        if not isinstance(collectives, str):
            chosen_collectives = collectives
        elif collectives != "mpi":
            obstacles = comm.allgather(nccl_obstacle(chosen, bus_ids, local_rank))
            if use_nccl(collectives, obstacles):
                chosen_collectives = NcclCollectives(comm, chosen.index)
        if rank != 0:
            logging.getLogger("bpcore").addFilter(_RootOnly())
        _context = Context(comm, rank, size, local_rank, local_size, chosen, chosen_collectives, host)
        logger.info(
            "distributed: rank %d of %d (local rank %d of %d) on %s, collectives %s",
            rank, size, local_rank, local_size, chosen, chosen_collectives.name,
        )
        return _context


def context() -> Context:
    """The context of :func:`init`; RuntimeError if it has not been called."""
    if _context is None:
        raise RuntimeError("bpcore.distributed: call bpcore.distributed.init() first")
    return _context


def is_initialized() -> bool:
    return _context is not None


def rank() -> int:
    """This process's rank in the job (0 .. world_size() - 1)."""
    return context().rank


def world_size() -> int:
    """The number of ranks in the job."""
    return context().world_size


def device() -> Device:
    """This rank's device."""
    return context().device
