"""The two collective operations data parallelism needs: sum in place, and broadcast.

:class:`MpiCollectives` runs them through MPI (mpi4py) on NumPy arrays, in
place (``MPI.IN_PLACE``); arrays on a GPU are staged through the host, which
works with any MPI but costs two copies.  :class:`NcclCollectives` runs them
through NVIDIA's NCCL on the GPU (CuPy's ``cupy.cuda.nccl`` bindings), on the
current CUDA stream, with MPI used once for the rendezvous: rank 0 draws
NCCL's unique id and broadcasts it, as ``cupyx.distributed``'s MPI mode does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..backends import Backend


class DistributedError(RuntimeError):
    """The ranks of a job disagree, or a distributed set-up is missing or unusable."""


class Collectives(Protocol):
    """What bpcore needs from a communicator: an in-place sum and a broadcast over all ranks."""

    name: str

    def all_reduce_sum(self, array: Any, backend: Backend) -> None: ...

    def broadcast(self, array: Any, backend: Backend, root: int = 0) -> None: ...


class MpiCollectives:
    """Collectives through MPI on host memory (``Allreduce`` with ``IN_PLACE``, ``Bcast``)."""

    name = "mpi"

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self.comm = comm
        self._in_place = MPI.IN_PLACE
        self._sum = MPI.SUM

    def all_reduce_sum(self, array: Any, backend: Backend) -> None:
        if isinstance(array, np.ndarray):
            self.comm.Allreduce(self._in_place, array, op=self._sum)
            return
        host = backend.to_numpy(array)  # a GPU array: through the host
        self.comm.Allreduce(self._in_place, host, op=self._sum)
        array.set(host)

    def broadcast(self, array: Any, backend: Backend, root: int = 0) -> None:
        if isinstance(array, np.ndarray):
            self.comm.Bcast(array, root=root)
            return
        host = np.ascontiguousarray(backend.to_numpy(array))
        self.comm.Bcast(host, root=root)
        array.set(host)


def _cupy_stream() -> int:
    import cupy

    return int(cupy.cuda.get_current_stream().ptr)


def _cupy_pointer(array: Any) -> int:
    return int(array.data.ptr)


def _cupy_device(index: int) -> Any:
    import cupy

    return cupy.cuda.Device(index)


class NcclCollectives:
    """Collectives through NCCL on one GPU per rank (CuPy's ``NcclCommunicator``).

    Creating one is collective: every rank of ``comm`` must create it at the
    same point.  ``nccl``, ``stream``, ``pointer`` and ``device`` default to
    CuPy's (``cupy.cuda.nccl``, the current stream's ``ptr``, ``array.data.ptr``,
    ``cupy.cuda.Device``); they are parameters so that the calls can be
    checked against a stand-in on a machine without a GPU.
    """

    name = "nccl"

    def __init__(
        self,
        comm: Any,
        device_index: int,
        *,
        nccl: Any = None,
        stream: Callable[[], int] = _cupy_stream,
        pointer: Callable[[Any], int] = _cupy_pointer,
        device: Callable[[int], Any] = _cupy_device,
    ) -> None:
        if nccl is None:
            nccl = nccl_module()
        self.comm = comm
        self._nccl = nccl
        self._stream, self._pointer = stream, pointer
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        rank, size = comm.Get_rank(), comm.Get_size()
        unique_id = nccl.get_unique_id() if rank == 0 else None
        unique_id = comm.bcast(unique_id, root=0)
        with device(device_index) if device is not None else contextlib.nullcontext():
            self.communicator = nccl.NcclCommunicator(size, unique_id, rank)

    def _type(self, array: Any) -> int:
        code = self._types.get(np.dtype(array.dtype))
        if code is None:
            raise TypeError(f"NCCL collectives: expected a float32 or float64 array, got {array.dtype}")
        if not array.flags.c_contiguous:
            raise ValueError("NCCL collectives: expected a C-contiguous array")
        return int(code)

    def all_reduce_sum(self, array: Any, backend: Backend) -> None:
        dtype = self._type(array)
        address = self._pointer(array)
        self.communicator.allReduce(address, address, array.size, dtype, self._nccl.NCCL_SUM, self._stream())

    def broadcast(self, array: Any, backend: Backend, root: int = 0) -> None:
        dtype = self._type(array)
        self.communicator.bcast(self._pointer(array), array.size, dtype, root, self._stream())


def nccl_module() -> Any:
    """CuPy's NCCL bindings, or DistributedError saying how to install them."""
    try:
        from cupy.cuda import nccl
    except ImportError as exc:
        raise DistributedError(
            f"NCCL collectives need CuPy ({exc}); install 'bpcore[cuda13]' or 'bpcore[cuda12]'"
        ) from exc
    if not getattr(nccl, "available", False):
        raise DistributedError(
            "NCCL collectives: CuPy could not load the NCCL library; install it with "
            "pip install 'bpcore[nccl-cuda13]' (or 'bpcore[nccl-cuda12]'), or use collectives='mpi'"
        )
    return nccl


def nccl_available() -> bool:
    try:
        nccl_module()
    except DistributedError:
        return False
    return True
