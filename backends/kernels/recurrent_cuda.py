"""CUDA kernels of the recurrent cell steps (see :mod:`bpcore.backends.ops.recurrent`).

Each cell operation is ONE ``cupy.ElementwiseKernel`` launch with one thread
per hidden unit ``(row a, unit j)`` of the ``(N, H)`` state: the thread reads
its gate pre-activations from the input projection and the recurrent
product (``raw`` arrays of ``G * H`` columns), applies every activation and
the state update and writes the saved gates; backward, it computes all gate
derivatives of its unit and the state gradients carried to the previous
step.  The bodies use the shared ``bpcore_math.cuh`` helpers
(``bp_sigmoid``, ``bp_tanh``).  The ``raw`` arrays are indexed as flat
C-order memory, so the wrappers sit behind the layout guard
(:func:`.layout.flat_or_generic`).

CuPy is imported and the kernels are created only when a CUDA backend first
resolves one of these operations.  :func:`make_implementation` takes the
kernel provider as an argument so that the tests can drive the same
wrappers with CuPy's code generator (NVRTC, no GPU) or with the host C++
build of the same bodies.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import cuda_sources as src
from .built_once import BuiltOnce
from .layout import flat_or_generic

_UNIT = "const long long a = i / size, j = i % size;"

SPECS: dict[str, src.Elementwise] = {
    spec.name: spec
    for spec in (
        src.Elementwise(
            "bp_rnn_cell_fwd",
            "raw T xw, raw T hw, T h_prev, raw T mask, int64 size, bool relu",
            "T h",
            _UNIT
            + " const T pre = xw[i] + hw[i];"
            " h = mask[a] > T(0) ? (relu ? (pre > T(0) ? pre : T(0)) : bp_tanh(pre)) : h_prev",
        ),
        src.Elementwise(
            "bp_rnn_cell_bwd",
            "T dy, T dh_rec, T h, raw T mask, int64 size, bool relu",
            "T dh, T dgates",
            _UNIT
            + " if (mask[a] > T(0)) {"
            "   const T total = dy + dh_rec + dh;"
            "   dgates = relu ? (h > T(0) ? total : T(0)) : total * (T(1) - h * h); dh = T(0);"
            " } else { dgates = T(0); dh = dh_rec + dh; }",
        ),
        src.Elementwise(
            "bp_lstm_cell_fwd",
            "raw T xw, raw T hw, T c_prev, T h_prev, raw T mask, int64 size",
            "raw T gates, T c, T h",
            _UNIT
            + " const long long k = a * 4 * size + j;"
            " const T gi = bp_sigmoid(xw[k] + hw[k]);"
            " const T gf = bp_sigmoid(xw[k + size] + hw[k + size]);"
            " const T gg = bp_tanh(xw[k + 2 * size] + hw[k + 2 * size]);"
            " const T go = bp_sigmoid(xw[k + 3 * size] + hw[k + 3 * size]);"
            " gates[k] = gi; gates[k + size] = gf; gates[k + 2 * size] = gg; gates[k + 3 * size] = go;"
            " if (mask[a] > T(0)) { const T cell = gf * c_prev + gi * gg; c = cell; h = go * bp_tanh(cell); }"
            " else { c = c_prev; h = h_prev; }",
        ),
        src.Elementwise(
            "bp_lstm_cell_bwd",
            "T dy, T dh_rec, T c_prev, T c, raw T gates, raw T mask, int64 size",
            "T dh, T dc, raw T dgates",
            _UNIT
            + " const long long k = a * 4 * size + j;"
            " if (mask[a] > T(0)) {"
            "   const T gi = gates[k], gf = gates[k + size];"
            "   const T gg = gates[k + 2 * size], go = gates[k + 3 * size];"
            "   const T total = dy + dh_rec + dh;"
            "   const T tc = bp_tanh(c);"
            "   const T dct = dc + total * go * (T(1) - tc * tc);"
            "   dgates[k] = dct * gg * gi * (T(1) - gi);"
            "   dgates[k + size] = dct * c_prev * gf * (T(1) - gf);"
            "   dgates[k + 2 * size] = dct * gi * (T(1) - gg * gg);"
            "   dgates[k + 3 * size] = total * tc * go * (T(1) - go);"
            "   dc = dct * gf; dh = T(0);"
            " } else {"
            "   dgates[k] = T(0); dgates[k + size] = T(0); dgates[k + 2 * size] = T(0);"
            "   dgates[k + 3 * size] = T(0); dh = dh_rec + dh;"
            " }",
        ),
        src.Elementwise(
            "bp_gru_cell_fwd",
            "raw T xw, raw T hw, raw T b_hh, T h_prev, raw T mask, int64 size",
            "raw T gates, T h",
            _UNIT
            + " const long long k = a * 3 * size + j, s = a * 4 * size + j;"
            " const T r = bp_sigmoid(xw[k] + hw[k] + b_hh[j]);"
            " const T z = bp_sigmoid(xw[k + size] + hw[k + size] + b_hh[j + size]);"
            " const T hn = hw[k + 2 * size] + b_hh[j + 2 * size];"
            " const T cand = bp_tanh(xw[k + 2 * size] + r * hn);"
            " gates[s] = r; gates[s + size] = z; gates[s + 2 * size] = cand; gates[s + 3 * size] = hn;"
            " h = mask[a] > T(0) ? (T(1) - z) * cand + z * h_prev : h_prev",
        ),
        src.Elementwise(
            "bp_gru_cell_bwd",
            "T dy, T dh_rec, T h_prev, raw T gates, raw T mask, int64 size",
            "T dh, raw T dgx, raw T dgh",
            _UNIT
            + " const long long k = a * 3 * size + j, s = a * 4 * size + j;"
            " if (mask[a] > T(0)) {"
            "   const T r = gates[s], z = gates[s + size];"
            "   const T cand = gates[s + 2 * size], hn = gates[s + 3 * size];"
            "   const T total = dy + dh_rec + dh;"
            "   const T dn = total * (T(1) - z) * (T(1) - cand * cand);"
            "   const T dr = dn * hn * r * (T(1) - r);"
            "   const T dz = total * (h_prev - cand) * z * (T(1) - z);"
            "   dgx[k] = dr; dgx[k + size] = dz; dgx[k + 2 * size] = dn;"
            "   dgh[k] = dr; dgh[k + size] = dz; dgh[k + 2 * size] = dn * r;"
            "   dh = total * z;"
            " } else {"
            "   dgx[k] = T(0); dgx[k + size] = T(0); dgx[k + 2 * size] = T(0);"
            "   dgh[k] = T(0); dgh[k + size] = T(0); dgh[k + 2 * size] = T(0);"
            "   dh = dh_rec + dh;"
            " }",
        ),
    )
}

#: Which kernel each operation launches.
KERNEL_OF = {
    "rnn_cell_forward": "bp_rnn_cell_fwd",
    "rnn_cell_backward": "bp_rnn_cell_bwd",
    "lstm_cell_forward": "bp_lstm_cell_fwd",
    "lstm_cell_backward": "bp_lstm_cell_bwd",
    "gru_cell_forward": "bp_gru_cell_fwd",
    "gru_cell_backward": "bp_gru_cell_bwd",
}


def make_implementation(name: str, kernels: Callable[[str], Any]) -> Callable[..., Any]:
    """The wrapper of operation ``name`` (the registry's signature) around ``kernels(kernel_name)``."""
    kernel = kernels(KERNEL_OF[name])

    def size_of(h: Any) -> np.int64:
        return np.int64(h.shape[1])

    if name == "rnn_cell_forward":

        def rnn_forward(xw, hw, h_prev, mask, relu, h):  # type: ignore[no-untyped-def]
            kernel(xw, hw, h_prev, mask, size_of(h), bool(relu), h)
            return h

        call: Callable[..., Any] = rnn_forward
    elif name == "rnn_cell_backward":

        def rnn_backward(dy, dh_rec, dh, h, mask, relu, dgates):  # type: ignore[no-untyped-def]
            kernel(dy, dh_rec, h, mask, size_of(h), bool(relu), dh, dgates)
            return dgates

        call = rnn_backward
    elif name == "lstm_cell_forward":

        def lstm_forward(xw, hw, c_prev, h_prev, mask, gates, c, h):  # type: ignore[no-untyped-def]
            kernel(xw, hw, c_prev, h_prev, mask, size_of(h), gates, c, h)
            return h

        call = lstm_forward
    elif name == "lstm_cell_backward":

        def lstm_backward(dy, dh_rec, dh, dc, gates, c_prev, c, mask, dgates):  # type: ignore[no-untyped-def]
            kernel(dy, dh_rec, c_prev, c, gates, mask, size_of(c), dh, dc, dgates)
            return dgates

        call = lstm_backward
    elif name == "gru_cell_forward":

        def gru_forward(xw, hw, b_hh, h_prev, mask, gates, h):  # type: ignore[no-untyped-def]
            kernel(xw, hw, b_hh, h_prev, mask, size_of(h), gates, h)
            return h

        call = gru_forward
    else:

        def gru_backward(dy, dh_rec, dh, gates, h_prev, mask, dgx, dgh):  # type: ignore[no-untyped-def]
            kernel(dy, dh_rec, h_prev, gates, mask, size_of(h_prev), dh, dgx, dgh)
            return dgx

        call = gru_backward
    return flat_or_generic(call, _generic(name))


def _generic(name: str) -> Callable[..., Any]:
    from ..ops.registry import OPERATIONS

    generic = OPERATIONS[name].generic

    def run(*args: Any) -> Any:
        # CuPy for device arrays; NumPy for the host arrays of the tests' emulation.
        on_device = any(type(arg).__module__.split(".")[0] == "cupy" for arg in args)
        if on_device:
            import cupy

            return generic(cupy, *args)
        return generic(np, *args)

    return functools.wraps(generic)(run)


_kernels: dict[str, Any] = {}
_kernels_lock = threading.Lock()


def _kernel(kernel_name: str) -> Any:
    """The ``cupy.ElementwiseKernel`` of ``kernel_name``, made once per process."""
    with _kernels_lock:
        kernel = _kernels.get(kernel_name)
        if kernel is None:
            from .cuda import elementwise_kernel

            kernel = _kernels[kernel_name] = elementwise_kernel(SPECS[kernel_name])
    return kernel


build = BuiltOnce(lambda name: make_implementation(name, _kernel))
recurrent_cuda_kernel = build.builder
