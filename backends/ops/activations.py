"""Elementwise activations: forward, backward and bias-plus-activation.

Each activation declares whether its backward pass reads the saved *output*
``y`` (sigmoid ``gy*y*(1-y)``, tanh ``gy*(1-y*y)``, ReLU and ELU) or the saved
*input* ``x`` (the rest), so that a layer keeps only what the derivative needs.

Signatures (``params`` are the activation's scalar parameters, e.g. the
negative slope of a leaky ReLU):

* ``<name>_forward(x, out, *params)``: ``out = f(x)``; ``out`` may be ``x``.
* ``<name>_backward(gy, saved, out, *params)``: ``out = gy * f'(x)``.
* ``bias_<name>_forward(z, b, out, *params)``: ``z += b`` then ``out = f(z)``,
  so that ``z`` holds the pre-activation afterwards; ``out`` may be ``z``
  when the backward pass reads the output.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..kernels import cpu as kcpu
from ..kernels import cuda_sources
from .registry import Cuda, Numba, declare

GELU_K = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715
GELU_ERF_SCALE = math.sqrt(0.5)  # erf(x / sqrt(2)) = 2 * Phi(x) - 1
GELU_DENSITY = 1.0 / math.sqrt(2.0 * math.pi)  # the standard normal density at 0


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """What an activation's layer needs to know about its operations."""

    name: str
    saves: str  # "output" or "input": what the backward pass reads
    params: tuple[str, ...] = ()


ACTIVATIONS: dict[str, ActivationSpec] = {}


def _spec(name: str, saves: str, *params: str) -> None:
    ACTIVATIONS[name] = ActivationSpec(name, saves, params)
    cuda_sources.add_activation(name, params)


# --- the wrappers of the compiled kernels (the same three for every activation) ----
# Kernels of the activations without a libm call, by the kind of work (see kcpu.PARALLEL_MIN).
_CHEAP = frozenset({"identity", "relu", "leaky_relu", "sigmoid", "tanh"})


# Activations whose generic versions (NumPy's SIMD tanh) beat a compiled loop on the CPU.
_GENERIC_ON_CPU = frozenset({"tanh", "gelu"})


def _kind(activation: str) -> str:
    return "cheap" if activation in _CHEAP else "transcendental"


def _cpu_forward(kind: str) -> kcpu.Wrap:
    def wrap(kernel: Any, generic: Any) -> Any:
        def forward(x: Any, out: Any, *params: float) -> Any:
            kcpu.pick(kernel, x.size, kind)(x.reshape(-1), out.reshape(-1), kcpu.param(out, params))
            return out

        return forward

    return wrap


def _cpu_bias_forward(kind: str) -> kcpu.Wrap:
    def wrap(kernel: Any, generic: Any) -> Any:
        from ..kernels.bias_activation_numba import INPLACE  # Numba is wanted once a wrapper is built

        inplace = INPLACE.get(kernel.name.removeprefix("bias_").removesuffix("_forward"))
        parallel_min = kcpu.PARALLEL_MIN[kind]

        def bias_forward(z: Any, b: Any, out: Any, *params: float) -> Any:
            if z.ndim != 2 or b.shape != z.shape[1:]:
                return generic(z, b, out, *params)
            p = kcpu.param(out, params)
            cols = max(z.shape[1], 1)
            if out is z and inplace is not None and z.size < parallel_min:
                inplace(z.reshape(-1), b, p, cols)  # one store per element: vectorised
                return out
            kcpu.pick(kernel, z.size, kind)(z.reshape(-1), b, out.reshape(-1), p, cols)
            return out

        return bias_forward

    return wrap


def _cpu_backward(kind: str) -> kcpu.Wrap:
    def wrap(kernel: Any, generic: Any) -> Any:
        def backward(gy: Any, saved: Any, out: Any, *params: float) -> Any:
            p = kcpu.param(out, params)
            kcpu.pick(kernel, out.size, kind)(gy.reshape(-1), saved.reshape(-1), out.reshape(-1), p)
            return out

        return backward

    return wrap


def _cuda_forward(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def forward(x: Any, out: Any, *params: float) -> Any:
        kernel(x, *params, out)
        return out

    return forward


def _cuda_bias_forward(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def bias_forward(z: Any, b: Any, out: Any, *params: float) -> Any:
        kernel(b, *params, z, out)
        return out

    return bias_forward


def _cuda_backward(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def backward(gy: Any, saved: Any, out: Any, *params: float) -> Any:
        kernel(gy, saved, *params, out)
        return out

    return backward


def _forward(activation: str, *, cpu: bool = True) -> dict[str, Any]:
    """The compiled versions of ``<activation>_forward`` (``cpu=False``: the generic one is faster)."""
    return {"cpu": Numba(_cpu_forward(_kind(activation))) if cpu else None, "cuda": Cuda(_cuda_forward)}


def _backward(activation: str, *, cpu: bool = True) -> dict[str, Any]:
    return {"cpu": Numba(_cpu_backward(_kind(activation))) if cpu else None, "cuda": Cuda(_cuda_backward)}


def _sigmoid(xp: Any, x: Any, out: Any) -> Any:
    # exp(-softplus(-x)): exact in both tails, never overflows.
    xp.negative(x, out=out)
    xp.logaddexp(0.0, out, out=out)
    xp.negative(out, out=out)
    return xp.exp(out, out=out)


# --- identity ---------------------------------------------------------------
_spec("identity", "output")


@declare("identity_forward", "y = x", **_forward("identity", cpu=False))
def identity_forward(xp: Any, x: Any, out: Any) -> Any:
    if out is not x:
        out[...] = x
    return out


@declare("identity_backward", "gx = gy", **_backward("identity", cpu=False))
def identity_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    if out is not gy:
        out[...] = gy
    return out


# --- sigmoid ----------------------------------------------------------------
_spec("sigmoid", "output")


@declare("sigmoid_forward", "y = 1 / (1 + exp(-x))", **_forward("sigmoid"))
def sigmoid_forward(xp: Any, x: Any, out: Any) -> Any:
    return _sigmoid(xp, x, out)


@declare("sigmoid_backward", "gx = gy * y * (1 - y), from the output", **_backward("sigmoid"))
def sigmoid_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    one_minus = 1.0 - y
    xp.multiply(gy, y, out=out)
    return xp.multiply(out, one_minus, out=out)


# --- tanh -------------------------------------------------------------------
_spec("tanh", "output")


@declare("tanh_forward", "y = tanh(x)", **_forward("tanh", cpu=False))
def tanh_forward(xp: Any, x: Any, out: Any) -> Any:
    return xp.tanh(x, out=out)


@declare("tanh_backward", "gx = gy * (1 - y^2), from the output", **_backward("tanh"))
def tanh_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    one_minus = y * y
    xp.subtract(1.0, one_minus, out=one_minus)
    return xp.multiply(gy, one_minus, out=out)


# --- relu -------------------------------------------------------------------
_spec("relu", "output")


@declare("relu_forward", "y = max(x, 0)", **_forward("relu"))
def relu_forward(xp: Any, x: Any, out: Any) -> Any:
    return xp.maximum(x, 0.0, out=out)


@declare("relu_backward", "gx = 0 where y <= 0, else gy, from the output", **_backward("relu"))
def relu_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    # A select, not gy * (y > 0): a NaN gradient where the unit is off gives 0 and a NaN
    # output passes its gradient on, as in torch.
    out[...] = xp.where(y <= 0, 0.0, gy)
    return out


# --- leaky relu -------------------------------------------------------------
_spec("leaky_relu", "input", "negative_slope")


@declare("leaky_relu_forward", "y = x if x > 0 else slope * x", **_forward("leaky_relu"))
def leaky_relu_forward(xp: Any, x: Any, out: Any, negative_slope: float) -> Any:
    out[...] = xp.where(x > 0, x, x * negative_slope)
    return out


@declare("leaky_relu_backward", "gx = gy if x > 0 else slope * gy, from the input", **_backward("leaky_relu"))
def leaky_relu_backward(xp: Any, gy: Any, x: Any, out: Any, negative_slope: float) -> Any:
    out[...] = xp.where(x > 0, gy, gy * negative_slope)
    return out


# --- elu --------------------------------------------------------------------
_spec("elu", "output", "alpha")


@declare("elu_forward", "y = x if x > 0 else alpha * (exp(x) - 1)", **_forward("elu"))
def elu_forward(xp: Any, x: Any, out: Any, alpha: float) -> Any:
    out[...] = xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0.0)))
    return out


@declare("elu_backward", "gx = gy * (y + alpha) if y <= 0 else gy, from the output", **_backward("elu"))
def elu_backward(xp: Any, gy: Any, y: Any, out: Any, alpha: float) -> Any:
    out[...] = xp.where(y <= 0, gy * (y + alpha), gy)  # a NaN output passes gy, as in torch
    return out


# --- gelu (tanh approximation) ----------------------------------------------
# The CPU keeps the generic versions, as for tanh: NumPy's SIMD tanh beats the compiled loop's libm
# call per element (float32, a 784-256-256-10 MLP's training step at batch 128 on a 2-core Intel
# Xeon: 4.9-5.2 ms generic, 8.9-10.0 ms with the Numba kernels; float64 about even).
_spec("gelu", "input")


def _gelu_from(xp: Any, x: Any, t: Any, out: Any) -> Any:
    """``out = x/2 * (1 + t)``, both GELU forms' last step (``t`` the tanh or the erf term, overwritten)."""
    xp.add(t, 1.0, out=t)
    xp.multiply(x, t, out=out)
    return xp.multiply(out, 0.5, out=out)


@declare("gelu_forward", "y = x/2 * (1 + tanh(k * (x + 0.044715 x^3)))", **_forward("gelu", cpu=False))
def gelu_forward(xp: Any, x: Any, out: Any) -> Any:
    return _gelu_from(xp, x, xp.tanh(GELU_K * (x + GELU_C * x * x * x)), out)


@declare(
    "gelu_backward",
    "gx = gy * d/dx of the tanh-approximated GELU, from the input",
    **_backward("gelu", cpu=False),
)
def gelu_backward(xp: Any, gy: Any, x: Any, out: Any) -> Any:
    x2 = x * x
    t = xp.tanh(GELU_K * x * (1.0 + GELU_C * x2))
    du = GELU_K * (1.0 + 3.0 * GELU_C * x2)
    grad = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
    return xp.multiply(gy, grad, out=out)


# --- gelu (exact: the erf form) ----------------------------------------------
_spec("gelu_erf", "input")

_erf_per_element = np.frompyfunc(math.erf, 1, 1)


def _erf(xp: Any, x: Any, out: Any) -> Any:
    """erf of ``x`` into ``out``: CuPy's, SciPy's where installed, else the standard library's per element.

    Neither NumPy nor CuPy has erf itself.  This generic version serves only
    where no compiled kernel does (the CPU's Numba kernel and the CUDA kernel
    call the C library's erf); without SciPy it is a Python call per element.
    """
    if xp is not np:
        from cupyx.scipy.special import erf as cupy_erf

        return cupy_erf(x, out=out)
    try:
        from scipy.special import erf
    except ImportError:
        out[...] = _erf_per_element(x)
        return out
    return erf(x, out=out)


@declare("gelu_erf_forward", "y = x/2 * (1 + erf(x / sqrt(2)))", **_forward("gelu_erf"))
def gelu_erf_forward(xp: Any, x: Any, out: Any) -> Any:
    return _gelu_from(xp, x, _erf(xp, x * GELU_ERF_SCALE, xp.empty_like(x)), out)


@declare(
    "gelu_erf_backward",
    "gx = gy * (Phi(x) + x * phi(x)), the normal distribution's cdf and density, from the input",
    **_backward("gelu_erf"),
)
def gelu_erf_backward(xp: Any, gy: Any, x: Any, out: Any) -> Any:
    e = _erf(xp, x * GELU_ERF_SCALE, xp.empty_like(x))
    density = xp.exp(-0.5 * x * x) * GELU_DENSITY
    grad = 0.5 * (1.0 + e) + x * density
    return xp.multiply(gy, grad, out=out)


# --- silu -------------------------------------------------------------------
_spec("silu", "input")


@declare("silu_forward", "y = x * sigmoid(x)", **_forward("silu"))
def silu_forward(xp: Any, x: Any, out: Any) -> Any:
    s = _sigmoid(xp, x, xp.empty_like(x))
    return xp.multiply(x, s, out=out)


@declare(
    "silu_backward", "gx = gy * s * (1 + x * (1 - s)), s = sigmoid(x), from the input", **_backward("silu")
)
def silu_backward(xp: Any, gy: Any, x: Any, out: Any) -> Any:
    s = _sigmoid(xp, x, xp.empty_like(x))
    grad = s * (1.0 + x * (1.0 - s))
    return xp.multiply(gy, grad, out=out)


# --- softplus ---------------------------------------------------------------
_spec("softplus", "input")


@declare("softplus_forward", "y = log(1 + exp(x)), computed without overflow", **_forward("softplus"))
def softplus_forward(xp: Any, x: Any, out: Any) -> Any:
    return xp.logaddexp(0.0, x, out=out)


@declare("softplus_backward", "gx = gy * sigmoid(x), from the input", **_backward("softplus"))
def softplus_backward(xp: Any, gy: Any, x: Any, out: Any) -> Any:
    s = _sigmoid(xp, x, xp.empty_like(x))
    return xp.multiply(gy, s, out=out)


# --- bias + activation, one declaration per activation -----------------------
def _declare_bias_forward(spec: ActivationSpec) -> None:
    from .registry import OPERATIONS

    forward = OPERATIONS[f"{spec.name}_forward"].generic

    def bias_forward(xp: Any, z: Any, b: Any, out: Any, *params: float) -> Any:
        xp.add(z, b, out=z)
        return forward(xp, z, out, *params)

    name = f"bias_{spec.name}_forward"
    bias_forward.__name__ = name
    # tanh and the tanh GELU: NumPy's SIMD tanh beats a scalar compiled loop, so the CPU keeps the generic.
    cpu = None if spec.name in _GENERIC_ON_CPU else Numba(_cpu_bias_forward(_kind(spec.name)))
    declare(name, f"z += b; y = {spec.name}(z)", cpu=cpu, cuda=Cuda(_cuda_bias_forward))(bias_forward)


for _activation in list(ACTIVATIONS.values()):
    _declare_bias_forward(_activation)
