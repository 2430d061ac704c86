"""The CUDA kernels' source text, as plain data (no CuPy needed to read it).

Three kinds of kernel, each described here once and used by both
:mod:`.cuda` (which builds the CuPy kernels on a GPU) and the tests (which
compile exactly the same text with NVRTC and with the host C++ compiler):

* :class:`Elementwise`: a ``cupy.ElementwiseKernel`` (parameters, one body
  per element, ``bpcore_math.cuh`` as preamble).  CuPy indexes with 64-bit
  integers when an array needs it.
* :class:`Reduction`: a ``cupy.ReductionKernel`` (map, reduce and post-map
  expressions).
* :data:`RAW_SOURCE`: templated ``__global__`` kernels for the row- and
  column-wise work (softmax cross-entropy rows, batch-norm columns), built with
  ``cupy.RawModule`` and instantiated by :data:`RAW_NAME_EXPRESSIONS` for
  float and double.  They use 64-bit grid-stride loops and no shared memory
  or synchronisation inside a launch (batch normalisation is split into three
  launches for that), so a sequential emulation of each launch on the host
  is exact.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from typing import Any

HEADER_NAME = "bpcore_math.cuh"
# NVRTC options shared by CuPy's build and the compile test.
NVRTC_OPTIONS = ("--std=c++17",)


@functools.lru_cache(maxsize=1)
def header_source() -> str:
    """The text of ``bpcore_math.cuh`` (shipped as package data)."""
    return resources.files(__package__).joinpath(HEADER_NAME).read_text(encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class Param:
    """One kernel parameter: ``[raw] type name``."""

    type: str
    name: str
    raw: bool = False

    @property
    def is_array(self) -> bool:
        # A type placeholder (one capital letter) or "raw" means an array;
        # an explicit type (float64, int64, bool) means a scalar.
        return self.raw or (len(self.type) == 1 and self.type.isupper())


def parse_params(text: str) -> tuple[Param, ...]:
    """Parse a CuPy parameter list such as ``"T x, raw T y, float64 lr"``."""
    params = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        raw = words[0] == "raw"
        if raw:
            words = words[1:]
        params.append(Param(words[0], words[1], raw))
    return tuple(params)


@dataclasses.dataclass(frozen=True)
class Elementwise:
    """A ``cupy.ElementwiseKernel``: the same strings CuPy compiles."""

    name: str
    in_params: str
    out_params: str
    body: str


@dataclasses.dataclass(frozen=True)
class Reduction:
    """A ``cupy.ReductionKernel`` over all elements, reduced in ``reduce_type``."""

    name: str
    in_params: str
    out_params: str
    map_expr: str
    reduce_expr: str
    post_map_expr: str
    identity: str
    reduce_type: str


ELEMENTWISE: dict[str, Elementwise] = {}
REDUCTIONS: dict[str, Reduction] = {}


def add(kernel: Elementwise | Reduction) -> None:
    """Register a kernel's source under its name (``bp_<operation>[_<part>]``); each name once.

    The kernels of this module register themselves; a topic's own kernel
    module (``backends/kernels/<topic>_cuda.py``) calls this for its own.
    """
    table: dict[str, Any] = REDUCTIONS if isinstance(kernel, Reduction) else ELEMENTWISE
    if kernel.name in ELEMENTWISE or kernel.name in REDUCTIONS:
        if table.get(kernel.name) == kernel:
            return
        raise ValueError(f"CUDA kernel {kernel.name!r} is defined twice")
    table[kernel.name] = kernel


# --- activations ---------------------------------------------------------------------
def add_activation(name: str, params: tuple[str, ...] = ()) -> None:
    """Add the kernels of activation ``name`` (with scalar ``params``) to :data:`ELEMENTWISE`.

    ``bp_<name>_forward``, ``bp_<name>_backward`` and ``bp_bias_<name>_forward``,
    over the per-element math ``bp_<name>_forward_at`` / ``bp_<name>_backward_at``
    of ``bpcore_math.cuh``.  Called by the activations' declarations.
    """
    scalars = "".join(f", float64 {p}" for p in params)
    args = "".join(f", (T){p}" for p in params)
    add(Elementwise(f"bp_{name}_forward", f"T x{scalars}", "T y", f"y = bp_{name}_forward_at(x{args})"))
    add(
        Elementwise(
            f"bp_{name}_backward", f"T gy, T s{scalars}", "T gx", f"gx = bp_{name}_backward_at(gy, s{args})"
        )
    )
    # z may be the same array as y: z is written first, then y = f(z).
    add(
        Elementwise(
            f"bp_bias_{name}_forward",
            f"T b{scalars}",
            "T z, T y",
            f"const T v = z + b; z = v; y = bp_{name}_forward_at(v{args})",
        )
    )


# --- optimisers ----------------------------------------------------------------------
add(
    Elementwise(
        "bp_sgd_step_momentum",
        "T grad, float64 lr, float64 momentum, float64 keep, float64 wd, bool nesterov, bool first_step",
        "T param, T buf",
        "bp_sgd_step_at<T>(param, grad, &buf, (T)lr, (T)momentum, (T)keep, (T)wd, nesterov, first_step)",
    )
)
add(
    Elementwise(
        "bp_sgd_step_plain",
        "T grad, float64 lr, float64 wd",
        "T param",
        "bp_sgd_step_at<T>(param, grad, (T*)0, (T)lr, T(0), T(1), (T)wd, false, false)",
    )
)
add(
    Elementwise(
        "bp_adagrad_step",
        "T grad, float64 clr, float64 wd, float64 eps",
        "T param, T state_sum",
        "bp_adagrad_step_at<T>(param, grad, state_sum, (T)clr, (T)wd, (T)eps)",
    )
)
# Optional state arrays are "raw" (they may be 0-size) and touched only when used.
add(
    Elementwise(
        "bp_rmsprop_step",
        "T grad, float64 lr, float64 alpha, float64 alpha_c, float64 eps, float64 wd, float64 momentum, "
        "bool centered, bool use_momentum",
        "T param, T square_avg, raw T grad_avg, raw T buf",
        "bp_rmsprop_step_at<T>(param, grad, square_avg, centered ? &grad_avg[i] : (T*)0, "
        "use_momentum ? &buf[i] : (T*)0, (T)lr, (T)alpha, (T)alpha_c, (T)eps, (T)wd, (T)momentum)",
    )
)
add(
    Elementwise(
        "bp_adam_step",
        "T grad, float64 shrink, float64 l2, float64 beta1_c, float64 beta2, float64 beta2_c, float64 eps, "
        "float64 step_size, float64 bc2_sqrt, bool amsgrad",
        "T param, T m, T v, raw T vmax",
        "bp_adam_step_at<T>(param, grad, m, v, amsgrad ? &vmax[i] : (T*)0, (T)shrink, (T)l2, (T)beta1_c, "
        "(T)beta2, (T)beta2_c, (T)eps, (T)step_size, (T)bc2_sqrt)",
    )
)
add(
    Elementwise(
        "bp_l1_l2_grad",
        "T grad, T p, T mask, float64 l1, float64 l2",
        "T res",
        "res = grad + mask * ((T)l1 * bp_sign(p) + (T)l2 * p)",
    )
)
# factor is a 0-d device array (broadcast): the clip coefficient never visits the host.
add(Elementwise("bp_scale_inplace", "F factor", "T x", "x = (T)(x * factor)"))
add(
    Reduction(
        "bp_grad_norm_sq",
        "T x",
        "U total",
        "(double)x * (double)x",
        "a + b",
        "total = (U)a",
        "0",
        "double",
    )
)

# --- losses ----------------------------------------------------------------------------
add(
    Elementwise(
        "bp_softmax_cross_entropy_backward", "T p, T t, float64 scale", "T g", "g = (p - t) * (T)scale"
    )
)
add(
    Elementwise(
        "bp_softmax_cross_entropy_index_backward",
        "T p, raw int64 labels, int64 k, float64 scale",
        "T g",
        "const long long label = labels[i / k]; "
        "g = label < 0 ? T(0) : p * (T)scale - ((long long)(i % k) == label ? (T)scale : T(0))",
    )
)
add(
    Elementwise(
        "bp_binary_cross_entropy_logits_forward",
        "T z, T t",
        "T loss",
        "loss = bp_binary_cross_entropy_logits_forward_at(z, t)",
    )
)
add(
    Elementwise(
        "bp_binary_cross_entropy_logits_backward",
        "T z, T t, float64 scale",
        "T g",
        "g = (bp_sigmoid(z) - t) * (T)scale",
    )
)
add(
    Elementwise(
        "bp_binary_cross_entropy_backward",
        "T p, T t, float64 scale, float64 eps",
        "T g",
        "g = bp_binary_cross_entropy_backward_at(p, t, (T)scale, (T)eps)",
    )
)

# --- dropout -----------------------------------------------------------------------------
add(
    Elementwise(
        "bp_dropout_forward",
        "T x, T u, float64 p, float64 keep_scale",
        "T y, T mask",
        "const T s = u >= (T)p ? (T)keep_scale : T(0); mask = s; y = x * s",
    )
)
add(Elementwise("bp_dropout_backward", "T a, T b", "T c", "c = a * b"))


# --- whole-buffer and per-row operations of custom loops (``raw`` arrays are indexed flat) -------------
add(
    Elementwise(
        "bp_polyak_update", "T source, T keep, T take", "T target", "target = target * keep + take * source"
    )
)
add(Elementwise("bp_clamp_inplace", "T low, T high", "T x", "x = x < low ? low : (x > high ? high : x)"))
add(
    Elementwise(
        "bp_gather_rows",
        "raw T values, S index, int64 cols",
        "T out",
        "out = values[i * cols + (long long)index]",
    )
)
add(
    Elementwise(
        "bp_scatter_rows",
        "raw T grad, raw S index, int64 cols",
        "T out",
        "long long r = i / cols; out = ((long long)index[r] == i - r * cols) ? grad[r] : (T)0",
    )
)


# --- row and column kernels --------------------------------------------------------------
RAW_SOURCE = r"""
// Softmax cross-entropy, one thread per row (k is small for classifiers; a
// row is read three times from cache): with probability targets, and with
// integer labels (a negative label is ignored: loss 0; one of k or more gives NaN).
template <typename T>
__global__ void bp_softmax_cross_entropy_forward(const T* logits, const T* target, T* probs,
                                                 T* losses, long long n, long long k) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < n; r += stride) {
        const long long base = r * k;
        T mx, log_sum;
        bp_softmax_row(logits + base, probs + base, k, mx, log_sum);
        losses[r] = bp_soft_xent_row(logits + base, target + base, k, mx, log_sum);
    }
}

template <typename T>
__global__ void bp_softmax_cross_entropy_index_forward(const T* logits, const long long* labels,
                                                       T* probs, T* losses, long long n, long long k) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < n; r += stride) {
        const long long base = r * k;
        T mx, log_sum;
        bp_softmax_row(logits + base, probs + base, k, mx, log_sum);
        const long long label = labels[r];
        // A negative label is an ignored position (CrossEntropy's ignore_index): no loss.
        losses[r] = label < 0    ? T(0)
                    : label < k ? (mx - logits[base + label]) + log_sum
                                : bp_limits<T>::quiet_nan();
    }
}

// Batch normalisation over the rows of x (n, f), in three launches that each
// fill the GPU (one thread per feature column would run f threads: a single
// block for f = 256).  Pass 1: thread (c, j) sums rows [c*chunk, (c+1)*chunk)
// of column j in float64 into partial[c*f + j] (first sum) and
// partial[(chunks + c)*f + j] (second sum); adjacent threads read adjacent
// columns, so every read is coalesced.  Pass 2: one thread per column adds its
// chunks in order (the result does not depend on the launch) and derives the
// column's statistics.  Pass 3: one thread per element.  No shared memory, no
// synchronisation inside a launch.
template <typename T>
__global__ void bp_batchnorm_forward_train_partial(const T* x, double* partial, long long n, long long f,
                                         long long chunk, long long chunks) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < chunks * f; t += stride) {
        const long long j = t % f, c = t / f;
        const long long end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        // Shifted by the column's first value, so that a large common offset does not cancel.
        const double shift = (double)x[j];
        double s1 = 0.0, s2 = 0.0;
        for (long long r = c * chunk; r < end; ++r) {
            const double d = (double)x[r * f + j] - shift;
            s1 += d;
            s2 += d * d;
        }
        partial[c * f + j] = s1;
        partial[(chunks + c) * f + j] = s2;
    }
}

// Biased variance to normalise, unbiased for running_var (PyTorch's rules).
// mean[j] keeps the batch mean in float64 for pass 3.
template <typename T>
__global__ void bp_batchnorm_forward_train_stats(const T* x, const double* partial, T* running_mean,
                                       T* running_var, double momentum, double eps, T* inv_std,
                                       double* mean, long long n, long long f, long long chunks) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < f; j += stride) {
        double s1 = 0.0, s2 = 0.0;
        for (long long c = 0; c < chunks; ++c) {
            s1 += partial[c * f + j];
            s2 += partial[(chunks + c) * f + j];
        }
        const double mean_shift = s1 / (double)n;
        double var = s2 / (double)n - mean_shift * mean_shift;
        if (var < 0.0) var = 0.0;
        const double m = (double)x[j] + mean_shift;
        mean[j] = m;
        inv_std[j] = (T)(1.0 / bp_sqrt(var + eps));
        running_mean[j] = (T)((1.0 - momentum) * (double)running_mean[j] + momentum * m);
        running_var[j] = (T)((1.0 - momentum) * (double)running_var[j]
                             + momentum * var * (double)n / (double)(n - 1));
    }
}

template <typename T>
__global__ void bp_batchnorm_forward_train_apply(const T* x, const T* gamma, const T* beta,
                                                 const double* mean, const T* inv_std, T* out, T* xhat,
                                                 long long n, long long f) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n * f; i += stride) {
        const long long j = i % f;
        const T h = (x[i] - (T)mean[j]) * inv_std[j];
        xhat[i] = h;
        out[i] = h * gamma[j] + beta[j];
    }
}

// Backward, the same three passes: sums of gy and gy * xhat per column in
// float64; grad_beta / grad_gamma (added when accumulating), with this call's
// sums kept, rounded to T, in sums[j] and sums[f + j]; then the three-term
// input gradient per element.
template <typename T>
__global__ void bp_batchnorm_backward_partial(const T* gy, const T* xhat, double* partial, long long n,
                                         long long f, long long chunk, long long chunks) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < chunks * f; t += stride) {
        const long long j = t % f, c = t / f;
        const long long end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        double sb = 0.0, sg = 0.0;
        for (long long r = c * chunk; r < end; ++r) {
            const double g = (double)gy[r * f + j];
            sb += g;
            sg += g * (double)xhat[r * f + j];
        }
        partial[c * f + j] = sb;
        partial[(chunks + c) * f + j] = sg;
    }
}

template <typename T>
__global__ void bp_batchnorm_backward_stats(const double* partial, T* grad_gamma, T* grad_beta,
                                       double* sums, bool accumulate, long long f, long long chunks) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < f; j += stride) {
        double sb = 0.0, sg = 0.0;
        for (long long c = 0; c < chunks; ++c) {
            sb += partial[c * f + j];
            sg += partial[(chunks + c) * f + j];
        }
        const T db = (T)sb, dg = (T)sg;
        grad_beta[j] = accumulate ? grad_beta[j] + db : db;
        grad_gamma[j] = accumulate ? grad_gamma[j] + dg : dg;
        sums[j] = (double)db;
        sums[f + j] = (double)dg;
    }
}

template <typename T>
__global__ void bp_batchnorm_backward_apply(const T* gy, const T* xhat, const T* gamma, const T* inv_std,
                                       const double* sums, T* out, long long n, long long f) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const T inv_n = T(1.0 / (double)n);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n * f; i += stride) {
        const long long j = i % f;
        const T db = (T)sums[j], dg = (T)sums[f + j];
        out[i] = (gy[i] - (db + xhat[i] * dg) * inv_n) * (gamma[j] * inv_std[j]);
    }
}
"""

RAW_KERNELS = (
    "bp_softmax_cross_entropy_forward",
    "bp_softmax_cross_entropy_index_forward",
    "bp_batchnorm_forward_train_partial",
    "bp_batchnorm_forward_train_stats",
    "bp_batchnorm_forward_train_apply",
    "bp_batchnorm_backward_partial",
    "bp_batchnorm_backward_stats",
    "bp_batchnorm_backward_apply",
)
RAW_NAME_EXPRESSIONS = tuple(f"{kernel}<{ctype}>" for kernel in RAW_KERNELS for ctype in ("float", "double"))
