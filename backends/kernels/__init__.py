"""Compiled implementations of the hot operations.

* ``bpcore_math.cuh``: the per-element math as ``__host__ __device__``
  templates, shared by every CUDA kernel and by the host-compiled check;
* :mod:`.cuda_sources`: the CUDA kernels' source text, as data;
* :mod:`.cuda`: ``cuda=`` builders, making CuPy kernels from those sources
  on first use (never on import);
* :mod:`.cpu` and :mod:`.numba_kernels`: ``cpu=`` builders and the Numba
  kernels they compile on first use.

Each operation in :mod:`bpcore.backends.ops` names its builders next to its
generic version, so the three implementations are declared together.
"""
