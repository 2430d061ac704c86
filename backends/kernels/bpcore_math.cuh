// bpcore's per-element math, shared by the CUDA kernels and the host check.
//
// Every function here is a small __host__ __device__ inline template so that
// one text serves three compilers: NVRTC (the CuPy kernels are built with
// this file as their preamble), the host C++ compiler (the tests compile the
// same kernel bodies into a shared library and compare them with the generic
// NumPy versions), and, by mirroring, the Numba kernels.
//
// Naming: the per-element body of operation X is bp_X_at (bp_relu_backward_at
// for relu_backward; the kernel itself is bp_X), mirrored by X_at in the
// Numba kernels.  The other functions here are shared helpers.
//
// The formulas follow the generic implementations in bpcore/backends/ops:
// same evaluation order, same NaN behaviour (a NaN input gives a NaN output
// wherever the generic version gives one).
#ifndef BPCORE_MATH_CUH
#define BPCORE_MATH_CUH

#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__)
// Host build: the CUDA qualifiers mean nothing.
#include <cmath>
#include <cstddef>
#ifndef __host__
#define __host__
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __global__
#define __global__
#endif
#endif

// --- overloads that pick the float or double library function ---------------
__host__ __device__ inline float bp_exp(float x) { return expf(x); }
__host__ __device__ inline double bp_exp(double x) { return exp(x); }
__host__ __device__ inline float bp_expm1(float x) { return expm1f(x); }
__host__ __device__ inline double bp_expm1(double x) { return expm1(x); }
__host__ __device__ inline float bp_log(float x) { return logf(x); }
__host__ __device__ inline double bp_log(double x) { return log(x); }
__host__ __device__ inline float bp_log1p(float x) { return log1pf(x); }
__host__ __device__ inline double bp_log1p(double x) { return log1p(x); }
__host__ __device__ inline float bp_tanh(float x) { return tanhf(x); }
__host__ __device__ inline double bp_tanh(double x) { return tanh(x); }
__host__ __device__ inline float bp_sqrt(float x) { return sqrtf(x); }
__host__ __device__ inline double bp_sqrt(double x) { return sqrt(x); }
__host__ __device__ inline float bp_fabs(float x) { return fabsf(x); }
__host__ __device__ inline double bp_fabs(double x) { return fabs(x); }
__host__ __device__ inline float bp_erf(float x) { return erff(x); }
__host__ __device__ inline double bp_erf(double x) { return erf(x); }

// The smallest normal number of each type: state values below it are flushed.
template <typename T> struct bp_limits;
template <> struct bp_limits<float> {
    __host__ __device__ static float tiny() { return 1.17549435082228750797e-38f; }
    __host__ __device__ static float quiet_nan() { return ::nanf(""); }
};
template <> struct bp_limits<double> {
    __host__ __device__ static double tiny() { return 2.22507385850720138309e-308; }
    __host__ __device__ static double quiet_nan() { return ::nan(""); }
};

// Subnormal -> 0 (keeps the sign-free zero); NaN and Inf pass through.
template <typename T> __host__ __device__ inline T bp_flush(T v) {
    return bp_fabs(v) < bp_limits<T>::tiny() ? T(0) : v;
}

// max keeping a NaN in its first argument (fmax would drop it).
template <typename T> __host__ __device__ inline T bp_max(T a, T b) { return (a < b) ? b : a; }
// max propagating a NaN from either side, as numpy.maximum.
template <typename T> __host__ __device__ inline T bp_nanmax(T a, T b) {
    return (a != a || a > b) ? a : b;
}
// sign(x) in {-1, 0, 1}; NaN stays NaN.
template <typename T> __host__ __device__ inline T bp_sign(T x) {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x * T(0));
}

// --- activations: forward y = f(x) ------------------------------------------
// sigmoid without overflow in either tail: e = exp(-|x|) <= 1.
template <typename T> __host__ __device__ inline T bp_sigmoid(T x) {
    const T e = bp_exp(-bp_fabs(x));
    const T r = T(1) / (T(1) + e);
    return x >= T(0) ? r : e * r;
}

// log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); NaN stays NaN.
template <typename T> __host__ __device__ inline T bp_softplus(T x) {
    return (x > T(0) ? x : T(0)) + bp_log1p(bp_exp(-bp_fabs(x)));
}

#define BP_GELU_K 0.7978845608028654  /* sqrt(2 / pi) */
#define BP_GELU_C 0.044715
#define BP_GELU_ERF_SCALE 0.7071067811865476  /* sqrt(1 / 2) */
#define BP_GELU_DENSITY 0.3989422804014327  /* 1 / sqrt(2 pi) */

template <typename T> __host__ __device__ inline T bp_identity_forward_at(T x) { return x; }
template <typename T> __host__ __device__ inline T bp_sigmoid_forward_at(T x) { return bp_sigmoid(x); }
template <typename T> __host__ __device__ inline T bp_tanh_forward_at(T x) { return bp_tanh(x); }
template <typename T> __host__ __device__ inline T bp_relu_forward_at(T x) { return x < T(0) ? T(0) : x; }
template <typename T> __host__ __device__ inline T bp_leaky_relu_forward_at(T x, T slope) {
    return x > T(0) ? x : x * slope;
}
// x <= 0 or NaN takes the second branch, where expm1 keeps the NaN.
template <typename T> __host__ __device__ inline T bp_elu_forward_at(T x, T alpha) {
    return x > T(0) ? x : alpha * bp_expm1(x);
}
template <typename T> __host__ __device__ inline T bp_gelu_forward_at(T x) {
    const T t = bp_tanh(T(BP_GELU_K) * (x + T(BP_GELU_C) * x * x * x));
    return x * (t + T(1)) * T(0.5);
}
template <typename T> __host__ __device__ inline T bp_gelu_erf_forward_at(T x) {
    return x * (bp_erf(x * T(BP_GELU_ERF_SCALE)) + T(1)) * T(0.5);
}
template <typename T> __host__ __device__ inline T bp_silu_forward_at(T x) { return x * bp_sigmoid(x); }
template <typename T> __host__ __device__ inline T bp_softplus_forward_at(T x) { return bp_softplus(x); }

// --- activations: backward gx = gy * f'(x), from the saved output y or input x
template <typename T> __host__ __device__ inline T bp_identity_backward_at(T gy, T y) { return gy; }
template <typename T> __host__ __device__ inline T bp_sigmoid_backward_at(T gy, T y) {
    return gy * y * (T(1) - y);
}
template <typename T> __host__ __device__ inline T bp_tanh_backward_at(T gy, T y) {
    return gy * (T(1) - y * y);
}
// torch's threshold_backward, as the generic version: 0 where y <= 0 (even for a NaN gy), else gy.
template <typename T> __host__ __device__ inline T bp_relu_backward_at(T gy, T y) {
    return y <= T(0) ? T(0) : gy;
}
template <typename T> __host__ __device__ inline T bp_leaky_relu_backward_at(T gy, T x, T slope) {
    return x > T(0) ? gy : gy * slope;
}
template <typename T> __host__ __device__ inline T bp_elu_backward_at(T gy, T y, T alpha) {
    return y <= T(0) ? gy * (y + alpha) : gy;
}
template <typename T> __host__ __device__ inline T bp_gelu_backward_at(T gy, T x) {
    const T x2 = x * x;
    const T t = bp_tanh(T(BP_GELU_K) * x * (T(1) + T(BP_GELU_C) * x2));
    const T du = T(BP_GELU_K) * (T(1) + T(3.0 * BP_GELU_C) * x2);
    return gy * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
}
template <typename T> __host__ __device__ inline T bp_gelu_erf_backward_at(T gy, T x) {
    const T density = bp_exp(T(-0.5) * x * x) * T(BP_GELU_DENSITY);
    return gy * (T(0.5) * (T(1) + bp_erf(x * T(BP_GELU_ERF_SCALE))) + x * density);
}
template <typename T> __host__ __device__ inline T bp_silu_backward_at(T gy, T x) {
    const T s = bp_sigmoid(x);
    return gy * (s * (T(1) + x * (T(1) - s)));
}
template <typename T> __host__ __device__ inline T bp_softplus_backward_at(T gy, T x) {
    return gy * bp_sigmoid(x);
}

// --- optimiser element updates (torch.optim's rules; state flushed) -----------
// The complements (keep = 1 - dampening, alpha_c = 1 - alpha, beta_c = 1 - beta)
// come from the host, computed in double and rounded once, as torch does:
// 1 - float(0.999) is 1.3e-5 off 0.001.
// SGD with momentum, dampening, Nesterov and L2 weight decay.
template <typename T> __host__ __device__ inline void bp_sgd_step_at(
        T& p, T grad, T* buf, T lr, T momentum, T keep, T wd, bool nesterov, bool first_step) {
    T g = grad + wd * p;
    if (buf != 0) {
        T b = first_step ? g : momentum * (*buf) + keep * g;
        b = bp_flush(b);
        *buf = b;
        g = nesterov ? g + momentum * b : b;
    }
    p = p - lr * g;
}

// AdaGrad: clr is the decayed learning rate, computed on the host.
template <typename T> __host__ __device__ inline void bp_adagrad_step_at(
        T& p, T grad, T& state_sum, T clr, T wd, T eps) {
    const T g = grad + wd * p;
    const T s = bp_flush(state_sum + g * g);
    state_sum = s;
    p = p - clr * g / (bp_sqrt(s) + eps);
}

// RMSProp: plain, centered (grad_avg != 0) and with momentum (buf != 0).
template <typename T> __host__ __device__ inline void bp_rmsprop_step_at(
        T& p, T grad, T& square_avg, T* grad_avg, T* buf, T lr, T alpha, T alpha_c, T eps, T wd,
        T momentum) {
    const T g = grad + wd * p;
    const T sq = bp_flush(alpha * square_avg + alpha_c * (g * g));
    square_avg = sq;
    T avg;
    if (grad_avg != 0) {
        const T ga = bp_flush(*grad_avg + alpha_c * (g - *grad_avg));
        *grad_avg = ga;
        avg = bp_sqrt(sq - ga * ga) + eps;
    } else {
        avg = bp_sqrt(sq) + eps;
    }
    if (buf != 0) {
        const T b = bp_flush(momentum * (*buf) + g / avg);
        *buf = b;
        p = p - lr * b;
    } else {
        p = p - lr * (g / avg);
    }
}

// Adam / AdamW with optional AMSGrad (vmax != 0).  AdamW's shrink = 1 - lr * wd
// (Adam's 1), Adam's l2 = wd (AdamW's 0), step_size = lr / (1 - beta1^step)
// and bc2_sqrt = sqrt(1 - beta2^step) come from the host, as torch computes them.
template <typename T> __host__ __device__ inline void bp_adam_step_at(
        T& p, T grad, T& m, T& v, T* vmax, T shrink, T l2, T beta1_c, T beta2, T beta2_c, T eps,
        T step_size, T bc2_sqrt) {
    p = p * shrink;
    const T g = grad + l2 * p;
    const T m_new = bp_flush(m + beta1_c * (g - m));
    const T v_new = bp_flush(beta2 * v + beta2_c * (g * g));
    m = m_new;
    v = v_new;
    T second = v_new;
    if (vmax != 0) {
        second = bp_nanmax(*vmax, v_new);
        *vmax = second;
    }
    const T denom = bp_sqrt(second) / bc2_sqrt + eps;
    p = p - step_size * (m_new / denom);
}

// --- losses -----------------------------------------------------------------
// One row of softmax: probs = exp((logits - mx) - log_sum), with the row
// maximum mx and log_sum = log(sum(exp(logits - mx))) returned for the loss.
template <typename T> __host__ __device__ inline void bp_softmax_row(
        const T* logits, T* probs, long long k, T& mx, T& log_sum) {
    T m = logits[0];
    for (long long j = 1; j < k; ++j) m = bp_max(m, logits[j]);
    T total = T(0);
    for (long long j = 0; j < k; ++j) total += bp_exp(logits[j] - m);
    const T ls = bp_log(total);
    for (long long j = 0; j < k; ++j) probs[j] = bp_exp((logits[j] - m) - ls);
    mx = m;
    log_sum = ls;
}

// -sum(target * log_softmax) for one row, from bp_softmax_row's mx and log_sum.
template <typename T> __host__ __device__ inline T bp_soft_xent_row(
        const T* logits, const T* target, long long k, T mx, T log_sum) {
    T loss = T(0);
    for (long long j = 0; j < k; ++j) loss -= target[j] * ((logits[j] - mx) - log_sum);
    return loss;
}

// Binary cross-entropy on logits: log1p(exp(-|z|)) + max(z, 0) - z*t.
template <typename T> __host__ __device__ inline T bp_binary_cross_entropy_logits_forward_at(T z, T t) {
    return bp_log1p(bp_exp(-bp_fabs(z))) + (z > T(0) ? z : T(0)) - z * t;
}
// Binary cross-entropy on probabilities: (p - t) / max((1 - p) p, eps) * scale.
template <typename T> __host__ __device__ inline T bp_binary_cross_entropy_backward_at(T p, T t, T scale, T eps) {
    return (p - t) / bp_nanmax((T(1) - p) * p, eps) * scale;
}

#endif  // BPCORE_MATH_CUH
