"""Builders of the CUDA (CuPy) implementations of the hot operations.

:func:`cuda_kernel` gives an operation's declaration its ``cuda=`` builder.
CuPy is imported, and the kernels are created, only when a CUDA backend first
resolves an operation; each kernel object is made once per process (under a
lock) and reused, and CuPy compiles it per dtype on its first launch and
caches the binary.  No wrapper here synchronises the device.

CuPy's elementwise and reduction kernels index through the arrays' strides;
the ``RawModule`` row and column kernels walk flat C-order memory, so their
wrappers sit behind the layout guard shared with the CPU kernels
(:func:`.layout.flat_or_generic`: any other layout runs the generic version),
take float32 or float64 only, and fetch each kernel once per dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .built_once import BuiltOnce
from .layout import flat_or_generic

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535

_kernels: dict[str, Any] = {}


def _make_cupy(name: str) -> Callable[..., Any]:
    return make_implementation(name, _kernel)


build = BuiltOnce(_make_cupy)
cuda_kernel = build.builder


def _kernel(kernel_name: str) -> Any:
    """The CuPy kernel object for ``kernel_name`` (called while BuiltOnce holds its lock).

    ``"raw"`` names the ``RawModule`` of the row and column kernels.
    """
    kernel = _kernels.get(kernel_name)
    if kernel is None:
        import cupy

        from . import cuda_sources as src

        if kernel_name in src.ELEMENTWISE:
            kernel = elementwise_kernel(src.ELEMENTWISE[kernel_name])
        elif kernel_name in src.REDUCTIONS:
            r = src.REDUCTIONS[kernel_name]
            kernel = cupy.ReductionKernel(
                r.in_params,
                r.out_params,
                r.map_expr,
                r.reduce_expr,
                r.post_map_expr,
                r.identity,
                r.name,
                reduce_type=r.reduce_type,
                preamble=src.header_source(),
            )
        else:
            kernel = cupy.RawModule(
                code=src.header_source() + src.RAW_SOURCE,
                options=src.NVRTC_OPTIONS,
                name_expressions=src.RAW_NAME_EXPRESSIONS,
            )
        _kernels[kernel_name] = kernel
    return kernel


def elementwise_kernel(spec: Any) -> Any:
    """The ``cupy.ElementwiseKernel`` of one :class:`.cuda_sources.Elementwise` (also used by the tests)."""
    import cupy

    from . import cuda_sources as src

    return cupy.ElementwiseKernel(
        spec.in_params,
        spec.out_params,
        spec.body,
        spec.name,
        preamble=src.header_source(),
        options=src.NVRTC_OPTIONS,
    )


_RAW_CTYPES = {"float32": "float", "float64": "double"}


def _raw(module: Any, kernel_name: str, dtype: Any) -> Any:
    """The ``RawModule`` kernel ``kernel_name`` instantiated for ``dtype`` (float32 or float64 only)."""
    ctype = _RAW_CTYPES.get(getattr(dtype, "name", str(dtype)))
    if ctype is None:
        raise TypeError(
            f"{kernel_name}: expected float32 or float64 arrays, got dtype {dtype}; "
            "the row and column kernels are instantiated for those two only"
        )
    return module.get_function(f"{kernel_name}<{ctype}>")


class _RawKernel:
    """One ``RawModule`` kernel, fetched once per dtype (``get_function`` builds a new object per call).

    A CuPy ``RawKernel`` resolves its compiled function per device at launch,
    so one cached object per dtype serves every GPU.  Calling this with the
    kernel's element-type arrays checks that they share one dtype (the kernel
    reads them all as ``T*``) and returns the launcher.
    """

    def __init__(self, module: Any, kernel_name: str) -> None:
        self._module = module
        self._name = kernel_name
        self._functions: dict[Any, Any] = {}

    def __call__(self, *arrays: Any) -> Any:
        dtype = arrays[0].dtype
        function = self._functions.get(dtype)
        if function is None:
            function = self._functions[dtype] = _raw(self._module, self._name, dtype)
        for position, array in enumerate(arrays[1:], start=1):
            if array.dtype != dtype:
                raise TypeError(
                    f"{self._name}: every array must have the dtype of the first ({dtype}), "
                    f"got {array.dtype} for array {position}"
                )
        return function


def _array_module(args: tuple[Any, ...]) -> Any:
    """NumPy for host arrays (the tests' emulation), CuPy for device arrays."""
    import numpy as np

    for arg in args:
        if type(arg).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


def _flat_or_generic(name: str, kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` (a wrapper of flat-memory raw kernels) behind the shared layout guard."""
    from ..ops.registry import OPERATIONS

    generic = OPERATIONS[name].generic
    return flat_or_generic(kernel, lambda *args: generic(_array_module(args), *args))


# Batch normalisation sums each column in row chunks, one thread per (chunk,
# column), and then adds a column's chunks in one thread: about sqrt(n) rows
# per chunk balances the two (n = 1024, f = 256: 8192 threads of 32 rows, then
# 32 partial sums per column, where one thread per column ran 256 threads of
# 1024 rows), capped at COLUMN_SUM_THREADS threads in all.
COLUMN_SUM_THREADS = 1 << 16
MIN_CHUNK_ROWS = 8


def _row_chunks(n: int, f: int) -> tuple[int, int]:
    """(rows per chunk, number of chunks) for the column sums of an (n, f) batch."""
    most = max(1, COLUMN_SUM_THREADS // max(f, 1))
    chunks = min(most, max(1, -(-n // max(MIN_CHUNK_ROWS, math.isqrt(n)))))
    chunk = max(1, -(-n // chunks))
    return chunk, max(1, -(-n // chunk))


def _grid(work: int) -> tuple[tuple[int], tuple[int]]:
    blocks = max(1, min(MAX_BLOCKS, -(-work // THREADS_PER_BLOCK)))
    return (blocks,), (THREADS_PER_BLOCK,)


def _activation(name: str, kernels: Callable[[str], Any]) -> Callable[..., Any]:
    body = name.removeprefix("bias_")
    activation = body.rsplit("_", 1)[0]
    if name.startswith("bias_"):
        kernel = kernels(f"bp_bias_{activation}_fwd")

        def bias_forward(z: Any, b: Any, out: Any, *params: float) -> Any:
            kernel(b, *params, z, out)
            return out

        return bias_forward
    if body.endswith("_forward"):
        kernel = kernels(f"bp_{activation}_fwd")

        def forward(x: Any, out: Any, *params: float) -> Any:
            kernel(x, *params, out)
            return out

        return forward
    kernel = kernels(f"bp_{activation}_bwd")

    def backward(gy: Any, saved: Any, out: Any, *params: float) -> Any:
        kernel(gy, saved, *params, out)
        return out

    return backward


def make_implementation(name: str, kernels: Callable[[str], Any]) -> Callable[..., Any]:
    """The wrapper of operation ``name`` around the kernels that ``kernels`` returns.

    ``kernels(kernel_name)`` returns a callable with CuPy's calling convention
    for the kernels of :mod:`.cuda_sources` (``"raw"``: an object whose
    ``get_function(name_expression)`` gives a ``(grid, block, args)`` launcher).
    The builders pass CuPy's kernels; the tests pass a host emulation, so
    that the argument plumbing here is checked along with the kernels.
    """
    import numpy as np

    if name == "sgd_step":
        with_momentum, plain = kernels("bp_sgd_momentum"), kernels("bp_sgd_plain")

        def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):  # type: ignore[no-untyped-def]
            if momentum != 0:
                with_momentum(
                    grad,
                    lr,
                    momentum,
                    dampening,
                    weight_decay,
                    bool(nesterov),
                    bool(first_step),
                    param,
                    momentum_buf,
                )
            else:
                plain(grad, lr, weight_decay, param)
            return param

        return sgd_step
    if name == "adagrad_step":
        adagrad = kernels("bp_adagrad")

        def adagrad_step(param, grad, state_sum, clr, weight_decay, eps):  # type: ignore[no-untyped-def]
            adagrad(grad, clr, weight_decay, eps, param, state_sum)
            return param

        return adagrad_step
    if name == "rmsprop_step":
        rmsprop = kernels("bp_rmsprop")

        def rmsprop_step(
            param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps, weight_decay, momentum, centered
        ):  # type: ignore[no-untyped-def]
            rmsprop(
                grad,
                lr,
                alpha,
                eps,
                weight_decay,
                momentum,
                bool(centered),
                bool(momentum > 0),
                param,
                square_avg,
                grad_avg,
                momentum_buf,
            )
            return param

        return rmsprop_step
    if name == "adam_step":
        from ..ops.optimizers import adam_scalars

        adam = kernels("bp_adam")

        def adam_step(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            step,
            decoupled,
            amsgrad,
        ):  # type: ignore[no-untyped-def]
            step_size, bc2_sqrt = adam_scalars(lr, beta1, beta2, step)
            adam(
                grad,
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                step_size,
                bc2_sqrt,
                bool(decoupled),
                bool(amsgrad),
                param,
                exp_avg,
                exp_avg_sq,
                max_exp_avg_sq,
            )
            return param

        return adam_step
    if name == "l1_l2_grad":
        l1_l2 = kernels("bp_l1_l2")

        def l1_l2_grad(grad, param, l1, l2, mask, out):  # type: ignore[no-untyped-def]
            l1_l2(grad, param, mask, l1, l2, out)
            return out

        return l1_l2_grad
    if name == "grad_norm_sq":
        sum_squares = kernels("bp_sum_squares")

        def grad_norm_sq(grad, out):  # type: ignore[no-untyped-def]
            sum_squares(grad.reshape(-1), out.reshape(()))
            return out

        return grad_norm_sq
    if name == "scale_inplace":
        scale = kernels("bp_scale")

        def scale_inplace(x, factor):  # type: ignore[no-untyped-def]
            scale(factor.reshape(()), x)
            return x

        return scale_inplace
    if name in ("softmax_cross_entropy_forward", "softmax_cross_entropy_index_forward"):
        softmax_rows = _RawKernel(kernels("raw"), "bp_softmax_xent_fwd")
        use_labels = name == "softmax_cross_entropy_index_forward"

        def softmax_xent_forward(logits, target, probs, losses):  # type: ignore[no-untyped-def]
            n, k = logits.shape
            null = np.uint64(0)  # a null pointer argument: "not given"
            if use_labels:
                if target.dtype != np.int64:
                    raise TypeError(f"{name}: expected int64 labels, got dtype {target.dtype}")
                labels, soft = target, null
                launch = softmax_rows(logits, probs, losses)
            else:
                labels, soft = null, target
                launch = softmax_rows(logits, target, probs, losses)
            grid, block = _grid(n)
            launch(grid, block, (logits, soft, labels, probs, losses, np.int64(n), np.int64(k)))
            return losses

        return _flat_or_generic(name, softmax_xent_forward)
    if name == "softmax_cross_entropy_backward":
        kernel = kernels("bp_softmax_xent_bwd")

        def softmax_xent_backward(probs, target, scale, out):  # type: ignore[no-untyped-def]
            kernel(probs, target, scale, out)
            return out

        return softmax_xent_backward
    if name == "softmax_cross_entropy_index_backward":
        kernel = kernels("bp_softmax_xent_index_bwd")

        def softmax_xent_index_backward(probs, labels, scale, out):  # type: ignore[no-untyped-def]
            kernel(probs, labels, probs.shape[1], scale, out)
            return out

        return softmax_xent_index_backward
    if name == "binary_cross_entropy_logits_forward":
        kernel = kernels("bp_bce_logits_fwd")

        def bce_logits_forward(z, target, losses):  # type: ignore[no-untyped-def]
            kernel(z, target, losses)
            return losses

        return bce_logits_forward
    if name == "binary_cross_entropy_logits_backward":
        kernel = kernels("bp_bce_logits_bwd")

        def bce_logits_backward(z, target, scale, out):  # type: ignore[no-untyped-def]
            kernel(z, target, scale, out)
            return out

        return bce_logits_backward
    if name == "binary_cross_entropy_backward":
        kernel = kernels("bp_bce_bwd")

        def bce_backward(p, target, scale, eps, out):  # type: ignore[no-untyped-def]
            kernel(p, target, scale, eps, out)
            return out

        return bce_backward
    if name == "dropout_forward":
        kernel = kernels("bp_dropout_fwd")

        def dropout_forward(x, uniform, p, out, mask):  # type: ignore[no-untyped-def]
            kernel(x, uniform, p, 1.0 / (1.0 - p), out, mask)
            return out

        return dropout_forward
    if name == "dropout_backward":
        kernel = kernels("bp_multiply")

        def dropout_backward(gy, mask, out):  # type: ignore[no-untyped-def]
            kernel(gy, mask, out)
            return out

        return dropout_backward
    if name == "batchnorm_forward_train":
        module = kernels("raw")
        column_sums = _RawKernel(module, "bp_batchnorm_fwd_partial")
        statistics = _RawKernel(module, "bp_batchnorm_fwd_stats")
        normalise = _RawKernel(module, "bp_batchnorm_fwd_apply")

        def batchnorm_forward_train(
            x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std
        ):  # type: ignore[no-untyped-def]
            n, f = x.shape
            launches = (
                column_sums(x),
                statistics(x, running_mean, running_var, inv_std),
                normalise(x, gamma, beta, inv_std, out, xhat),
            )
            chunk, chunks = _row_chunks(n, f)
            work = _array_module((x,)).empty((2 * chunks + 1) * f, dtype=np.float64)
            partial, mean = work[: 2 * chunks * f], work[2 * chunks * f :]
            sizes = (np.int64(n), np.int64(f))
            launches[0](*_grid(chunks * f), (x, partial, *sizes, np.int64(chunk), np.int64(chunks)))
            launches[1](
                *_grid(f),
                (x, partial, running_mean, running_var, np.float64(momentum), np.float64(eps), inv_std, mean,
                 *sizes, np.int64(chunks)),
            )
            launches[2](*_grid(n * f), (x, gamma, beta, mean, inv_std, out, xhat, *sizes))
            return out

        return _flat_or_generic(name, batchnorm_forward_train)
    if name == "batchnorm_backward":
        module = kernels("raw")
        column_sums = _RawKernel(module, "bp_batchnorm_bwd_partial")
        statistics = _RawKernel(module, "bp_batchnorm_bwd_stats")
        input_gradient = _RawKernel(module, "bp_batchnorm_bwd_apply")

        def batchnorm_backward(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out, accumulate):  # type: ignore[no-untyped-def]
            n, f = gy.shape
            launches = (
                column_sums(gy, xhat),
                statistics(grad_gamma, grad_beta),
                input_gradient(gy, xhat, gamma, inv_std, out),
            )
            chunk, chunks = _row_chunks(n, f)
            work = _array_module((gy,)).empty((2 * chunks + 2) * f, dtype=np.float64)
            partial, sums = work[: 2 * chunks * f], work[2 * chunks * f :]
            sizes = (np.int64(n), np.int64(f))
            launches[0](*_grid(chunks * f), (gy, xhat, partial, *sizes, np.int64(chunk), np.int64(chunks)))
            launches[1](
                *_grid(f),
                (partial, grad_gamma, grad_beta, sums, np.bool_(accumulate), np.int64(f), np.int64(chunks)),
            )
            launches[2](*_grid(n * f), (gy, xhat, gamma, inv_std, sums, out, *sizes))
            return out

        return _flat_or_generic(name, batchnorm_backward)
    return _activation(name, kernels)
