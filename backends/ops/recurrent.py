"""The fused cell steps of the recurrent layers (plain RNN, LSTM, GRU): one call per time step.

A recurrent layer computes the input projection ``xw = x @ W_ih^T (+ biases)``
for all time steps in one matrix product before its loop; each step then
runs ONE recurrent product ``hw = h_prev @ W_hh^T`` and ONE of the cell
operations below, which applies the gate activations, updates the state and
keeps what the backward step needs.  Backward, each step runs ONE cell
backward operation (every gate derivative, the state gradients carried to
the previous step) and ONE product ``dh_rec = dgates_h @ W_hh``; the weight
and bias gradients are products and sums over all steps after the loop.

Shapes: ``N`` rows (the batch), ``H`` hidden units; the gates of a row are
laid out as PyTorch's (LSTM ``i, f, g, o``; GRU ``r, z, n``), each ``H``
wide.  ``mask`` (N,) holds 1 for a row whose step is real and 0 for padding
(in the arrays' dtype): a padded step leaves the state as it was (``h = h_prev``,
``c = c_prev``), gets zero gate gradients and passes the incoming state
gradient through unchanged.  Every array is written in place and the last
output is returned; ``dh`` and ``dc`` are read and overwritten (in: the
gradient carried from the next step; out: the part carried to the previous
step, beside the product ``dgates_h @ W_hh``).

* ``rnn_cell_forward(xw, hw, h_prev, mask, relu, h)``: ``h = act(xw + hw)``,
  act = ReLU if ``relu`` else tanh (``xw`` holds both biases).
* ``rnn_cell_backward(dy, dh_rec, dh, h, mask, relu, dgates)``:
  ``total = dy + dh_rec + dh``; ``dgates = total * act'(h)``; ``dh = 0``.
* ``lstm_cell_forward(xw, hw, c_prev, h_prev, mask, gates, c, h)``: the
  activated gates ``(i, f, g, o)`` into ``gates`` (N, 4H),
  ``c = f * c_prev + i * g``, ``h = o * tanh(c)`` (``xw`` holds both biases).
* ``lstm_cell_backward(dy, dh_rec, dh, dc, gates, c_prev, c, mask, dgates)``:
  the pre-activation gate gradients into ``dgates`` (N, 4H), ``dc`` carried
  to ``c_prev`` (``dc * f``), ``dh = 0`` (all of h_prev's gradient goes
  through the product).
* ``gru_cell_forward(xw, hw, b_hh, h_prev, mask, gates, h)``: ``xw`` holds
  ``b_ih`` only; ``r, z = sigmoid(xw + hw + b_hh)``,
  ``n = tanh(xw_n + r * (hw_n + b_hn))``, ``h = (1 - z) * n + z * h_prev``;
  ``gates`` (N, 4H) keeps ``r, z, n`` and ``hw_n + b_hn``.
* ``gru_cell_backward(dy, dh_rec, dh, gates, h_prev, mask, dgx, dgh)``: the
  gradients of the input-side pre-activations into ``dgx`` (N, 3H) and of the
  hidden-side ones into ``dgh`` (they differ in the n gate: ``dgh_n = dgx_n *
  r``), ``dh = total * z`` carried directly to ``h_prev``.

``dy`` is the gradient of the layer's output at this step (zeros when only
the last state is returned); a padded step ignores it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import cpu as kcpu
from ..kernels import recurrent_cuda  # noqa: F401  (registers the CUDA kernels' sources)
from .registry import Cuda, Numba, declare

# The Numba kernels are in backends/kernels/recurrent_numba.py, the CUDA ones in recurrent_cuda.py.

_KERNEL_DTYPES = (np.float32, np.float64)


def _cell_cpu(returned: int) -> Any:
    """The CPU wrapper of a cell operation that returns its argument ``returned`` (one serial build).

    Behind the layout guard, so every array is C-contiguous here; another dtype
    than float32 or float64 (the one of the last array) gets the generic version.
    """

    def wrap(kernel: Any, generic: Any) -> Any:
        def cell(*args: Any) -> Any:
            out = args[returned]
            if args[-1].dtype.type not in _KERNEL_DTYPES:
                return generic(*args)
            kcpu.pick(kernel, out.size, "transcendental")(*args)
            return out

        return cell

    return wrap


# The CUDA wrappers: one ElementwiseKernel launch, a thread per hidden unit (the state's
# elements); the gate arrays are "raw" (read and written as flat C-order memory), so the
# wrappers run behind the layout guard (flat=True).
def _rnn_forward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def rnn_cell_forward(xw, hw, h_prev, mask, relu, h):  # type: ignore[no-untyped-def]
        kernel(xw, hw, h_prev, mask, np.int64(h.shape[1]), bool(relu), h)
        return h

    return rnn_cell_forward


def _rnn_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def rnn_cell_backward(dy, dh_rec, dh, h, mask, relu, dgates):  # type: ignore[no-untyped-def]
        kernel(dy, dh_rec, h, mask, np.int64(h.shape[1]), bool(relu), dh, dgates)
        return dgates

    return rnn_cell_backward


def _lstm_forward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def lstm_cell_forward(xw, hw, c_prev, h_prev, mask, gates, c, h):  # type: ignore[no-untyped-def]
        kernel(xw, hw, c_prev, h_prev, mask, np.int64(h.shape[1]), gates, c, h)
        return h

    return lstm_cell_forward


def _lstm_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def lstm_cell_backward(dy, dh_rec, dh, dc, gates, c_prev, c, mask, dgates):  # type: ignore[no-untyped-def]
        kernel(dy, dh_rec, c_prev, c, gates, mask, np.int64(c.shape[1]), dh, dc, dgates)
        return dgates

    return lstm_cell_backward


def _gru_forward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def gru_cell_forward(xw, hw, b_hh, h_prev, mask, gates, h):  # type: ignore[no-untyped-def]
        kernel(xw, hw, b_hh, h_prev, mask, np.int64(h.shape[1]), gates, h)
        return h

    return gru_cell_forward


def _gru_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def gru_cell_backward(dy, dh_rec, dh, gates, h_prev, mask, dgx, dgh):  # type: ignore[no-untyped-def]
        kernel(dy, dh_rec, h_prev, gates, mask, np.int64(h_prev.shape[1]), dh, dgx, dgh)
        return dgx

    return gru_cell_backward


def _sigmoid(xp: Any, x: Any) -> Any:
    # The tanh form never overflows (1 / (1 + exp(-x)) does, for x < -88 in float32).
    return xp.tanh(x * 0.5) * 0.5 + 0.5


def _real(mask: Any) -> Any:
    return (mask > 0)[:, None]


@declare(
    "rnn_cell_forward",
    "h = act(xw + hw) (tanh or ReLU); padded rows keep h_prev",
    cpu=Numba(_cell_cpu(-1), "recurrent_numba"),
    cuda=Cuda(_rnn_forward_cuda, flat=True),
)
def rnn_cell_forward(xp: Any, xw: Any, hw: Any, h_prev: Any, mask: Any, relu: bool, h: Any) -> Any:
    pre = xw + hw
    new = xp.where(pre < 0, 0.0, pre) if relu else xp.tanh(pre)  # NaN stays NaN, as torch.relu
    h[...] = xp.where(_real(mask), new, h_prev)
    return h


@declare(
    "rnn_cell_backward",
    "dgates = (dy + dh_rec + dh) * act'(h); padded rows pass the gradient through",
    cpu=Numba(_cell_cpu(-1), "recurrent_numba"),
    cuda=Cuda(_rnn_backward_cuda, flat=True),
)
def rnn_cell_backward(
    xp: Any, dy: Any, dh_rec: Any, dh: Any, h: Any, mask: Any, relu: bool, dgates: Any
) -> Any:
    real = _real(mask)
    total = dy + dh_rec + dh
    gates = xp.where(h <= 0, 0.0, total) if relu else total * (1.0 - h * h)
    dgates[...] = xp.where(real, gates, 0.0)
    dh[...] = xp.where(real, 0.0, dh_rec + dh)
    return dgates


@declare(
    "lstm_cell_forward",
    "LSTM gates i, f, g, o; c = f * c_prev + i * g; h = o * tanh(c); padded rows keep the state",
    cpu=Numba(_cell_cpu(-1), "recurrent_numba"),
    cuda=Cuda(_lstm_forward_cuda, flat=True),
)
def lstm_cell_forward(
    xp: Any, xw: Any, hw: Any, c_prev: Any, h_prev: Any, mask: Any, gates: Any, c: Any, h: Any
) -> Any:
    size = c.shape[1]
    pre = xw + hw
    gates[:, : 2 * size] = _sigmoid(xp, pre[:, : 2 * size])
    gates[:, 2 * size : 3 * size] = xp.tanh(pre[:, 2 * size : 3 * size])
    gates[:, 3 * size :] = _sigmoid(xp, pre[:, 3 * size :])
    i, f, g, o = (gates[:, k * size : (k + 1) * size] for k in range(4))
    real = _real(mask)
    cell = f * c_prev + i * g
    c[...] = xp.where(real, cell, c_prev)
    h[...] = xp.where(real, o * xp.tanh(cell), h_prev)
    return h


@declare(
    "lstm_cell_backward",
    "LSTM gate gradients, dc carried to c_prev; padded rows pass the gradients through",
    cpu=Numba(_cell_cpu(-1), "recurrent_numba"),
    cuda=Cuda(_lstm_backward_cuda, flat=True),
)
def lstm_cell_backward(
    xp: Any, dy: Any, dh_rec: Any, dh: Any, dc: Any, gates: Any, c_prev: Any, c: Any, mask: Any, dgates: Any
) -> Any:
    size = c.shape[1]
    real = _real(mask)
    i, f, g, o = (gates[:, k * size : (k + 1) * size] for k in range(4))
    total = dy + dh_rec + dh
    tanh_c = xp.tanh(c)
    dct = dc + total * o * (1.0 - tanh_c * tanh_c)
    parts = (dct * g * i * (1.0 - i), dct * c_prev * f * (1.0 - f), dct * i * (1.0 - g * g),
             total * tanh_c * o * (1.0 - o))
    for k, part in enumerate(parts):
        dgates[:, k * size : (k + 1) * size] = xp.where(real, part, 0.0)
    dc[...] = xp.where(real, dct * f, dc)
    dh[...] = xp.where(real, 0.0, dh_rec + dh)
    return dgates


@declare(
    "gru_cell_forward",
    "GRU gates r, z, n (n = tanh(xw_n + r * (hw_n + b_hn))); h = (1 - z) * n + z * h_prev",
    cpu=Numba(_cell_cpu(-1), "recurrent_numba"),
    cuda=Cuda(_gru_forward_cuda, flat=True),
)
def gru_cell_forward(
    xp: Any, xw: Any, hw: Any, b_hh: Any, h_prev: Any, mask: Any, gates: Any, h: Any
) -> Any:
    size = h.shape[1]
    hb = hw + b_hh
    gates[:, : 2 * size] = _sigmoid(xp, xw[:, : 2 * size] + hb[:, : 2 * size])
    r, z = gates[:, :size], gates[:, size : 2 * size]
    gates[:, 3 * size :] = hb[:, 2 * size :]
    gates[:, 2 * size : 3 * size] = xp.tanh(xw[:, 2 * size :] + r * gates[:, 3 * size :])
    n = gates[:, 2 * size : 3 * size]
    h[...] = xp.where(_real(mask), (1.0 - z) * n + z * h_prev, h_prev)
    return h


@declare(
    "gru_cell_backward",
    "GRU gate gradients (input side dgx, hidden side dgh), dh * z carried to h_prev",
    cpu=Numba(_cell_cpu(-2), "recurrent_numba"),
    cuda=Cuda(_gru_backward_cuda, flat=True),
)
def gru_cell_backward(
    xp: Any, dy: Any, dh_rec: Any, dh: Any, gates: Any, h_prev: Any, mask: Any, dgx: Any, dgh: Any
) -> Any:
    size = h_prev.shape[1]
    real = _real(mask)
    r, z, n, hn = (gates[:, k * size : (k + 1) * size] for k in range(4))
    total = dy + dh_rec + dh
    dn = total * (1.0 - z) * (1.0 - n * n)
    dr = dn * hn * r * (1.0 - r)
    dz = total * (h_prev - n) * z * (1.0 - z)
    for k, part in enumerate((dr, dz, dn)):
        dgx[:, k * size : (k + 1) * size] = xp.where(real, part, 0.0)
    dgh[:, : 2 * size] = dgx[:, : 2 * size]
    dgh[:, 2 * size :] = xp.where(real, dn * r, 0.0)
    dh[...] = xp.where(real, total * z, dh_rec + dh)
    return dgx
