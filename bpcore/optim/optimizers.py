"""Gradient-descent optimisers with torch.optim's update rules, defaults and checks.

``SGD``, ``AdaGrad``, ``RMSProp``, ``Adam`` and ``AdamW`` follow the rules
``torch.optim`` documents (same defaults, same epsilon placement, same
argument checks), so a user moving between the two gets the same
trajectory.  When the parameters are a whole network's
(``network.parameters()``), ``step()`` is ONE hot operation over the flat
parameter buffer: no loop over parameters, no allocation, no device
synchronisation.  Any other selection of parameters is updated one
parameter at a time with the same operation.

Weight decay and regularisation: ``weight_decay`` is torch's (L2 added to
the gradient; decoupled for AdamW) and applies to every parameter given,
biases included.  ``l1=`` and ``l2=`` add the classic penalty gradient
``l1 * sign(w) + l2 * w`` to the *weights only* (parameters with
``decay=True``), in place on the gradients, before the update; see
:mod:`bpcore.optim.regularization`.

Each optimiser notices when the network has been moved with
``network.to(...)`` and moves its state along on the next ``step()``.
``state_dict()`` returns the state as NumPy arrays (device-neutral), and
``load_state_dict()`` puts it back on whatever device the parameters are on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .. import checks
from ..backends import Backend, device_scope
from ..backends.kernels.layout import unguarded
from .params import ParameterSet
from .regularization import Regularizer

StateArrays = tuple[Any, ...]


class _ContiguousOps:
    """A backend's operations without the layout guard (:func:`unguarded`), looked up once each.

    Everything an optimiser hands its operation is C-contiguous by
    construction: the flat buffers, 1-D slices and per-parameter views of
    them, and the state arrays it allocated itself.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        operation = unguarded(getattr(self.backend.ops, name))
        setattr(self, name, operation)
        return operation


def _check_min(value: Any, argument: str, label: str) -> float:
    """A finite number >= 0, refused in torch's words ("Invalid learning rate: -1 (...)")."""
    try:
        return checks.non_negative(value, argument)
    except ValueError as exc:
        raise ValueError(f"Invalid {label}: {value!r:.40} ({exc})") from None


def _check_lr(lr: Any) -> float:
    return _check_min(lr, "lr", "learning rate")


class Optimizer:
    """Base class: parameters, learning rate, step count and per-unit state arrays.

    A subclass names its state arrays in ``state_names``, says which of them
    it needs (``_needs``) and what they start as (``_initial``), and applies
    its hot operation to one unit in ``_update``.
    """

    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any, lr: float, *, l1: float = 0.0, l2: float = 0.0) -> None:
        self.parameters = ParameterSet(params)
        self._lr = _check_lr(lr)
        self.initial_lr: float | None = None  # set by the first schedule attached (torch's 'initial_lr')
        self._regularizer = Regularizer(self.parameters, l1=l1, l2=l2)
        self._step = 0
        self._store = self.parameters.store
        self._backends: list[Backend] = []
        self._state: list[StateArrays] = []
        self._ops: _ContiguousOps | None = None
        self._allocate()

    # --- hyperparameters ----------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate used by the next ``step()``; settable (schedules set it)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_lr(value)

    @property
    def step_count(self) -> int:
        """How many updates have been made."""
        return self._step

    @property
    def l1(self) -> float:
        return self._regularizer.l1

    @property
    def l2(self) -> float:
        return self._regularizer.l2

    def _hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The constructor arguments except ``params`` (JSON-serialisable; ``lr`` is the current one)."""
        config = {"lr": self._lr, **self._hyperparameters()}
        if self._regularizer.active:
            config.update(l1=self._regularizer.l1, l2=self._regularizer.l2)
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"{type(self).__name__}({args})"

    # --- state --------------------------------------------------------------
    def _needs(self, name: str) -> bool:
        return True

    def _initial(self, name: str) -> float:
        return 0.0

    def _allocate(self) -> None:
        self._backends = self.parameters.backends()
        self._state = []
        for backend, data, _grad in self.parameters.units():
            arrays = []
            for name in self.state_names:
                if self._needs(name):
                    array = backend.zeros(data.shape, data.dtype)
                    initial = self._initial(name)
                    if initial != 0.0:
                        with device_scope(backend):  # a fill kernel: on the parameters' GPU
                            array.fill(initial)
                else:
                    array = backend.zeros((0,), data.dtype)
                arrays.append(array)
            self._state.append(tuple(arrays))

    def _follow_device(self) -> None:
        """Move the state to the parameters' device if the network was moved since the last step."""
        for index, backend in enumerate(self.parameters.backends()):
            old = self._backends[index]
            if backend is not old:
                self._state[index] = tuple(
                    backend.asarray(old.to_numpy(array), dtype=array.dtype) for array in self._state[index]
                )
                self._backends[index] = backend

    # --- the update ---------------------------------------------------------
    def _holding(self) -> contextlib.ExitStack:
        """The locks of the parameter stores (networks) this optimiser updates, taken in a fixed order.

        A step holds them, so that a ``save`` (which holds the network's lock
        while it copies parameters and optimiser state) never sees half a step.
        """
        stack = contextlib.ExitStack()
        stores = [self._store] if self._store is not None else [p.store for p in self.parameters.params]
        for store in sorted({id(s): s for s in stores if s is not None}.values(), key=id):
            stack.enter_context(store.lock)
        return stack

    def step(self) -> None:
        """One update of every trainable parameter from its current gradient.

        Frozen parameters (``requires_grad=False``) are left unchanged, state
        included, as torch.optim leaves parameters without a gradient.

        The update holds the network's lock, so that a save or another
        thread's forward never sees half a step.
        """
        store = self._store
        if store is not None:  # one network: its lock alone, without the ExitStack's cost
            with store.lock:
                self._step_unlocked()
            return
        with self._holding():
            self._step_unlocked()

    def _step_unlocked(self) -> None:
        store = self._store
        if store is not None:  # the whole network: one operation over the flat buffers
            backend = store.backend
            if backend is not self._backends[0]:
                self._follow_device()
            self._step += 1
            if self._regularizer.active:
                self._regularizer.add_grad()
            if store.all_trainable:
                self._update(self._kernels(backend), store.data, store.grad, self._state[0])
                return
            ranges = store.trainable_ranges()
            # Some parameters are frozen: update each run of trainable ones in place.
            for start, stop in ranges:
                state = tuple(array[start:stop] if array.size else array for array in self._state[0])
                self._update(self._kernels(backend), store.data[start:stop], store.grad[start:stop], state)
            return
        self._follow_device()
        self._step += 1
        if self._regularizer.active:
            self._regularizer.add_grad()
        units = zip(self.parameters.params, self.parameters.units(), self._state, strict=True)
        for parameter, (backend, data, grad), state in units:
            if parameter.requires_grad:
                self._update(self._kernels(backend), data, grad, state)

    def _kernels(self, backend: Backend) -> _ContiguousOps:
        ops = self._ops
        if ops is None or ops.backend is not backend:
            ops = self._ops = _ContiguousOps(backend)
        return ops

    def _update(self, ops: Any, param: Any, grad: Any, state: StateArrays) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set the gradients of this optimiser's parameters to zero."""
        if self._store is not None:
            self._store.zero_grad()
            return
        for backend, _data, grad in self.parameters.units():
            with device_scope(backend):
                grad.fill(0)

    # --- saving and resuming -------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: hyperparameters, step count and state as NumPy arrays."""
        with self._holding():
            return self._state_dict()

    def _state_dict(self) -> dict[str, Any]:
        state: dict[str, np.ndarray] = {}
        for position, name in enumerate(self.state_names):
            if self._needs(name):
                parts = [
                    backend.to_numpy(arrays[position])
                    for backend, arrays in zip(self._backends, self._state, strict=True)
                ]
                state[name] = np.concatenate(parts) if len(parts) > 1 else np.array(parts[0], copy=True)
        return {
            "optimizer": type(self).__name__,
            "config": self.config(),
            "initial_lr": self.initial_lr,
            "step": self._step,
            "sizes": list(self.parameters.sizes),
            "state": state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the same optimiser class, settings and parameter shapes.

        Everything is checked before anything changes, so a mismatch leaves
        this optimiser as it was.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict:
            raise TypeError(
                f"{name}.load_state_dict: expected a dict from state_dict(), got {type(state_dict).__name__}"
            )
        if state_dict.get("optimizer") != name:
            raise ValueError(
                f"{name}.load_state_dict: the state is from a {state_dict.get('optimizer')!r} optimiser, "
                f"not {name}"
            )
        saved_config = dict(state_dict.get("config", {}))
        lr = _check_lr(saved_config.pop("lr", self._lr))
        mine = self.config()
        mine.pop("lr")
        keys = set(saved_config) | set(mine)
        differing = sorted(key for key in keys if saved_config.get(key) != mine.get(key))
        if differing:
            raise ValueError(
                f"{name}.load_state_dict: the saved settings differ in {differing}: saved "
                f"{ {k: saved_config.get(k) for k in differing} }, this optimiser "
                f"{ {k: mine.get(k) for k in differing} }; create the optimiser with the saved config()"
            )
        sizes = list(state_dict.get("sizes", []))
        if sizes != self.parameters.sizes:
            raise ValueError(
                f"{name}.load_state_dict: the state is for parameters of sizes {sizes}, "
                f"these parameters have sizes {self.parameters.sizes}"
            )
        wanted = [n for n in self.state_names if self._needs(n)]
        arrays = state_dict["state"]
        if sorted(arrays) != sorted(wanted):
            raise ValueError(f"{name}.load_state_dict: expected state arrays {wanted}, got {sorted(arrays)}")
        host = {}
        for key in wanted:
            array = np.asarray(arrays[key])
            if array.shape != (self.parameters.total_size,) or array.dtype.kind != "f":
                raise ValueError(
                    f"{name}.load_state_dict: state {key!r} must be a float array of shape "
                    f"({self.parameters.total_size},), got {array.dtype} {array.shape}"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"{name}.load_state_dict: state {key!r} contains NaN or Inf values")
            host[key] = array
        step = checks.non_negative_int(state_dict.get("step", 0), f"{name}.load_state_dict: step")
        initial_lr = checks.optional(checks.non_negative, state_dict.get("initial_lr"),
                                     f"{name}.load_state_dict: initial_lr")
        # all checked: now change things
        self._allocate()
        offsets = np.cumsum([0, *self.parameters.sizes])
        for index, (backend, state) in enumerate(zip(self._backends, self._state, strict=True)):
            for position, key in enumerate(self.state_names):
                if key not in host:
                    continue
                part = host[key] if self.parameters.flat else host[key][offsets[index] : offsets[index + 1]]
                with device_scope(backend):  # the copy on the state's GPU's stream
                    state[position][...] = backend.asarray(part, dtype=state[position].dtype)
        self._lr = lr
        self._step = int(step)
        self.initial_lr = initial_lr


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening and Nesterov momentum.

    torch.optim.SGD's rule: ``g = grad + weight_decay * p``; with momentum,
    ``b = g`` on the first step and ``b = momentum * b + (1 - dampening) * g``
    after, then ``g = g + momentum * b`` (Nesterov) or ``g = b``; ``p -= lr * g``.
    """

    state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        _check_lr(lr)
        self.momentum = _check_min(momentum, "momentum", "momentum value")
        self.dampening = checks.real(dampening, "dampening")
        self.weight_decay = _check_min(weight_decay, "weight_decay", "weight_decay value")
        self.nesterov = checks.flag(nesterov, "nesterov")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening "
                f"(got momentum={momentum}, dampening={dampening})"
            )
        super().__init__(params, lr, l1=l1, l2=l2)

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def _needs(self, name: str) -> bool:
        return self.momentum != 0

    def _update(self, ops: Any, param: Any, grad: Any, state: StateArrays) -> None:
        ops.sgd_step(
            param, grad, state[0], self._lr, self.momentum, self.dampening,
            self.weight_decay, self.nesterov, self._step == 1,
        )


class AdaGrad(Optimizer):
    """AdaGrad: per-coordinate steps shrinking with the accumulated squared gradients.

    torch.optim.Adagrad's rule: ``g = grad + weight_decay * p``;
    ``clr = lr / (1 + (step - 1) * lr_decay)``; ``s += g * g``;
    ``p -= clr * g / (sqrt(s) + eps)``.
    """

    state_names = ("sum",)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        _check_lr(lr)
        self.lr_decay = _check_min(lr_decay, "lr_decay", "lr_decay value")
        self.weight_decay = _check_min(weight_decay, "weight_decay", "weight_decay value")
        self.initial_accumulator_value = _check_min(
            initial_accumulator_value, "initial_accumulator_value", "initial_accumulator_value value"
        )
        self.eps = _check_min(eps, "eps", "epsilon value")
        super().__init__(params, lr, l1=l1, l2=l2)

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "initial_accumulator_value": self.initial_accumulator_value,
            "eps": self.eps,
        }

    def _initial(self, name: str) -> float:
        return self.initial_accumulator_value

    def _update(self, ops: Any, param: Any, grad: Any, state: StateArrays) -> None:
        clr = self._lr / (1 + (self._step - 1) * self.lr_decay)
        ops.adagrad_step(param, grad, state[0], clr, self.weight_decay, self.eps)


class RMSProp(Optimizer):
    """RMSProp, optionally centred and with momentum (torch.optim.RMSprop's rule).

    ``g = grad + weight_decay * p``; ``v = alpha * v + (1 - alpha) * g * g``;
    centred: ``ga = alpha * ga + (1 - alpha) * g`` and ``avg = sqrt(v - ga**2) + eps``,
    else ``avg = sqrt(v) + eps``; with momentum ``b = momentum * b + g / avg``
    and ``p -= lr * b``, else ``p -= lr * g / avg``.
    """

    state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        _check_lr(lr)
        self.eps = _check_min(eps, "eps", "epsilon value")
        self.momentum = _check_min(momentum, "momentum", "momentum value")
        self.weight_decay = _check_min(weight_decay, "weight_decay", "weight_decay value")
        self.alpha = _check_min(alpha, "alpha", "alpha value")
        self.centered = checks.flag(centered, "centered")
        super().__init__(params, lr, l1=l1, l2=l2)

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
        }

    def _needs(self, name: str) -> bool:
        if name == "grad_avg":
            return self.centered
        if name == "momentum_buffer":
            return self.momentum > 0
        return True

    def _update(self, ops: Any, param: Any, grad: Any, state: StateArrays) -> None:
        ops.rmsprop_step(
            param, grad, state[0], state[1], state[2], self._lr, self.alpha, self.eps,
            self.weight_decay, self.momentum, self.centered,
        )


class Adam(Optimizer):
    """Adam with bias correction, optional AMSGrad (torch.optim.Adam's rule).

    ``g = grad + weight_decay * p``; ``m = b1 m + (1 - b1) g``;
    ``v = b2 v + (1 - b2) g**2``; (AMSGrad: ``vmax = max(vmax, v)`` used for v);
    ``p -= lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)``.
    """

    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled: ClassVar[bool] = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        _check_lr(lr)
        self.eps = _check_min(eps, "eps", "epsilon value")
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        beta1, beta2 = checks.real(betas[0], "betas[0]"), checks.real(betas[1], "betas[1]")
        for index, beta in enumerate((beta1, beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(
                    f"Invalid beta parameter at index {index}: {betas[index]} "
                    f"(betas[{index}]: expected 0 <= beta < 1)"
                )
        self.betas = (beta1, beta2)
        self.weight_decay = _check_min(weight_decay, "weight_decay", "weight_decay value")
        self.amsgrad = checks.flag(amsgrad, "amsgrad")
        super().__init__(params, lr, l1=l1, l2=l2)

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
        }

    def _needs(self, name: str) -> bool:
        return self.amsgrad or name != "max_exp_avg_sq"

    def _update(self, ops: Any, param: Any, grad: Any, state: StateArrays) -> None:
        ops.adam_step(
            param, grad, state[0], state[1], state[2], self._lr, self.betas[0], self.betas[1],
            self.eps, self.weight_decay, self._step, self.decoupled, self.amsgrad,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW's rule).

    ``p *= 1 - lr * weight_decay`` before the Adam update, which then uses
    the plain gradient.  Default ``weight_decay=0.01``, as in torch.
    """

    decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, l1=l1, l2=l2)


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.__name__: cls for cls in (SGD, AdaGrad, RMSProp, Adam, AdamW)}


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class": ..., "config": ...}``: a JSON-serialisable description :func:`from_config` rebuilds."""
    return {"class": type(optimizer).__name__, "config": optimizer.config()}


def from_config(params: Any, description: dict[str, Any]) -> Optimizer:
    """A new optimiser over ``params`` from a :func:`serialize` dict."""
    if not isinstance(description, dict) or "class" not in description:
        raise TypeError(f"description: expected a dict from serialize(), got {description!r}")
    cls = OPTIMIZERS.get(description["class"])
    if cls is None:
        raise ValueError(
            f"description: unknown optimiser {description['class']!r}; expected one of {sorted(OPTIMIZERS)}"
        )
    return cls(params, **description.get("config", {}))
