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

from ..kernels.cpu import cpu_kernel
from ..kernels.cuda import cuda_kernel
from .registry import declare

GELU_K = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """What an activation's layer needs to know about its operations."""

    name: str
    saves: str  # "output" or "input": what the backward pass reads
    params: tuple[str, ...] = ()


ACTIVATIONS: dict[str, ActivationSpec] = {}


def _spec(name: str, saves: str, *params: str) -> None:
    ACTIVATIONS[name] = ActivationSpec(name, saves, params)


def _sigmoid(xp: Any, x: Any, out: Any) -> Any:
    # exp(-softplus(-x)): exact in both tails, never overflows.
    xp.negative(x, out=out)
    xp.logaddexp(0.0, out, out=out)
    xp.negative(out, out=out)
    return xp.exp(out, out=out)


# --- identity ---------------------------------------------------------------
_spec("identity", "output")


@declare("identity_forward", "y = x", cuda=cuda_kernel("identity_forward"))
def identity_forward(xp: Any, x: Any, out: Any) -> Any:
    if out is not x:
        out[...] = x
    return out


@declare("identity_backward", "gx = gy", cuda=cuda_kernel("identity_backward"))
def identity_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    if out is not gy:
        out[...] = gy
    return out


# --- sigmoid ----------------------------------------------------------------
_spec("sigmoid", "output")


@declare(
    "sigmoid_forward",
    "y = 1 / (1 + exp(-x))",
    cpu=cpu_kernel("sigmoid_forward"),
    cuda=cuda_kernel("sigmoid_forward"),
)
def sigmoid_forward(xp: Any, x: Any, out: Any) -> Any:
    return _sigmoid(xp, x, out)


@declare(
    "sigmoid_backward",
    "gx = gy * y * (1 - y), from the output",
    cpu=cpu_kernel("sigmoid_backward"),
    cuda=cuda_kernel("sigmoid_backward"),
)
def sigmoid_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    one_minus = 1.0 - y
    xp.multiply(gy, y, out=out)
    return xp.multiply(out, one_minus, out=out)


# --- tanh -------------------------------------------------------------------
_spec("tanh", "output")


@declare("tanh_forward", "y = tanh(x)", cuda=cuda_kernel("tanh_forward"))
def tanh_forward(xp: Any, x: Any, out: Any) -> Any:
    return xp.tanh(x, out=out)


@declare(
    "tanh_backward",
    "gx = gy * (1 - y^2), from the output",
    cpu=cpu_kernel("tanh_backward"),
    cuda=cuda_kernel("tanh_backward"),
)
def tanh_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    one_minus = y * y
    xp.subtract(1.0, one_minus, out=one_minus)
    return xp.multiply(gy, one_minus, out=out)


# --- relu -------------------------------------------------------------------
_spec("relu", "output")


@declare("relu_forward", "y = max(x, 0)", cpu=cpu_kernel("relu_forward"), cuda=cuda_kernel("relu_forward"))
def relu_forward(xp: Any, x: Any, out: Any) -> Any:
    return xp.maximum(x, 0.0, out=out)


@declare(
    "relu_backward",
    "gx = gy where y > 0, else 0, from the output",
    cpu=cpu_kernel("relu_backward"),
    cuda=cuda_kernel("relu_backward"),
)
def relu_backward(xp: Any, gy: Any, y: Any, out: Any) -> Any:
    return xp.multiply(gy, y > 0, out=out)


# --- leaky relu -------------------------------------------------------------
_spec("leaky_relu", "input", "negative_slope")


@declare(
    "leaky_relu_forward",
    "y = x if x > 0 else slope * x",
    cpu=cpu_kernel("leaky_relu_forward"),
    cuda=cuda_kernel("leaky_relu_forward"),
)
def leaky_relu_forward(xp: Any, x: Any, out: Any, negative_slope: float) -> Any:
    out[...] = xp.where(x > 0, x, x * negative_slope)
    return out


@declare(
    "leaky_relu_backward",
    "gx = gy if x > 0 else slope * gy, from the input",
    cpu=cpu_kernel("leaky_relu_backward"),
    cuda=cuda_kernel("leaky_relu_backward"),
)
def leaky_relu_backward(xp: Any, gy: Any, x: Any, out: Any, negative_slope: float) -> Any:
    out[...] = xp.where(x > 0, gy, gy * negative_slope)
    return out


# --- elu --------------------------------------------------------------------
_spec("elu", "output", "alpha")


@declare(
    "elu_forward",
    "y = x if x > 0 else alpha * (exp(x) - 1)",
    cpu=cpu_kernel("elu_forward"),
    cuda=cuda_kernel("elu_forward"),
)
def elu_forward(xp: Any, x: Any, out: Any, alpha: float) -> Any:
    out[...] = xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0.0)))
    return out


@declare(
    "elu_backward",
    "gx = gy if y > 0 else gy * (y + alpha), from the output",
    cpu=cpu_kernel("elu_backward"),
    cuda=cuda_kernel("elu_backward"),
)
def elu_backward(xp: Any, gy: Any, y: Any, out: Any, alpha: float) -> Any:
    out[...] = xp.where(y > 0, gy, gy * (y + alpha))
    return out


# --- gelu (tanh approximation) ----------------------------------------------
_spec("gelu", "input")


@declare(
    "gelu_forward",
    "y = x/2 * (1 + tanh(k * (x + 0.044715 x^3)))",
    cpu=cpu_kernel("gelu_forward"),
    cuda=cuda_kernel("gelu_forward"),
)
def gelu_forward(xp: Any, x: Any, out: Any) -> Any:
    t = xp.tanh(GELU_K * (x + GELU_C * x * x * x))
    xp.add(t, 1.0, out=t)
    xp.multiply(x, t, out=out)
    return xp.multiply(out, 0.5, out=out)


@declare(
    "gelu_backward",
    "gx = gy * d/dx of the tanh-approximated GELU, from the input",
    cpu=cpu_kernel("gelu_backward"),
    cuda=cuda_kernel("gelu_backward"),
)
def gelu_backward(xp: Any, gy: Any, x: Any, out: Any) -> Any:
    x2 = x * x
    t = xp.tanh(GELU_K * x * (1.0 + GELU_C * x2))
    du = GELU_K * (1.0 + 3.0 * GELU_C * x2)
    grad = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
    return xp.multiply(gy, grad, out=out)


# --- silu -------------------------------------------------------------------
_spec("silu", "input")


@declare(
    "silu_forward", "y = x * sigmoid(x)", cpu=cpu_kernel("silu_forward"), cuda=cuda_kernel("silu_forward")
)
def silu_forward(xp: Any, x: Any, out: Any) -> Any:
    s = _sigmoid(xp, x, xp.empty_like(x))
    return xp.multiply(x, s, out=out)


@declare(
    "silu_backward",
    "gx = gy * s * (1 + x * (1 - s)), s = sigmoid(x), from the input",
    cpu=cpu_kernel("silu_backward"),
    cuda=cuda_kernel("silu_backward"),
)
def silu_backward(xp: Any, gy: Any, x: Any, out: Any) -> Any:
    s = _sigmoid(xp, x, xp.empty_like(x))
    grad = s * (1.0 + x * (1.0 - s))
    return xp.multiply(gy, grad, out=out)


# --- softplus ---------------------------------------------------------------
_spec("softplus", "input")


@declare(
    "softplus_forward",
    "y = log(1 + exp(x)), computed without overflow",
    cpu=cpu_kernel("softplus_forward"),
    cuda=cuda_kernel("softplus_forward"),
)
def softplus_forward(xp: Any, x: Any, out: Any) -> Any:
    return xp.logaddexp(0.0, x, out=out)


@declare(
    "softplus_backward",
    "gx = gy * sigmoid(x), from the input",
    cpu=cpu_kernel("softplus_backward"),
    cuda=cuda_kernel("softplus_backward"),
)
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
    # tanh: NumPy's SIMD tanh beats a scalar compiled loop, so the CPU keeps the generic.
    cpu = None if spec.name == "tanh" else cpu_kernel(name)
    declare(name, f"z += b; y = {spec.name}(z)", cpu=cpu, cuda=cuda_kernel(name))(bias_forward)


for _activation in list(ACTIVATIONS.values()):
    _declare_bias_forward(_activation)
