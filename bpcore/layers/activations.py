"""Activation layers: elementwise non-linearities and softmax.

The elementwise ones run the backend's hot operations (fused kernels where
available) and keep only what the derivative needs: the output for sigmoid,
tanh, ReLU and ELU, the input for the others.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import checks
from ..backends.kernels.layout import unguarded
from ..backends.ops import ACTIVATIONS
from .base import Layer, Shape


def _finite(argument: str, value: Any) -> float:
    """``value`` as a float, or a clear error if it is not a finite real number."""
    return checks.real(value, argument)


class Activation(Layer):
    """An elementwise activation named in the backend's operation registry.

    Its operations are looked up on the backend at first use and then kept,
    so a call in a training step costs no name lookups.
    """

    kind = "identity"

    def __init__(self) -> None:
        super().__init__()
        spec = ACTIVATIONS[self.kind]
        self.saves_output = spec.saves == "output"
        self._saved: Any = None
        self._ops: dict[str, Any] = {}
        self._param_values: tuple[float, ...] | None = None

    @property
    def params(self) -> tuple[float, ...]:
        """The activation's scalar parameters, in the order its operations take them."""
        return tuple(float(getattr(self, name)) for name in ACTIVATIONS[self.kind].params)

    def config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ACTIVATIONS[self.kind].params}

    def build(self, input_shape: Shape | None, dtype: Any, backend: Any) -> Shape | None:
        self._ops = {}
        self._param_values = self.params
        self._saved = None
        return super().build(input_shape, dtype, backend)

    def to(self, backend: Any) -> None:
        super().to(backend)
        self._ops = {}
        self._saved = None

    def use_kernels(self, backend: Any) -> None:
        super().use_kernels(backend)
        self._ops = {}

    def _op(self, role: str) -> Any:
        operation = self._ops.get(role)
        if operation is None:
            operation = self._ops[role] = getattr(self.backend.ops, role.format(self.kind))
        return operation

    def _kernel(self, role: str) -> Any:
        """The operation without its layout guard, for arrays C-contiguous by construction."""
        key = "kernel:" + role
        operation = self._ops.get(key)
        if operation is None:
            operation = self._ops[key] = unguarded(self._op(role))
        return operation

    def forward(self, x: Any, training: bool) -> Any:
        out = self.workspace("out", x.shape)
        self._op("{}_forward")(x, out, *self._param_values)  # type: ignore[misc]
        self._saved = out if self.saves_output else x
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._saved is None:
            raise self._not_run()
        grad_in = self.workspace("grad_in", grad_out.shape)
        return self._op("{}_backward")(grad_out, self._saved, grad_in, *self._param_values)  # type: ignore[misc]

    def forward_in_place(self, x: Any) -> Any:
        """``f(x)`` fused after a layer that owns ``x`` (a Conv2D's output buffer), over ``x`` where it can.

        An activation whose backward reads its output overwrites ``x``; one
        that reads its input keeps ``x`` and writes into its own buffer.
        """
        out = x if self.saves_output else self.workspace("out", x.shape)
        self._op("{}_forward")(x, out, *self._param_values)  # type: ignore[misc]
        self._saved = out if self.saves_output else x
        return out

    def bias_forward(self, z: Any, b: Any) -> Any:
        """``f(z + b)`` fused after a Dense layer's matrix product; ``z`` is overwritten.

        ``z`` (the caller's workspace) and ``b`` (a parameter, a view of the
        flat buffer) are C-contiguous by construction, so the kernel runs
        without the layout check.
        """
        out = z if self.saves_output else self.workspace("out", z.shape)
        self._kernel("bias_{}_forward")(z, b, out, *self._param_values)  # type: ignore[misc]
        self._saved = out if self.saves_output else z
        return out

    def record_output(self, out: Any) -> None:
        """Keep ``out``, the output a layer this activation is fused into computed itself, for the backward.

        For an activation whose backward reads its output (ReLU, sigmoid, ELU):
        a Dense layer's one-pass product, bias and ReLU (``small_dense_forward``).
        """
        self._saved = out

    def fused_backward(self, grad_out: Any) -> Any:
        """:meth:`backward` for the layer this activation is fused into; ``grad_out`` C-contiguous.

        What it reads besides ``grad_out`` (the saved output or input of
        :meth:`bias_forward`) and what it writes (a workspace) are
        C-contiguous by construction, so the caller's one check of
        ``grad_out`` replaces the kernel's layout check.
        """
        if self._saved is None:
            raise self._not_run()
        grad_in = self.workspace("grad_in", grad_out.shape)
        return self._kernel("{}_backward")(grad_out, self._saved, grad_in, *self._param_values)  # type: ignore[misc]


    def fused_bias_backward(self, grad_out: Any, grad_bias: Any) -> Any:
        """:meth:`fused_backward` that also writes the bias gradient, its column sums, into ``grad_bias``.

        One pass (``<kind>_bias_backward``, which only ReLU declares: the
        caller checks ``kind``); ``grad_bias`` C-contiguous, as the rest.
        """
        if self._saved is None:
            raise self._not_run()
        grad_in = self.workspace("grad_in", grad_out.shape)
        return self._kernel("{}_bias_backward")(grad_out, self._saved, grad_in, grad_bias)  # type: ignore[misc]


class Identity(Activation):
    """y = x."""

    kind = "identity"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x))."""

    kind = "sigmoid"


class Tanh(Activation):
    """y = tanh(x)."""

    kind = "tanh"


class ReLU(Activation):
    """y = max(x, 0)."""

    kind = "relu"


class LeakyReLU(Activation):
    """y = x for x > 0, else negative_slope * x."""

    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = _finite("LeakyReLU(negative_slope)", negative_slope)
        super().__init__()


class ELU(Activation):
    """y = x for x > 0, else alpha * (exp(x) - 1)."""

    kind = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _finite("ELU(alpha)", alpha)
        if not self.alpha > 0:
            raise ValueError(f"ELU(alpha): expected a positive number, got {alpha!r}")
        super().__init__()


class GELU(Activation):
    """Gaussian error linear unit ``y = x * Phi(x)``, ``Phi`` the standard normal distribution function.

    PyTorch's ``GELU``, with its argument and default: ``approximate="none"``
    is the exact form ``x/2 * (1 + erf(x / sqrt(2)))``; ``approximate="tanh"``
    the tanh approximation ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``
    (within 1e-3 of it).  The compiled kernels (Numba on the CPU, CUDA on the
    GPU) call the C library's erf; the generic version uses SciPy's (CuPy's
    on a GPU) and, without SciPy, Python's ``math.erf`` per element.
    """

    #: The operations of each form.
    KINDS: ClassVar[dict[str, str]] = {"none": "gelu_erf", "tanh": "gelu"}

    def __init__(self, approximate: str = "none") -> None:
        self.approximate = checks.choice(approximate, "GELU(approximate)", tuple(self.KINDS))
        self.kind = self.KINDS[self.approximate]
        super().__init__()

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


class SiLU(Activation):
    """y = x * sigmoid(x) (also called swish)."""

    kind = "silu"


class Softplus(Activation):
    """y = log(1 + exp(x)), a smooth ReLU."""

    kind = "softplus"


class Softmax(Layer):
    """Normalised exponentials along ``axis``; its backward is the full Jacobian product.

    For classification prefer :class:`bpcore.losses.CrossEntropy` on logits,
    which fuses the softmax into the loss and is exact in both tails.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = checks.integer(axis, "Softmax(axis)")
        self._saved: Any = None

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def build(self, input_shape: Shape | None, dtype: Any, backend: Any) -> Shape | None:
        self._saved = None
        return super().build(input_shape, dtype, backend)

    def to(self, backend: Any) -> None:
        super().to(backend)
        self._saved = None

    def forward(self, x: Any, training: bool) -> Any:
        xp = self.backend.xp
        out = self.workspace("out", x.shape)
        xp.subtract(x, x.max(axis=self.axis, keepdims=True), out=out)
        xp.exp(out, out=out)
        out /= out.sum(axis=self.axis, keepdims=True)
        self._saved = out
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._saved is None:
            raise self._not_run()
        y = self._saved
        xp = self.backend.xp
        grad_in = self.workspace("grad_in", grad_out.shape)
        xp.multiply(grad_out, y, out=grad_in)
        dot = grad_in.sum(axis=self.axis, keepdims=True)
        xp.subtract(grad_out, dot, out=grad_in)
        grad_in *= y
        return grad_in
