"""Finite-difference gradient checks of layers, losses and whole networks.

:func:`gradcheck` compares the hand-written backward pass with central
differences in float64 and returns the worst relative error.  Small arrays
are checked element by element; large ones on a random sample of elements
and, for everything together, along random directions (Chainer's
``check_backward`` idea: one directional derivative tests every gradient
entry at once, for two function evaluations).

The function checked is ``sum(w * output)`` for fixed random weights ``w``
(or ``loss(output, y)`` when a loss is given), so every output contributes.
Randomness is frozen for the check: dropout draws one mask and reuses it in
every evaluation.  The target is left as it was: parameters, gradients and
buffers (e.g. batch-norm running statistics) are restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import checks
from .backends import CPU, Backend, backend_of, device_scope, get_backend
from .interop import host_array, import_array, to_backend
from .layers.base import Layer
from .layers.fusion import check_batch_statistics
from .network import Network
from .parameters import ParameterStore

logger = logging.getLogger("bpcore")

Variable = tuple[str, Any]  # (name, array perturbed in place)


class _ReplayRandom:
    """A generator stand-in that hands out the same draws for the same shape every time."""

    def __init__(self, generator: Any) -> None:
        self._generator = generator
        self._draws: dict[tuple[tuple[int, ...], str], Any] = {}

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        if out is not None:
            shape = tuple(out.shape)
        else:
            shape = () if size is None else tuple(int(s) for s in np.atleast_1d(size))
        key = (shape, np.dtype(dtype).str)
        draws = self._draws.get(key)
        if draws is None:
            draws = self._draws[key] = self._generator.random(size=shape, dtype=dtype)
        if out is None:
            return draws.copy()
        out[...] = draws
        return out


def _is_loss(target: Any) -> bool:
    return callable(target) and callable(getattr(target, "backward", None))


def _host(array: Any) -> np.ndarray:
    """A float64 NumPy copy of a NumPy or CuPy array."""
    return np.array(host_array(array), dtype=np.float64)


def _target(y: Any, backend: Any) -> Any:
    """``y`` on ``backend`` (from NumPy, CuPy or DLPack; never ``np.asarray`` on a CuPy array).

    Integer labels keep their dtype; anything else becomes float64.
    """
    if y is None:
        return None
    moved = to_backend(import_array(y, argument="y"), backend)
    return moved if moved.dtype.kind in "iub" else backend.asarray(moved, dtype=np.float64)


def _as_index_input(x: Any) -> np.ndarray:
    """Integer indices for a layer that takes them (an embedding): checked as input, never perturbed."""
    array = to_backend(import_array(x, argument="gradcheck(x)"), get_backend(CPU))
    if array.dtype.kind not in "iu" or array.size == 0:
        raise TypeError(
            f"gradcheck(x): the layer takes integer indices; expected a non-empty integer array, "
            f"got dtype {array.dtype} and shape {array.shape}"
        )
    return np.array(array, dtype=np.int64)


def _as_float64_input(x: Any, argument: str = "x") -> np.ndarray:
    array = to_backend(import_array(x, argument=f"gradcheck({argument})"), get_backend(CPU))
    if array.dtype.kind != "f":
        raise TypeError(f"gradcheck({argument}): expected a floating-point array, got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"gradcheck({argument}): expected a non-empty array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"gradcheck({argument}): contains NaN or Inf values (shape {array.shape})")
    return np.array(array, dtype=np.float64)


def _float64_message(what: str, dtype: Any) -> str:
    return (
        f"gradcheck needs float64, but {what} uses {np.dtype(dtype).name}: float32 keeps about 7 digits, "
        "so finite differences would be dominated by rounding error. Build a float64 copy "
        "(Network(..., dtype='float64')) with the same layers, or pass an unbuilt layer, which gradcheck "
        "builds in float64 on the CPU"
    )


class _Problem:
    """What the checker needs: the arrays to perturb, the objective, and its analytic gradients."""

    def __init__(
        self,
        variables: list[Variable],
        evaluate: Callable[[], float],
        analytic: Callable[[], list[np.ndarray]],
    ) -> None:
        self.variables = variables
        self.evaluate = evaluate
        self.analytic = analytic


def _objective(output: Any, weights: dict[str, Any], backend_xp: Any) -> Any:
    """sum(w * output) with w drawn once per output shape: every output counts."""
    w = weights.get("w")
    if w is None or w.shape != output.shape:
        rng = weights["rng"]
        w = weights["w"] = backend_xp.asarray(rng.standard_normal(output.shape))
    return float(_host((w * output).sum())), w


def _layer_problem(
    layer: Layer,
    x: np.ndarray,
    training: bool,
    loss: Any,
    y: Any,
    rng: np.random.Generator,
    seed: int | None,
    mask: Any = None,
) -> tuple[_Problem, Callable[[], None]]:
    if layer.built:
        if layer.dtype != np.float64:
            raise ValueError(_float64_message(f"{layer!r}", layer.dtype))
        if any(parameter.data is None for parameter in layer.parameters()):
            raise ValueError(f"gradcheck(target): {layer!r} is built but its parameters have no values")
    else:
        # Work on a copy so the caller's layer stays unbuilt and free to join a network.
        layer = copy.deepcopy(layer)
        backend = get_backend(CPU)
        try:
            layer.build(tuple(x.shape[1:]) if x.ndim >= 2 else None, np.dtype(np.float64), backend)
        except ValueError as exc:
            raise ValueError(f"gradcheck(x): {exc} (x has shape {x.shape})") from None
        store = ParameterStore(layer.parameters(), backend, np.dtype(np.float64))
        store.initialize(np.random.default_rng(seed))
    backend = layer.backend
    xp = backend.xp
    parameters = layer.parameters()
    members = [layer, *layer.walk()]
    saved_data = [parameter.data.copy() for parameter in parameters]
    saved_grad = [parameter.grad.copy() for parameter in parameters]
    saved_buffers = [{name: value.copy() for name, value in m.buffers().items()} for m in members]
    generator = backend.random(seed)
    previous = [m.bind_random(_ReplayRandom(generator)) for m in members]
    # Integer indices (an embedding's input) have no gradient: only the parameters are checked.
    indices = layer.input_kind == "index"
    xin = backend.asarray(x, dtype=np.int64 if indices else np.float64).copy()
    weights: dict[str, Any] = {"rng": rng}
    target = _target(y, backend)
    real = None if mask is None else _layer_mask(layer, mask, xin.shape, backend)
    run: Any = layer.forward  # takes mask= where the layer uses_mask

    def value_and_seed() -> tuple[float, Any]:
        out = layer.forward(xin, training) if real is None else run(xin, training, mask=real)
        if loss is None:
            return _objective(out, weights, xp)
        return float(_host(loss(out, target))), None

    def evaluate() -> float:
        return value_and_seed()[0]

    def analytic() -> list[np.ndarray]:
        for parameter in parameters:
            parameter.grad[...] = 0
        _, w = value_and_seed()
        grad_out = w if loss is None else backend.asarray(loss.backward(), dtype=np.float64)
        grad_in = layer.backward(grad_out, accumulate=True, need_input_grad=not indices)
        grads = [_host(parameter.grad) for parameter in parameters]
        return grads if indices else [_host(grad_in), *grads]

    variables = ([] if indices else [("x", xin)]) + [
        (f"parameters()[{k}] ({p.name}, shape {p.shape})", p.data) for k, p in enumerate(parameters)
    ]

    def restore() -> None:
        for parameter, data, grad in zip(parameters, saved_data, saved_grad, strict=True):
            parameter.data[...] = data
            parameter.grad[...] = grad
        for member, buffers, old in zip(members, saved_buffers, previous, strict=True):
            for name, value in buffers.items():
                member.set_buffer(name, value)
            member.bind_random(old)

    return _Problem(variables, evaluate, analytic), restore


def _layer_mask(layer: Layer, mask: Any, shape: tuple[int, ...], backend: Any) -> Any:
    if not layer.uses_mask:
        raise ValueError(f"gradcheck(mask): {layer!r} takes no mask (a recurrent layer does)")
    array = import_array(mask, argument="gradcheck(mask)")
    if array.dtype != np.bool_ or tuple(array.shape) != tuple(shape[:2]):
        raise ValueError(
            f"gradcheck(mask): expected a boolean array of shape {tuple(shape[:2])} (the first two axes of "
            f"x), got dtype {array.dtype} and shape {tuple(array.shape)}"
        )
    return to_backend(array, backend)


def _network_problem(
    network: Network, x: Any, training: bool, loss: Any, y: Any, rng: np.random.Generator, seed: int | None,
    mask: Any = None,
) -> tuple[_Problem, Callable[[], None]]:
    if network.dtype != np.float64:
        raise ValueError(_float64_message("the network", network.dtype))
    backend = network.backend
    xp = backend.xp
    xin = network.as_input(x).copy()
    real = network.as_mask(mask, shape=xin.shape)
    indices = network.layers[0].input_kind == "index"
    if training and network._needs_batch:
        check_batch_statistics(network.layers, tuple(xin.shape), argument="gradcheck(x)")
    network.check_forward_batch(int(xin.shape[0]))
    parameters = network.parameters()
    members = list(network.walk())
    saved_data = network.store.data.copy()
    saved_grad = network.store.grad.copy()
    saved_buffers = [{name: value.copy() for name, value in m.buffers().items()} for m in members]
    generator = backend.random(seed)
    for member in members:
        member.bind_random(_ReplayRandom(generator))
    weights: dict[str, Any] = {"rng": rng}
    target = _target(y, backend)

    def value_and_seed() -> tuple[float, Any]:
        out = network._forward(xin, training, real)
        if loss is None:
            return _objective(out, weights, xp)
        return float(_host(loss(out, target))), None

    def evaluate() -> float:
        return value_and_seed()[0]

    def analytic() -> list[np.ndarray]:
        network.store.zero_grad()
        _, w = value_and_seed()
        grad_out = w if loss is None else backend.asarray(loss.backward(), dtype=np.float64)
        grad_in = network._backward(grad_out, accumulate=True, need_input_grad=not indices)
        grads = [_host(parameter.grad) for parameter in parameters]
        return grads if indices else [_host(grad_in), *grads]

    variables = ([] if indices else [("x", xin)]) + [
        (f"parameters()[{k}] ({p.name}, shape {p.shape})", p.data) for k, p in enumerate(parameters)
    ]

    def restore() -> None:
        network.store.data[...] = saved_data
        network.store.grad[...] = saved_grad
        for member, buffers in zip(members, saved_buffers, strict=True):
            for name, value in buffers.items():
                member.set_buffer(name, value)
        for member in members:
            member.bind_random(network._random)  # the network's own stream, where it was
        network._output_shape = None

    return _Problem(variables, evaluate, analytic), restore


def _loss_problem(loss: Any, x: np.ndarray, y: Any) -> tuple[_Problem, Callable[[], None]]:
    if y is None:
        raise ValueError(
            "gradcheck(y): checking a loss needs its target y (the second argument of loss(pred, y))"
        )
    prediction = x.copy()
    target = _target(y, get_backend(CPU))

    def evaluate() -> float:
        return float(_host(loss(prediction, target)))

    def analytic() -> list[np.ndarray]:
        loss(prediction, target)
        return [_host(loss.backward())]

    return _Problem([("prediction", prediction)], evaluate, analytic), lambda: None


def _relative_error(numeric: float, analytic: float, floor: float, noise: float) -> float:
    # A difference within the rounding noise of the difference quotient is no evidence of a wrong
    # gradient: only what exceeds it counts.  (Counted in full, that noise made the error of a small
    # entry depend on the machine: float64 softmax cross-entropy scored 1.7e-7 on one CPU, 1.1e-6 on
    # another, from the loss's last few bits.)
    excess = max(abs(numeric - analytic) - noise, 0.0)
    return excess / max(abs(numeric), abs(analytic), floor)


def _check(
    problem: _Problem, *, eps: float, rng: np.random.Generator, max_elements: int, directions: int,
    floor: float | None,
) -> tuple[float, str]:
    grads = problem.analytic()
    for (name, variable), grad in zip(problem.variables, grads, strict=True):
        if tuple(grad.shape) != tuple(variable.shape):
            raise ValueError(
                f"gradcheck: the backward pass returned shape {tuple(grad.shape)} for {name}, "
                f"whose shape is {tuple(variable.shape)}"
            )
    largest = max((float(np.abs(g).max()) for g in grads if g.size), default=0.0)
    # Rounding in the objective, magnified by the difference quotient, is the noise level.
    noise = 64.0 * float(np.finfo(np.float64).eps) * max(1.0, abs(problem.evaluate())) / eps
    element_floor = floor if floor is not None else max(1e-3 * largest, noise)
    if 0.0 < largest < noise:
        logger.warning(
            "gradcheck: the largest analytic gradient (%.3g) is below the rounding noise of the difference "
            "quotient (%.3g at eps=%g), so no entry can be told from noise and the check says little; "
            "scale the objective up or use a larger eps", largest, noise, eps,
        )
    worst, where = 0.0, "nothing"

    def central(perturb: Callable[[float], None]) -> float:
        perturb(eps)
        plus = problem.evaluate()
        perturb(-eps)
        minus = problem.evaluate()
        return (plus - minus) / (2.0 * eps)

    for (name, variable), grad in zip(problem.variables, grads, strict=True):
        original = _host(variable)
        flat = variable.reshape(-1)
        original_flat = original.reshape(-1)
        if variable.size <= max_elements:
            indices: Iterable[int] = range(variable.size)
        else:
            indices = rng.choice(variable.size, size=max_elements, replace=False)
        for index in indices:
            start = float(original_flat[index])

            def perturb_entry(
                step: float, flat: Any = flat, index: Any = index, start: float = start
            ) -> None:
                flat[index] = start + step

            numeric = central(perturb_entry)
            flat[index] = start
            error = _relative_error(numeric, float(grad.reshape(-1)[index]), element_floor, noise)
            if error > worst:
                position = np.unravel_index(int(index), variable.shape)
                worst, where = error, f"{name} at {tuple(int(i) for i in position)}"

    originals = [_host(variable) for _, variable in problem.variables]
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    direction_floor = floor if floor is not None else max(1e-3 * norm, noise)
    arrays = [variable for _, variable in problem.variables]
    for count in range(directions):
        vectors = [rng.standard_normal(original.shape) for original in originals]
        scale = 1.0 / math.sqrt(sum(float((v * v).sum()) for v in vectors))
        vectors = [v * scale for v in vectors]
        expected = sum(float((g * v).sum()) for g, v in zip(grads, vectors, strict=True))

        def perturb_along(step: float, vectors: list[np.ndarray] = vectors) -> None:
            for variable, original, vector in zip(arrays, originals, vectors, strict=True):
                variable[...] = _to_like(variable, original + step * vector)

        numeric = central(perturb_along)
        for variable, original in zip(arrays, originals, strict=True):
            variable[...] = _to_like(variable, original)
        error = _relative_error(numeric, expected, direction_floor, noise)
        if error > worst:
            worst, where = error, f"random direction {count}"
    return worst, where


def _to_like(variable: Any, values: np.ndarray) -> Any:
    """``values`` on ``variable``'s device (CuPy refuses a host array assigned into a device one)."""
    return backend_of(variable).asarray(values, dtype=variable.dtype)


def gradcheck(
    target: Layer | Network | Any,
    x: Any,
    *,
    y: Any = None,
    loss: Any = None,
    eps: float = 1e-6,
    seed: int | None = None,
    training: bool = True,
    max_elements: int = 64,
    directions: int = 3,
    floor: float | None = None,
    return_location: bool = False,
    mask: Any = None,
) -> float | tuple[float, str]:
    """Check ``target``'s backward pass against central differences; return the worst relative error.

    ``target`` is a layer (an unbuilt one is copied and built in float64 on
    the CPU; a built one must be float64), a whole float64 Network (the
    gradients of its input and of every parameter are checked), or a loss
    object (called ``loss(x, y)``; the gradient with respect to the
    prediction ``x`` is checked).  With ``loss`` given, a layer or network is
    checked through ``loss(output, y)`` instead of a random projection.

    Each error is ``max(|numeric - analytic| - noise, 0) / max(|numeric|,
    |analytic|, floor)``, where ``noise`` is the rounding noise of the
    difference quotient (64 float64 ulps of the objective, over ``eps``), so
    that the last bits of the objective, which differ between CPUs, do not
    decide the result; ``floor`` (default: the larger of 1e-3 times the
    largest gradient magnitude and that noise) stops entries that are zero up
    to rounding from dominating.  If even the largest gradient is below that
    noise, nothing can be told from it: a warning is logged (logger ``bpcore``).  Arrays with at most
    ``max_elements`` entries are checked entry by entry, larger ones on that
    many random entries; ``directions`` random directional derivatives then
    cover everything.  ``training`` selects the mode of the forward pass
    (dropout uses one fixed mask).  A float64 implementation with a correct
    backward pass typically scores below 1e-6.  With ``return_location`` the
    result is ``(error, where)``, naming the worst entry.  ``mask`` (a boolean
    ``(N, T)`` array, True at real steps) goes with ``x`` into a network's
    forward (:meth:`~bpcore.Network.forward`) or a recurrent layer's.
    """
    training = checks.flag(training, "gradcheck(training)")
    eps = checks.real(eps, "gradcheck(eps)", above=0.0, expected="a small positive step such as 1e-6")
    max_elements = checks.non_negative_int(max_elements, "gradcheck(max_elements)")
    directions = checks.non_negative_int(directions, "gradcheck(directions)")
    if max_elements == 0 and directions == 0:
        raise ValueError("gradcheck: max_elements and directions are both 0, so nothing would be checked")
    floor = checks.optional(checks.positive, floor, "gradcheck(floor)")
    if loss is not None and not _is_loss(loss):
        raise TypeError(
            "gradcheck(loss): expected a loss object (callable, with a backward() method), "
            f"got {type(loss).__name__}"
        )
    if loss is not None and y is None:
        raise ValueError("gradcheck(y): a loss was given, so the target values y are needed too")
    rng = np.random.default_rng(seed)
    owner = getattr(target, "backend", None)  # a network's or a built layer's; a loss finds its own
    with device_scope(owner) if isinstance(owner, Backend) else contextlib.nullcontext():
        if isinstance(target, Network):
            problem, restore = _network_problem(target, x, training, loss, y, rng, seed, mask)
        elif isinstance(target, Layer):
            layer_input = _as_index_input(x) if target.input_kind == "index" else _as_float64_input(x)
            problem, restore = _layer_problem(target, layer_input, training, loss, y, rng, seed, mask)
        elif _is_loss(target):
            if mask is not None:
                raise ValueError(
                    "gradcheck(mask): a loss takes no mask (a network or a recurrent layer does)"
                )
            if loss is not None:
                raise ValueError(
                    "gradcheck(loss): the target is already a loss; pass the target values as y"
                )
            problem, restore = _loss_problem(target, _as_float64_input(x), y)
        else:
            raise TypeError(
                "gradcheck(target): expected a bpcore Layer, a Network or a loss object "
                f"(callable with a backward() method), got {type(target).__name__}"
            )
        try:
            worst, where = _check(problem, eps=float(eps), rng=rng, max_elements=max_elements,
                                  directions=directions, floor=floor)
        finally:
            restore()
    return (worst, where) if return_location else worst
