"""A Dense layer's forward pass at a tiny inner size, and its fused ReLU's backward with the bias gradient.

* ``small_dense_forward(x, weight, bias, out, relu)``: ``out = x @ weight + bias``
  for ``x`` (n, k), ``weight`` (k, m), ``bias`` (m,), then ``out = max(out, 0)``
  where ``relu`` is true (NaN kept).  For ``k`` from 2 to 4 (a first layer on
  a few state variables or 2-D points), where BLAS costs more to start than
  to compute (measured on 2 cores, float32: 512 x 2 x 128 in 8.6 us, 64 x 4
  x 128 in 3.7 us, before the bias-activation pass) and the compiled kernel
  does the product, the bias and the ReLU in one pass.  No CUDA version:
  there a Dense layer takes its usual path (a cuBLAS product and the fused
  bias-activation kernel).
* ``relu_bias_backward(gy, y, out, grad_bias)``: ``out = 0 where y <= 0, else gy`` (the
  ReLU's backward from its output ``y``, as ``relu_backward``) and
  ``grad_bias = out.sum(axis=0)`` (rows added in order, as ``column_sums``),
  in one pass over ``gy`` for 2-D arrays: a Dense layer with a fused ReLU
  needs both before its products, and the second pass re-read ``out``
  (measured on 2 cores, float32 512 x 128: 14 + 7 us as two calls).  Same
  bits as the two operations.  No CUDA version: there the layer keeps its two.
"""

from __future__ import annotations

from typing import Any

from ..kernels import cpu as kcpu
from .registry import Numba, declare

#: The inner sizes the kernel serves; others go through BLAS.
SMALL_INNER = (2, 3, 4)


def _small_dense_cpu(kernel: Any, generic: Any) -> Any:
    def small_dense_forward(x, weight, bias, out, relu):  # type: ignore[no-untyped-def]
        if (x.ndim != 2 or x.shape[1] not in SMALL_INNER or weight.shape != (x.shape[1], out.shape[1])
                or out.shape[0] != x.shape[0]):
            return generic(x, weight, bias, out, relu)
        kcpu.pick(kernel, out.size, "rows")(x, weight, bias, out, bool(relu))
        return out

    return small_dense_forward


@declare(
    "small_dense_forward",
    "out = x @ weight + bias, then ReLU if asked (inner size 2 to 4)",
    cpu=Numba(_small_dense_cpu, "dense_numba"),
)
def small_dense_forward(xp: Any, x: Any, weight: Any, bias: Any, out: Any, relu: bool) -> Any:
    xp.matmul(x, weight, out=out)
    out += bias
    if relu:
        xp.maximum(out, 0, out=out)
    return out


def _relu_bias_backward_cpu(kernel: Any, generic: Any) -> Any:
    from .registry import OPERATIONS

    # From the size where relu_backward's parallel build takes over: its pass, then column_sums.
    relu_backward, column_sums = OPERATIONS["relu_backward"].cpu(), OPERATIONS["column_sums"].cpu()  # type: ignore[misc]

    def relu_bias_backward(gy, y, out, grad_bias):  # type: ignore[no-untyped-def]
        if (out.ndim != 2 or out.shape[0] == 0 or gy.shape != out.shape or y.shape != out.shape
                or grad_bias.shape != out.shape[1:]):
            return generic(gy, y, out, grad_bias)
        if out.size >= kcpu.PARALLEL_MIN["cheap"]:
            column_sums(relu_backward(gy, y, out), grad_bias)
            return out
        kcpu.pick(kernel, out.size, "cheap")(gy, y, out, grad_bias)
        return out

    return relu_bias_backward


@declare(
    "relu_bias_backward",
    "out = 0 where y <= 0, else gy (ReLU backward from the output); grad_bias = out.sum(axis=0)",
    cpu=Numba(_relu_bias_backward_cpu, "dense_numba"),
)
def relu_bias_backward(xp: Any, gy: Any, y: Any, out: Any, grad_bias: Any) -> Any:
    out[...] = xp.where(y <= 0, 0.0, gy)
    out.sum(axis=0, out=grad_bias)
    return out
