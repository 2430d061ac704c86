"""Numba kernels of the whole-buffer and per-row operations (imported only when Numba is wanted).

One serial pass each: the buffers of the networks these serve (target
networks, critics) are far below the size where threads pay off.  The
arithmetic is done in the arrays' dtype (the scalars arrive already rounded
to it), in the same order as the generic versions.  Each is named after its
operation and compiled on first use (:mod:`.numba_jit`).
"""

from __future__ import annotations

from .numba_jit import serial_kernel


@serial_kernel
def polyak_update(target, source, keep, take):  # type: ignore[no-untyped-def]
    for k in range(target.size):
        target[k] = target[k] * keep + take * source[k]


@serial_kernel
def clamp_inplace(x, low, high):  # type: ignore[no-untyped-def]
    # Selects and one store per element, no branches: the loop vectorises, and a critic's weights,
    # half of them at a bound after each update, no longer mispredict a branch per entry (17k
    # floats: 5-8 us -> 2-4 us).  A NaN fails both comparisons and is stored back unchanged.
    for k in range(x.size):
        value = x[k]
        value = low if value < low else value
        x[k] = high if value > high else value


@serial_kernel
def gather_rows(values, index, out):  # type: ignore[no-untyped-def]
    for r in range(values.shape[0]):
        out[r] = values[r, index[r]]


@serial_kernel
def scatter_rows(grad, index, out):  # type: ignore[no-untyped-def]
    rows, cols = out.shape
    for r in range(rows):
        chosen = index[r]
        for c in range(cols):
            out[r, c] = grad[r] if c == chosen else 0.0


@serial_kernel
def outer_product(a, b, out):  # type: ignore[no-untyped-def]
    rows, cols = out.shape
    for r in range(rows):
        scale = a[r]
        for c in range(cols):
            out[r, c] = scale * b[c]


@serial_kernel
def column_sums(g, out):  # type: ignore[no-untyped-def]
    rows, cols = g.shape
    for c in range(cols):
        out[c] = g[0, c]
    for r in range(1, rows):
        for c in range(cols):
            out[c] += g[r, c]
