"""CUDA kernels of the recurrent cell steps (see :mod:`bpcore.backends.ops.recurrent`).

Each cell operation is ONE ``cupy.ElementwiseKernel`` launch, ``bp_<operation>``,
with one thread per hidden unit ``(row a, unit j)`` of the ``(N, H)`` state:
the thread reads its gate pre-activations from the input projection and the
recurrent product (``raw`` arrays of ``G * H`` columns), applies every
activation and the state update and writes the saved gates; backward, it
computes all gate derivatives of its unit and the state gradients carried to
the previous step.  The bodies use the shared ``bpcore_math.cuh`` helpers
(``bp_sigmoid``, ``bp_tanh``).  The ``raw`` arrays are indexed as flat
C-order memory, so the operations' wrappers sit behind the layout guard
(``Cuda(..., flat=True)``).

Importing this module registers the kernels' sources (plain data, no CuPy).
"""

from __future__ import annotations

from .cuda_sources import Elementwise, add

_UNIT = "const long long a = i / size, j = i % size;"

for _kernel in (
    Elementwise(
        "bp_rnn_cell_forward",
        "raw T xw, raw T hw, T h_prev, raw T mask, int64 size, bool relu",
        "T h",
        _UNIT
        + " const T pre = xw[i] + hw[i];"
        " h = mask[a] > T(0) ? (relu ? (pre < T(0) ? T(0) : pre) : bp_tanh(pre)) : h_prev",
    ),
    Elementwise(
        "bp_rnn_cell_backward",
        "T dy, T dh_rec, T h, raw T mask, int64 size, bool relu",
        "T dh, T dgates",
        _UNIT
        + " if (mask[a] > T(0)) {"
        "   const T total = dy + dh_rec + dh;"
        "   dgates = relu ? (h <= T(0) ? T(0) : total) : total * (T(1) - h * h); dh = T(0);"
        " } else { dgates = T(0); dh = dh_rec + dh; }",
    ),
    Elementwise(
        "bp_lstm_cell_forward",
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
    Elementwise(
        "bp_lstm_cell_backward",
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
    Elementwise(
        "bp_gru_cell_forward",
        "raw T xw, raw T hw, raw T b_hh, T h_prev, raw T mask, int64 size",
        "raw T gates, T h",
        _UNIT
        + " const long long k = a * 3 * size + j, s = a * 4 * size + j;"
        " const T r = bp_sigmoid(xw[k] + (hw[k] + b_hh[j]));"  # the generic version's order of sums
        " const T z = bp_sigmoid(xw[k + size] + (hw[k + size] + b_hh[j + size]));"
        " const T hn = hw[k + 2 * size] + b_hh[j + 2 * size];"
        " const T cand = bp_tanh(xw[k + 2 * size] + r * hn);"
        " gates[s] = r; gates[s + size] = z; gates[s + 2 * size] = cand; gates[s + 3 * size] = hn;"
        " h = mask[a] > T(0) ? (T(1) - z) * cand + z * h_prev : h_prev",
    ),
    Elementwise(
        "bp_gru_cell_backward",
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
):
    add(_kernel)
