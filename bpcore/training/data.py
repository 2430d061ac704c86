"""Checking and preparing the training data of ``fit`` and ``evaluate``.

Everything here runs once, before training starts, so that bad input raises
one clear exception and leaves the network untouched.  Features and targets
stay where the user keeps them: NumPy data stays on the host (batches are
gathered there and moved to the device one at a time), CuPy data on the
network's GPU stays on the device.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..interop import import_array, is_cupy_array, to_backend
from ..layers.fusion import output_shapes
from .metrics import DENSE, INDEX

CLASSES, BINARY, VALUES = "classes", "binary", "values"


def loss_family(loss: Any) -> str:
    """What targets ``loss`` takes: class indices or probabilities, binary labels, or plain values."""
    from .. import losses

    if isinstance(loss, getattr(losses, "CrossEntropy", ())):
        return CLASSES
    if isinstance(loss, getattr(losses, "BinaryCrossEntropy", ())):
        return BINARY
    return VALUES


def takes_logits(loss: Any) -> bool:
    """Whether the network's outputs are logits for ``loss`` (for the accuracy threshold)."""
    return loss_family(loss) == BINARY and bool(getattr(loss, "from_logits", False))


def check_loss(loss: Any) -> None:
    if loss is None:
        raise TypeError("loss: expected a loss such as bpcore.losses.MSE(), got None")
    if isinstance(loss, type):
        raise TypeError(f"loss: expected a loss object, got the class {loss.__name__}; use {loss.__name__}()")
    if not callable(loss) or not callable(getattr(loss, "backward", None)):
        raise TypeError(
            f"loss: expected a loss object with __call__(pred, target) and backward(), "
            f"got {type(loss).__name__}"
        )


@dataclasses.dataclass
class Dataset:
    """Checked features ``x`` (n, features) and targets ``y`` of one kind, on ``backend``."""

    x: Any
    y: Any
    kind: str  # INDEX: int64 class indices (n,) or (n, ...); DENSE: floats (n, outputs) or (n, ..., k)
    backend: Backend
    mask: Any = None  # the sequences' boolean (n, T) mask, beside x on ``backend``, or None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def on_device(self) -> bool:
        return not isinstance(self.x, np.ndarray)

    def take(self, start: int, stop: int) -> Dataset:
        """Samples ``start:stop`` (views, no copy)."""
        mask = None if self.mask is None else self.mask[start:stop]
        return Dataset(self.x[start:stop], self.y[start:stop], self.kind, self.backend, mask)


def storage_backend(network: Any, data: Any) -> Backend:
    """Where data is kept during training: the network's GPU if it already lives there, else the host."""
    if is_cupy_array(data) and network.backend.owns(data):
        return network.backend
    return network.backend if not network.backend.device.is_cuda else get_backend("cpu")


def output_width(network: Any, features: int) -> int:
    if network.out_features is not None:
        return int(network.out_features)
    return int(network.in_features) if network.in_features is not None else features


def _describe_range(xp: Any, array: Any) -> str:
    return f"from {float(xp.min(array)):g} to {float(xp.max(array)):g}"


def prepare_targets(
    y: Any, *, samples: int, outputs: int, loss: Any, backend: Backend, dtype: np.dtype,
    argument: str = "y", x_argument: str = "x", x_shape: tuple[int, ...] = (),
    output_shape: tuple[int, ...] | None = None,
) -> tuple[Any, str]:
    """Check ``y`` against the loss and the network's output; return it on ``backend`` and its kind.

    ``output_shape`` is one sample's output shape; when it has more than one
    axis (a per-time-step or per-pixel output) and the loss is a
    cross-entropy, the targets are per-label (see :func:`_prepare_label_maps`).
    """
    if y is None:
        raise TypeError(f"{argument}: expected an array of targets, got None")
    array = import_array(y, argument=argument)
    if is_cupy_array(array) and not backend.owns(array):  # checked where it is kept (np refuses CuPy)
        array = _to(array, backend, None)
    xp = backend.xp if is_cupy_array(array) else np
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument}: expected numeric targets, got dtype {array.dtype}")
    if output_shape is not None and len(output_shape) > 1 and loss_family(loss) == CLASSES:
        return _prepare_label_maps(
            array, xp, samples=samples, output_shape=tuple(output_shape), loss=loss, backend=backend,
            dtype=dtype, argument=argument, x_argument=x_argument, x_shape=x_shape,
        )
    if array.ndim not in (1, 2):
        raise ValueError(
            f"{argument}: expected a 1-D array (n,) or a 2-D array (n, {outputs}) of targets, "
            f"got shape {tuple(array.shape)}"
        )
    if array.shape[0] != samples:
        raise ValueError(
            f"{x_argument} and {argument}: expected the same number of samples, got {x_argument} of shape "
            f"{tuple(x_shape)} and {argument} of shape {tuple(array.shape)}"
        )
    integer = array.dtype.kind in "biu"
    if not integer and not bool(xp.isfinite(array).all()):
        raise ValueError(f"{argument}: contains NaN or Inf values (shape {tuple(array.shape)})")
    family = loss_family(loss)
    loss_name = type(loss).__name__

    if family == CLASSES and (integer and (array.ndim == 1 or array.shape[1] == 1) and outputs != 1):
        labels = array.reshape(samples)
        if outputs < 2:
            raise ValueError(
                f"loss: {loss_name} needs a network with at least 2 outputs, this one has {outputs}"
            )
        _check_labels(labels, xp, outputs, argument, f"a network with {outputs} outputs", ignored_label(loss))
        return _to(labels, backend, np.int64), INDEX

    if array.ndim == 1:
        if outputs != 1:
            if family == CLASSES:
                raise TypeError(
                    f"{argument}: {loss_name} takes integer class indices of shape (n,) or class "
                    f"probabilities of shape (n, {outputs}), got {array.dtype} of shape "
                    f"{tuple(array.shape)}; "
                    f"convert labels with {argument}.astype('int64')"
                )
            raise ValueError(
                f"{argument}: expected targets of shape (n, {outputs}) to match the network's "
                f"{outputs} outputs, got shape {tuple(array.shape)}"
            )
        array = array.reshape(samples, 1)
    elif array.shape[1] != outputs:
        raise ValueError(
            f"{argument}: expected targets of shape ({samples}, {outputs}) to match the network's "
            f"{outputs} outputs, got shape {tuple(array.shape)}"
        )
    if family in (CLASSES, BINARY):
        _check_probabilities(array, xp, family, loss_name, argument)
    return _to(array, backend, dtype), DENSE


def ignored_label(loss: Any) -> int | None:
    """The label that ``loss`` ignores (``CrossEntropy(ignore_index=...)``), or None."""
    return getattr(loss, "ignore_index", None)


def _check_labels(
    labels: Any, xp: Any, classes: int, argument: str, network_text: str, ignore: int | None = None
) -> None:
    counted = labels if ignore is None else labels[labels != ignore]
    if counted.size == 0:
        return
    low, high = int(xp.min(counted)), int(xp.max(counted))
    if low < 0 or high >= classes:
        also = "" if ignore is None else f" (or equal ignore_index={ignore})"
        raise ValueError(
            f"{argument}: class labels must lie in [0, {classes}){also} for {network_text}, "
            f"got labels {_describe_range(xp, counted)}"
        )


def _check_probabilities(array: Any, xp: Any, family: str, loss_name: str, argument: str) -> None:
    """Values in [0, 1]; for class probabilities also summing to one over the last (class) axis."""
    smallest, largest = float(xp.min(array)), float(xp.max(array))
    if smallest < 0.0 or largest > 1.0:
        what = "class probabilities" if family == CLASSES else "binary targets"
        raise ValueError(
            f"{argument}: {loss_name} expects {what} in [0, 1], got values {_describe_range(xp, array)}"
        )
    if family == CLASSES:
        sums = xp.sum(array, axis=-1, dtype=np.float64)
        tolerance = 1e-6 if array.dtype == np.float64 else 1e-3
        if not bool(xp.all(xp.abs(sums - 1.0) <= tolerance)):
            raise ValueError(
                f"{argument}: {loss_name} expects class probabilities to sum to 1 over the last "
                f"(class) axis, got sums {_describe_range(xp, sums)}"
            )


def _prepare_label_maps(
    array: Any, xp: Any, *, samples: int, output_shape: tuple[int, ...], loss: Any, backend: Backend,
    dtype: np.dtype, argument: str, x_argument: str, x_shape: tuple[int, ...],
) -> tuple[Any, str]:
    """Cross-entropy targets for outputs (n, ..., k): integer labels (n, ...) or probabilities (n, ..., k)."""
    loss_name = type(loss).__name__
    shape = tuple(array.shape)
    labels_shape, probs_shape = (samples, *output_shape[:-1]), (samples, *output_shape)
    classes = output_shape[-1]
    if shape[:1] != (samples,):
        raise ValueError(
            f"{x_argument} and {argument}: expected the same number of samples, got {x_argument} of shape "
            f"{tuple(x_shape)} and {argument} of shape {shape}"
        )
    if classes < 2:
        raise ValueError(
            f"loss: {loss_name} needs at least 2 classes on the output's last axis, "
            f"the network's output per sample is {output_shape}"
        )
    if shape == labels_shape:
        if array.dtype.kind not in "iu":
            raise TypeError(
                f"{argument}: {loss_name} takes integer class labels of shape {labels_shape} or class "
                f"probabilities of shape {probs_shape}, got {array.dtype} of shape {shape}; "
                f"convert labels with {argument}.astype('int64')"
            )
        _check_labels(array, xp, classes, argument,
                      f"a network whose output has {classes} classes on its last axis (shape {shape})",
                      ignored_label(loss))
        return _to(array, backend, np.int64), INDEX
    if shape != probs_shape:
        raise ValueError(
            f"{argument}: {loss_name} takes integer class labels of shape {labels_shape} or class "
            f"probabilities of shape {probs_shape} for the network's output of shape {probs_shape}, "
            f"got shape {shape}"
        )
    if array.dtype.kind == "f" and not bool(xp.isfinite(array).all()):
        raise ValueError(f"{argument}: contains NaN or Inf values (shape {shape})")
    _check_probabilities(array, xp, CLASSES, loss_name, argument)
    return _to(array, backend, dtype), DENSE


def target_sizes(data: Dataset, network: Any) -> tuple[int, int]:
    """Per sample: the number of target values (for ``mse``/``mae``) and of labels (for ``accuracy``)."""
    y = data.y
    if data.kind == INDEX:
        labels = int(np.prod(y.shape[1:]))
        width = int(network.out_features or 1)
        return labels * width, labels
    return int(np.prod(y.shape[1:])), int(np.prod(y.shape[1:-1]))


def counted_labels(data: Dataset, loss: Any) -> int | None:
    """How many class labels of ``data`` count (are not the loss's ``ignore_index``); None if none is."""
    ignore = ignored_label(loss)
    if data.kind != INDEX or ignore is None:
        return None
    return int((data.y != ignore).sum())


def label_counts(data: Dataset, loss: Any) -> np.ndarray | None:
    """Per sample, on the host: the class labels the loss counts; None if it ignores none."""
    ignore = ignored_label(loss)
    if data.kind != INDEX or ignore is None:
        return None
    counts = (data.y != ignore).reshape(len(data), -1).sum(axis=1)
    return np.asarray(data.backend.to_numpy(counts), dtype=np.float64)


def _to(array: Any, backend: Backend, dtype: Any) -> Any:
    from ..interop import to_backend

    return to_backend(array, backend, dtype)


def prepare(
    network: Any, x: Any, y: Any, *, loss: Any, x_argument: str = "x", y_argument: str = "y",
    mask: Any = None, lengths: Any = None, mask_argument: str = "mask",
) -> Dataset:
    """Check ``(x, y)`` (and a mask or lengths) for ``network`` and ``loss``; features in its dtype."""
    imported = import_array(x, argument=x_argument)
    backend = storage_backend(network, imported)
    features = network.as_input(imported, backend=backend, argument=x_argument)
    real = network.as_mask(mask, lengths=lengths, shape=features.shape, argument=mask_argument,
                           x_argument=x_argument)
    if real is not None and backend is not network.backend:
        real = to_backend(real, backend)  # kept beside the features, staged with them
    shapes = output_shapes(network.layers, tuple(features.shape[1:]), owner="layers")
    output_shape = tuple(int(size or 0) for size in (shapes[-1] if shapes else features.shape[1:]))
    targets, kind = prepare_targets(
        y, samples=int(features.shape[0]), outputs=output_width(network, int(features.shape[1])),
        loss=loss, backend=backend, dtype=network.dtype, argument=y_argument,
        x_argument=x_argument, x_shape=tuple(imported.shape), output_shape=output_shape,
    )
    return Dataset(features, targets, kind, backend, real)


def split_validation(data: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """The last ``fraction`` of the samples (before any shuffling) as validation data, as Keras does."""
    n = len(data)
    held_out = round(n * fraction)
    if held_out < 1 or held_out >= n:
        raise ValueError(
            f"validation_split: {fraction!r} of {n} samples leaves {n - held_out} for training and "
            f"{held_out} for validation; both need at least one"
        )
    return data.take(0, n - held_out), data.take(n - held_out, n)
