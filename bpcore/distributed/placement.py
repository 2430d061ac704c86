"""Which device each rank of a job uses, and whether the ranks can join one NCCL communicator.

The decisions are made on every rank from what all ranks report
(``allgather``), so that every rank takes the same branch: a rank that set
up NCCL while another chose MPI would pair NCCL's rendezvous broadcast with
the other rank's next collective.  The functions below that take lists are
pure, so each rule is tested without MPI or a GPU; :func:`gpu_bus_id` is the
one call into CuPy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..backends import ENV_VAR, Device, DeviceError, DeviceLike, probe_cuda, resolve_device
from .collectives import DistributedError, nccl_module

#: The device names that give each rank the GPU of its local rank.
BY_LOCAL_RANK = ("cuda", "gpu", "auto")


def requested_device(device: DeviceLike | None) -> tuple[DeviceLike, str]:
    """The device asked for (``device``, else ``BPCORE_DEVICE``, else ``cpu``) and where it came from."""
    origin = "init(device)" if device is not None else f"environment variable {ENV_VAR}"
    if isinstance(device, Device):
        return device, origin
    name = (device if device is not None else os.environ.get(ENV_VAR, "")).strip().lower() or "cpu"
    return name, origin


def choose_device(device: DeviceLike | None, local_rank: int, local_size: int) -> Device:
    """This rank's device: ``cuda``/``gpu`` (and ``auto`` with GPUs) mean ``cuda:<local rank>``.

    ``device`` defaults to ``BPCORE_DEVICE`` (``cpu`` when unset, as everywhere
    in bpcore); ``cpu`` and an explicit ``cuda:N`` are taken as they are.  A
    host that shows a rank fewer GPUs than it has local ranks (a launcher that
    gives each rank its own GPU through ``CUDA_VISIBLE_DEVICES`` shows one)
    gives local rank ``r`` GPU ``r % count``; :func:`placement_problem` then
    refuses two ranks that land on one physical GPU.
    """
    wanted, origin = requested_device(device)
    if isinstance(wanted, Device):
        return resolve_device(wanted, origin=origin)
    count = probe_cuda().count
    if wanted in ("cuda", "gpu") or (wanted == "auto" and count > 0):
        return resolve_device(f"cuda:{local_rank % count}" if count else "cuda", origin=origin)
    return resolve_device(wanted, origin=origin)


def by_local_rank(device: DeviceLike | None) -> bool:
    """Whether ``device`` (or ``BPCORE_DEVICE``) leaves the choice of GPU to the local rank."""
    wanted, _ = requested_device(device)
    return isinstance(wanted, str) and wanted in BY_LOCAL_RANK


def gpu_bus_id(device: Device) -> str | None:
    """The PCI bus id of ``device``'s GPU (the same physical GPU has the same id in every process)."""
    if not device.is_cuda:
        return None
    import cupy

    return str(cupy.cuda.Device(device.index).pci_bus_id)


def sharing_ranks(bus_ids: Sequence[str | None], local_rank: int) -> list[int]:
    """The local ranks whose GPU is this local rank's GPU (empty if it has it alone, or has none)."""
    mine = bus_ids[local_rank]
    if mine is None:
        return []
    sharing = [rank for rank, bus in enumerate(bus_ids) if bus == mine]
    return sharing if len(sharing) > 1 else []


def placement_problem(bus_ids: Sequence[str | None], local_rank: int, local_size: int,
                      implied: bool, device: Device) -> str | None:
    """Why this rank's GPU placement is refused, or None.

    Only a placement bpcore chose (``cuda``, ``gpu``, ``auto``) is refused
    when it puts several ranks on one GPU; one that names ``cuda:N`` is the
    user's choice (NCCL then cannot be used, see :func:`nccl_obstacle`).
    """
    sharing = sharing_ranks(bus_ids, local_rank)
    if not implied or not sharing:
        return None
    count = len({bus for bus in bus_ids if bus is not None})
    return (
        f"local ranks {sharing} of the {local_size} ranks on one host would share {device} (PCI bus "
        f"{bus_ids[local_rank]}): {count} GPU(s) there; start at most {count} ranks per host, give each "
        f"rank its own GPU (CUDA_VISIBLE_DEVICES), or name each rank's device with {ENV_VAR}=cuda:N"
    )


def nccl_obstacle(device: Device, bus_ids: Sequence[str | None], local_rank: int) -> str | None:
    """Why this rank cannot join an NCCL communicator, or None.

    NCCL needs a GPU per rank (it refuses two ranks on one GPU with
    ``ncclInvalidUsage``) and its library loaded by CuPy.
    """
    if not device.is_cuda:
        return f"its device is {device}"
    sharing = sharing_ranks(bus_ids, local_rank)
    if sharing:
        bus = bus_ids[local_rank]
        return f"local ranks {sharing} share its GPU (PCI bus {bus}), and NCCL needs one GPU per rank"
    try:
        nccl_module()
    except DistributedError as exc:
        return str(exc)
    return None


def first_problem(problems: Sequence[str | None]) -> tuple[int, str] | None:
    """The first rank that reported a problem, and the problem; None if none did."""
    for rank, problem in enumerate(problems):
        if problem is not None:
            return rank, problem
    return None


def refuse_placement(problems: Sequence[str | None]) -> None:
    """Raise DeviceError, on every rank alike, if any rank's placement was refused."""
    found = first_problem(problems)
    if found is not None:
        rank, problem = found
        others = sum(p is not None for p in problems) - 1
        more = f" (and {others} more rank(s))" if others else ""
        raise DeviceError(f"rank {rank}{more}: {problem}")


def use_nccl(requested: str, obstacles: Sequence[str | None]) -> bool:
    """Whether the job uses NCCL: ``"nccl"`` needs every rank able to (else DistributedError on every
    rank), ``"auto"`` uses it when every rank can, ``"mpi"`` never."""
    if requested == "mpi":
        return False
    found = first_problem(obstacles)
    if found is None:
        return True
    if requested == "nccl":
        rank, obstacle = found
        raise DistributedError(f"collectives='nccl': rank {rank} cannot use NCCL: {obstacle}")
    return False
