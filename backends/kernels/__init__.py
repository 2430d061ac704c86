"""Compiled implementations of the hot operations (the layer below :mod:`bpcore.backends.ops`).

Nothing here imports the operations: each operation's declaration in
``backends/ops`` names its wrappers, and those take their kernels from here
by the one naming rule (the operation ``relu_backward`` has the Numba kernel
``relu_backward``, the CUDA kernel ``bp_relu_backward`` and, for activations,
the per-element math ``relu_backward_at`` / ``bp_relu_backward_at``).

* ``bpcore_math.cuh``: the per-element math as ``__host__ __device__``
  templates, shared by every CUDA kernel and by the host-compiled check;
* :mod:`.cuda_sources`: the CUDA kernels' source text, as data;
* :mod:`.cuda`: what the CUDA wrappers share (kernel objects made on first
  use, never on import; launch geometry; the raw-kernel launcher);
* :mod:`.numba_kernels`, :mod:`.buffer_numba`, :mod:`.pooling_numba`,
  :mod:`.conv_numba`, :mod:`.clipping_numba`: the Numba kernels, compiled
  per operation on first use by :mod:`.numba_jit`;
  :mod:`.cpu`: what the CPU wrappers share;
* :mod:`.layout`: the one memory-layout guard of every flat-memory kernel.
"""
