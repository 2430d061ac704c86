"""Data-parallel training over MPI (NCCL between GPUs): ``mpiexec -n P python train.py``.

``init()`` joins the job: rank and world size from MPI (mpi4py), a device per
rank (``cuda:<local rank>`` on GPUs, or what ``BPCORE_DEVICE`` says), the
gradient communicator (NCCL through CuPy on GPUs, MPI on the CPU) and abort
of the whole job when a rank raises.  ``fit(..., distributed=True)`` trains
with PyTorch DDP's semantics; custom loops use :func:`all_reduce_gradients`,
:func:`broadcast_parameters`, :func:`rank` and :func:`world_size`.

Install with ``pip install 'bpcore[mpi]'`` (mpi4py and MPICH, which brings
``mpiexec``); on GPUs add ``'bpcore[nccl-cuda13]'`` (or ``nccl-cuda12``).
Importing this module imports neither mpi4py nor CuPy.
"""

from .collectives import Collectives, DistributedError, MpiCollectives, NcclCollectives
from .context import Context, context, device, init, is_initialized, rank, world_size
from .network_sync import all_reduce_gradients, broadcast_parameters, check_same_network

__all__ = [
    "Collectives",
    "Context",
    "DistributedError",
    "MpiCollectives",
    "NcclCollectives",
    "all_reduce_gradients",
    "broadcast_parameters",
    "check_same_network",
    "context",
    "device",
    "init",
    "is_initialized",
    "rank",
    "world_size",
]
