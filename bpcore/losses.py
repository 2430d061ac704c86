"""Loss functions: a value on call, the gradient with respect to the prediction from ``backward``.

``loss(pred, target)`` returns the loss as a 0-d array on the prediction's
device (reading it with ``float(...)`` is the caller's choice: on a GPU that
is a synchronisation).  ``loss.backward()`` then returns dLoss/dpred for that
call.  The reductions follow PyTorch: ``"mean"`` averages over every element
for :class:`MSE`, :class:`Huber` and :class:`BinaryCrossEntropy` and over
every label (sample, time step or pixel) for :class:`CrossEntropy`; ``"sum"``
adds everything.

The gradient array belongs to the loss object and is reused by the next call
of the same shape: copy it if you need to keep it.  A loss object keeps the
arrays of its last call, so give each concurrent training loop its own loss.

Targets are checked before use: their shape always, their values (NaN,
labels out of range, probabilities outside [0, 1]) unless ``check=False`` is
passed.  Values of host (NumPy) targets are checked on the host; values of
device targets on the device, which costs one synchronisation per call, so a
training loop that validated its targets once passes ``check=False``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, ClassVar

import numpy as np

from . import checks
from .backends import Backend, backend_of, device_scope
from .interop import import_array, is_cupy_array, to_backend
from .validation import FLOAT_DTYPES

REDUCTIONS = ("mean", "sum")
BCE_EPS = 1e-12  # PyTorch's clamp of p * (1 - p) in the probability-input BCE gradient
LOG_FLOOR = -100.0  # PyTorch clamps log(p) and log(1 - p) here, so p = 0 or 1 gives a finite loss


def _check_reduction(reduction: Any) -> str:
    return checks.choice(reduction, "reduction", REDUCTIONS)


def _namespace(array: Any) -> Any:
    """The array module of the device that holds ``array`` (NumPy for host arrays)."""
    return backend_of(array).xp if is_cupy_array(array) else np


def _all(array: Any) -> bool:
    return bool(array.all())


class Loss:
    """A loss function ``L(pred, target)``; subclasses define the formula."""

    name: ClassVar[str] = "loss"

    def __init__(self, *, reduction: str = "mean") -> None:
        self.reduction = _check_reduction(reduction)
        self._local = threading.local()

    # What a call keeps for its backward (the last (pred, target), the work buffers, the backend) is
    # per thread: one loss object may serve fits and loops running in several threads at once, each
    # ``backward()`` answering its own thread's last call.
    def _thread_state(self) -> Any:
        local = self.__dict__.get("_local")
        if local is None:  # a subclass that did not call Loss.__init__
            local = self._local = threading.local()
        if not hasattr(local, "buffers"):
            local.buffers, local.saved, local.backend = {}, None, None
        return local

    @property
    def _buffers(self) -> dict[str, Any]:
        return self._thread_state().buffers  # type: ignore[no-any-return]

    @property
    def _saved(self) -> tuple[Backend, Any, Any] | None:
        return self._thread_state().saved  # type: ignore[no-any-return]

    @_saved.setter
    def _saved(self, value: tuple[Backend, Any, Any] | None) -> None:
        self._thread_state().saved = value

    @property
    def _backend(self) -> Backend | None:
        """The last call's backend, reused while it owns the prediction."""
        return self._thread_state().backend  # type: ignore[no-any-return]

    @_backend.setter
    def _backend(self, value: Backend | None) -> None:
        self._thread_state().backend = value

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles start with no call state
        return {key: value for key, value in self.__dict__.items() if key != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # --- public API ---------------------------------------------------------
    def __call__(self, pred: Any, target: Any, *, check: bool = True) -> Any:
        """The loss of ``pred`` against ``target`` as a 0-d array on ``pred``'s device."""
        pred = self._as_prediction(pred)
        backend = self._backend
        if backend is None or not backend.owns(pred):
            backend = self._backend = backend_of(pred)
        with device_scope(backend):  # pred's GPU current, whichever the calling thread has
            target = self._prepare_target(import_array(target, argument="target"), pred, backend, check)
            value = self._forward(backend, pred, target)
        self._saved = (backend, pred, target)
        return value

    def backward(self) -> Any:
        """dLoss/dpred for the last call (a buffer reused by the next call: copy to keep it)."""
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward(): call the loss on (pred, target) first")
        with device_scope(self._saved[0]):
            return self._backward(*self._saved)

    def check_target(self, target: Any, pred_shape: tuple[int, ...]) -> None:
        """Raise a clear error if ``target`` does not fit a prediction of ``pred_shape``.

        Checks shape and values (the values of a device array on the device,
        one synchronisation); does not convert or keep anything.
        """
        target = import_array(target, argument="target")
        self._check_shape(target, tuple(pred_shape))
        with device_scope(backend_of(target)):  # the target's GPU, whichever the thread has current
            self._check_values(target, tuple(pred_shape))

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (see :func:`serialize`)."""
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"{type(self).__name__}({args})"

    # --- shared machinery ---------------------------------------------------
    def _as_prediction(self, pred: Any) -> Any:
        pred = import_array(pred, argument="pred")
        if pred.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{type(self).__name__}(pred): expected a float32 or float64 array, got dtype {pred.dtype}"
            )
        if pred.ndim == 0 or pred.size == 0:
            raise ValueError(
                f"{type(self).__name__}(pred): expected a non-empty array with a sample axis, "
                f"got shape {tuple(pred.shape)}"
            )
        return pred

    def _check_numeric(self, target: Any) -> None:
        if target.dtype.kind not in "biuf":
            raise TypeError(
                f"{type(self).__name__}(target): expected a numeric array, got dtype {target.dtype}"
            )

    def _check_shape(self, target: Any, pred_shape: tuple[int, ...]) -> None:
        """Default: the prediction's shape, or (n,) for a prediction of shape (n, 1)."""
        self._check_numeric(target)
        shape = tuple(target.shape)
        if shape == pred_shape or (len(pred_shape) == 2 and pred_shape[1] == 1 and shape == pred_shape[:1]):
            return
        raise ValueError(
            f"{type(self).__name__}(target): expected shape {pred_shape} (the prediction's), got {shape}"
        )

    def _check_values(self, target: Any, pred_shape: tuple[int, ...]) -> None:
        xp = _namespace(target)
        if target.dtype.kind == "f" and not _all(xp.isfinite(target)):
            raise ValueError(
                f"{type(self).__name__}(target): contains NaN or Inf (shape {tuple(target.shape)})"
            )

    def _prepare_target(self, target: Any, pred: Any, backend: Backend, check: bool) -> Any:
        self._check_shape(target, tuple(pred.shape))
        if check:
            self._check_values(target, tuple(pred.shape))
            self._check_prediction(pred)
        return to_backend(target, backend, pred.dtype).reshape(pred.shape)

    def _check_prediction(self, pred: Any) -> None:
        """Value checks on the prediction (only where the formula needs a range); none by default."""

    def _buffer(self, key: str, backend: Backend, shape: tuple[int, ...], dtype: Any) -> Any:
        """A work array owned by this loss, reused while shape, dtype and device stay the same."""
        entry = self._buffers.get(key)
        if entry is not None and entry[0] is backend and entry[1].shape == shape and entry[1].dtype == dtype:
            return entry[1]
        array = backend.empty(shape, dtype)
        self._buffers[key] = (backend, array)
        return array

    def _scale(self, count: int) -> float:
        return 1.0 / count if self.reduction == "mean" else 1.0

    def _reduce(self, backend: Backend, total: Any, count: int) -> Any:
        if self.reduction == "mean":
            total = total * (1.0 / count)
        return backend.xp.asarray(total)

    # --- the formula --------------------------------------------------------
    def _forward(self, backend: Backend, pred: Any, target: Any) -> Any:
        raise NotImplementedError

    def _backward(self, backend: Backend, pred: Any, target: Any) -> Any:
        raise NotImplementedError


class MSE(Loss):
    """Mean squared error ``(pred - target)**2``, PyTorch's ``MSELoss``."""

    name = "mse"

    def _forward(self, backend: Backend, pred: Any, target: Any) -> Any:
        xp = backend.xp
        diff = self._buffer("diff", backend, pred.shape, pred.dtype)
        work = self._buffer("work", backend, pred.shape, pred.dtype)
        xp.subtract(pred, target, out=diff)
        xp.multiply(diff, diff, out=work)
        return self._reduce(backend, work.sum(), pred.size)

    def _backward(self, backend: Backend, pred: Any, target: Any) -> Any:
        grad = self._buffer("grad", backend, pred.shape, pred.dtype)
        backend.xp.multiply(self._buffers["diff"][1], 2.0 * self._scale(pred.size), out=grad)
        return grad


class Huber(Loss):
    """Huber loss, PyTorch's ``HuberLoss``.

    With ``d = pred - target``: ``0.5 d**2`` where ``|d| < delta``, else
    ``delta (|d| - delta / 2)``; quadratic near zero, linear (robust to
    outliers) beyond ``delta``.
    """

    name = "huber"

    def __init__(self, delta: float = 1.0, *, reduction: str = "mean") -> None:
        self.delta = checks.positive(delta, "Huber(delta)")
        super().__init__(reduction=reduction)

    def config(self) -> dict[str, Any]:
        return {"delta": self.delta, "reduction": self.reduction}

    def _forward(self, backend: Backend, pred: Any, target: Any) -> Any:
        xp = backend.xp
        diff = self._buffer("diff", backend, pred.shape, pred.dtype)
        work = self._buffer("work", backend, pred.shape, pred.dtype)
        clipped = self._buffer("clipped", backend, pred.shape, pred.dtype)
        xp.subtract(pred, target, out=diff)
        xp.abs(diff, out=work)
        xp.minimum(work, self.delta, out=clipped)
        # c = min(|d|, delta): c * (|d| - c/2) is 0.5 d**2 inside, delta * (|d| - delta/2) outside.
        clipped *= 0.5
        work -= clipped
        clipped *= 2.0
        work *= clipped
        return self._reduce(backend, work.sum(), pred.size)

    def _backward(self, backend: Backend, pred: Any, target: Any) -> Any:
        grad = self._buffer("grad", backend, pred.shape, pred.dtype)
        xp = backend.xp  # clip(d, -delta, delta) as two ufuncs: a third of xp.clip's call overhead
        xp.minimum(xp.maximum(self._buffers["diff"][1], -self.delta, out=grad), self.delta, out=grad)
        grad *= self._scale(pred.size)
        return grad


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on probabilities, or on logits with ``from_logits=True``.

    On probabilities it is PyTorch's ``BCELoss``: each log is clamped at -100
    so that a prediction of exactly 0 or 1 gives a finite loss, and the
    gradient divides by ``max(p (1 - p), 1e-12)``.  Predictions must lie in
    [0, 1] (e.g. a Sigmoid output).  ``from_logits=True`` is PyTorch's
    ``BCEWithLogitsLoss``: the sigmoid is fused in and stable for any logit;
    prefer it for training.  Targets are probabilities in [0, 1].
    """

    name = "binary_cross_entropy"

    def __init__(self, from_logits: bool = False, *, reduction: str = "mean") -> None:
        self.from_logits = checks.flag(from_logits, "BinaryCrossEntropy(from_logits)")
        super().__init__(reduction=reduction)

    def config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "reduction": self.reduction}

    def _check_values(self, target: Any, pred_shape: tuple[int, ...]) -> None:
        super()._check_values(target, pred_shape)
        if not _all((target >= 0) & (target <= 1)):
            raise ValueError(
                f"BinaryCrossEntropy(target): expected probabilities in [0, 1], got values from "
                f"{float(target.min())} to {float(target.max())}"
            )

    def _check_prediction(self, pred: Any) -> None:
        if self.from_logits:
            return
        if not _all((pred >= 0) & (pred <= 1)):  # NaN fails both comparisons
            raise ValueError(
                "BinaryCrossEntropy(pred): expected probabilities in [0, 1] (a Sigmoid output), got values "
                f"from {float(pred.min())} to {float(pred.max())}; pass logits with from_logits=True"
            )

    def _forward(self, backend: Backend, pred: Any, target: Any) -> Any:
        xp = backend.xp
        work = self._buffer("work", backend, pred.shape, pred.dtype)
        if self.from_logits:
            backend.ops.binary_cross_entropy_logits_forward(pred, target, work)
            return self._reduce(backend, work.sum(), pred.size)
        log_q = self._buffer("log_q", backend, pred.shape, pred.dtype)
        # log(0) = -inf is expected here (then clamped): keep NumPy from warning about it.
        with np.errstate(divide="ignore") if xp is np else contextlib.nullcontext():
            xp.log(pred, out=work)
            xp.negative(pred, out=log_q)
            xp.log1p(log_q, out=log_q)
        xp.maximum(work, LOG_FLOOR, out=work)
        xp.maximum(log_q, LOG_FLOOR, out=log_q)
        # t log p + (1 - t) log q  ==  t (log p - log q) + log q
        work -= log_q
        work *= target
        work += log_q
        return self._reduce(backend, -work.sum(), pred.size)

    def _backward(self, backend: Backend, pred: Any, target: Any) -> Any:
        grad = self._buffer("grad", backend, pred.shape, pred.dtype)
        scale = self._scale(pred.size)
        if self.from_logits:
            return backend.ops.binary_cross_entropy_logits_backward(pred, target, scale, grad)
        return backend.ops.binary_cross_entropy_backward(pred, target, scale, BCE_EPS, grad)


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits whose last axis holds the classes, PyTorch's ``CrossEntropyLoss``.

    The softmax is fused in: pass raw scores, not probabilities.  Logits have
    shape (n, k), or (n, ..., k) for a loss per time step or per pixel.
    Targets are either integer class labels in ``[0, k)`` shaped like the
    logits without the class axis ((n,), or (n, ...)), or probabilities
    shaped like the logits (one-hot or soft labels) that sum to one over the
    class axis.  ``"mean"`` averages over every label (n times the sizes of
    the middle axes); the gradient is ``(softmax(pred) - target) / labels``.

    ``ignore_index`` (PyTorch's, default -100): labels equal to it contribute
    neither loss nor gradient, and ``"mean"`` averages over the others only
    (NaN when every label is ignored, with a zero gradient, as in PyTorch).
    Set padded time steps' labels to it for a per-step loss on padded
    sequences.  It applies to class labels; a non-negative ``ignore_index``
    with probability targets is an error, as in PyTorch.  With
    ``check=False`` any negative label counts as ignored.

    bpcore keeps the classes on the last axis, as Keras does; PyTorch puts
    them on axis 1.  A channels-first per-pixel output (n, k, h, w), such as
    a :class:`~bpcore.layers.Conv2D`'s, is moved in a custom loop::

        value = loss(out.transpose(0, 2, 3, 1), labels)  # labels (n, h, w)
        network.backward(loss.backward().transpose(0, 3, 1, 2))
    """

    name = "cross_entropy"

    def __init__(self, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        self.ignore_index = checks.integer(ignore_index, "CrossEntropy(ignore_index)")
        super().__init__(reduction=reduction)
        self._count: Any = None

    def config(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index, "reduction": self.reduction}

    def _check_shape(self, target: Any, pred_shape: tuple[int, ...]) -> None:
        name = type(self).__name__
        if len(pred_shape) < 2:
            raise ValueError(
                f"{name}(pred): expected logits of shape (n_samples, n_classes) or "
                f"(n_samples, ..., n_classes), got shape {pred_shape}"
            )
        self._check_numeric(target)
        labels_shape = pred_shape[:-1]
        shape = tuple(target.shape)
        if shape == labels_shape:
            if target.dtype.kind not in "iu":
                raise TypeError(
                    f"{name}(target): expected integer class labels of shape {labels_shape}, "
                    f"got dtype {target.dtype}; "
                    f"convert with target.astype('int64'), or pass probabilities of shape {pred_shape}"
                )
            return
        if shape != pred_shape:
            count = int(np.prod(labels_shape))
            raise ValueError(
                f"{name}(target): expected {count} class labels (shape {labels_shape}) or probabilities of "
                f"shape {pred_shape} for logits of shape {pred_shape}, got shape {shape}"
            )
        if self.ignore_index >= 0:
            raise ValueError(
                f"{name}(target): ignore_index={self.ignore_index} applies to class labels, but the target "
                f"holds probabilities (shape {shape}); pass labels of shape {labels_shape} (PyTorch's rule)"
            )

    @staticmethod
    def _holds_labels(target: Any, pred_shape: tuple[int, ...]) -> bool:
        return target.ndim == len(pred_shape) - 1

    def _check_values(self, target: Any, pred_shape: tuple[int, ...]) -> None:
        name = type(self).__name__
        k = pred_shape[-1]
        if self._holds_labels(target, pred_shape):
            ignore = self.ignore_index
            outside = (target < 0) | (target >= k)
            if 0 <= ignore < k:
                pass  # an ignored class label lies inside the range anyway
            else:
                outside &= target != ignore
            if bool(outside.any()):
                counted = target[target != ignore]
                low, high = int(counted.min()), int(counted.max())
                raise ValueError(
                    f"{name}(target): class labels must lie in [0, {k - 1}] for {k} classes (or equal "
                    f"ignore_index={ignore}), got labels from {low} to {high} "
                    f"(target shape {tuple(target.shape)})"
                )
            return
        super()._check_values(target, pred_shape)
        if not _all(target >= 0):
            raise ValueError(
                f"{name}(target): probabilities must be non-negative, got minimum {float(target.min())}"
            )
        sums = target.sum(axis=-1, dtype=np.float64)
        tolerance = 1e-6 if target.dtype == np.float64 else 1e-3
        worst = float(abs(sums - 1.0).max())
        if worst > tolerance:
            raise ValueError(
                f"{name}(target): probabilities must sum to 1 over the last (class) axis, got a sum off by "
                f"{worst:.3g}; pass integer class labels of shape {pred_shape[:-1]} for hard labels"
            )

    def _prepare_target(self, target: Any, pred: Any, backend: Backend, check: bool) -> Any:
        """The target on ``pred``'s device, flattened to labels (m,) or probabilities (m, k)."""
        pred_shape = tuple(pred.shape)
        self._check_shape(target, pred_shape)
        if check:
            self._check_values(target, pred_shape)
        if self._holds_labels(target, pred_shape):
            if self.ignore_index >= 0:
                # The kernels skip negative labels: ignored labels become -1 (a copy, never the caller's).
                target = _namespace(target).where(target == self.ignore_index, -1, target)
            labels = to_backend(target, backend, np.int64).reshape(-1)
            # The labels that count (for the mean): on the host a number, on a device a 0-d array.
            self._count = (
                int(np.count_nonzero(target >= 0)) if isinstance(target, np.ndarray) else (labels >= 0).sum()
            )
            return labels
        return to_backend(target, backend, pred.dtype).reshape(-1, pred_shape[-1])

    @staticmethod
    def _rows(pred: Any) -> Any:
        """The logits as (m, k): one row per label, a view when ``pred`` is contiguous."""
        return pred if pred.ndim == 2 else pred.reshape(-1, pred.shape[-1])

    def _forward(self, backend: Backend, pred: Any, target: Any) -> Any:
        logits = self._rows(pred)
        m = logits.shape[0]
        probs = self._buffer("probs", backend, logits.shape, pred.dtype)
        losses = self._buffer("losses", backend, (m,), pred.dtype)
        if target.ndim == 1:
            backend.ops.softmax_cross_entropy_index_forward(logits, target, probs, losses)
            return self._reduce_labels(backend, losses.sum())
        backend.ops.softmax_cross_entropy_forward(logits, target, probs, losses)
        return self._reduce(backend, losses.sum(), m)

    def _reduce_labels(self, backend: Backend, total: Any) -> Any:
        """The reduction over the labels that count (not ``ignore_index``); "mean" of none is NaN."""
        count = self._count
        if self.reduction == "sum":
            return backend.xp.asarray(total)
        if isinstance(count, int):
            return backend.xp.asarray(total * (1.0 / count if count else np.nan))
        return backend.xp.asarray(total / count.astype(total.dtype))  # on the device: 0 / 0 is NaN

    def _label_scale(self, backend: Backend) -> tuple[float, Any]:
        """The gradient's scale for label targets: a number, or 1 and a device factor to apply after."""
        count = self._count
        if self.reduction == "sum":
            return 1.0, None
        if isinstance(count, int):
            return (1.0 / count if count else 0.0), None  # every row ignored: the kernel writes zeros
        return 1.0, 1.0 / backend.xp.maximum(count, 1).astype(self._buffers["probs"][1].dtype)

    def _backward(self, backend: Backend, pred: Any, target: Any) -> Any:
        probs = self._buffers["probs"][1]
        grad = self._buffer("grad", backend, probs.shape, pred.dtype)
        scale = self._scale(probs.shape[0])
        if target.ndim == 1:
            scale, device_factor = self._label_scale(backend)
            backend.ops.softmax_cross_entropy_index_backward(probs, target, scale, grad)
            if device_factor is not None:
                grad *= device_factor
        else:
            backend.ops.softmax_cross_entropy_backward(probs, target, scale, grad)
        return grad.reshape(pred.shape)


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (MSE, Huber, BinaryCrossEntropy, CrossEntropy)}
_BY_CLASS_NAME = {cls.__name__: cls for cls in LOSSES.values()}


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"class": ..., "config": ...}``: a JSON-serialisable description :func:`get` rebuilds."""
    return {"class": type(loss).__name__, "config": loss.config()}


def get(identifier: Loss | str | dict[str, Any]) -> Loss:
    """A loss from an instance (returned as is), a name (``"mse"``, ``"CrossEntropy"``, ...) or
    a :func:`serialize` dict."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = LOSSES.get(identifier.lower()) or _BY_CLASS_NAME.get(identifier)
        if cls is None:
            raise ValueError(
                f"loss: expected one of {sorted(LOSSES)} or a Loss instance, got {identifier!r}"
            )
        return cls()
    if isinstance(identifier, dict) and "class" in identifier:
        cls = _BY_CLASS_NAME.get(identifier["class"])
        if cls is None:
            raise ValueError(
                f"loss: unknown loss class {identifier['class']!r}; expected one of {sorted(_BY_CLASS_NAME)}"
            )
        return cls(**identifier.get("config", {}))
    raise TypeError(
        f"loss: expected a Loss, a loss name or a serialized loss dict, got {type(identifier).__name__}"
    )


__all__ = [
    "LOSSES",
    "MSE",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "Huber",
    "Loss",
    "get",
    "serialize",
]
