"""Shared pieces of the image layers: argument checks, output sizes, padding.

Images are ``(N, C, H, W)``.  A window of a convolution or a pooling layer
is described per axis by its kernel size, stride, padding (before, after)
and dilation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Shape, shape_text

Pair = tuple[int, int]


def positive_pair(owner: str, argument: str, value: Any, *, minimum: int = 1) -> Pair:
    """``value`` (an int or a pair of ints, each >= ``minimum``) as a pair."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        not isinstance(item, bool) and isinstance(item, (int, np.integer)) and item >= minimum
        for item in items
    ):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{owner}({argument}): expected a {what} integer or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def padding_of(owner: str, padding: Any, kernel: Pair, dilation: Pair, stride: Pair) -> tuple[Pair, Pair]:
    """Padding per axis as (before, after): an int, a pair, ``"valid"`` (none) or ``"same"``.

    ``"same"`` (stride 1 only) pads ``dilation * (kernel - 1)`` in total, the
    odd one on the after side, as PyTorch does.
    """
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"{owner}(padding): 'same' needs stride 1, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return (totals[0] // 2, totals[0] - totals[0] // 2), (totals[1] // 2, totals[1] - totals[1] // 2)
    if isinstance(padding, str):
        raise ValueError(f"{owner}(padding): expected an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = positive_pair(owner, "padding", padding, minimum=0)
    return (ph, ph), (pw, pw)


def padding_config(padding: tuple[Pair, Pair], given: Any) -> Any:
    """The JSON form of a padding argument (the string, or a pair)."""
    if isinstance(given, str):
        return given
    return [padding[0][0], padding[1][0]]


def output_size(size: int, kernel: int, stride: int, pad: Pair, dilation: int) -> int:
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def window_output_shape(
    layer: Any,
    input_shape: Shape,
    channels: int | None,
    kernel: Pair,
    stride: Pair,
    padding: tuple[Pair, Pair],
    dilation: Pair,
    out_channels: int | None,
) -> Shape:
    """The (C, OH, OW) output of a windowed layer, or one ``ValueError`` naming the layer and shapes."""
    if len(input_shape) != 3:
        expected = f"(N, {channels}, H, W)" if channels else "(N, C, H, W)"
        raise ValueError(
            f"{layer!r}: expected images of shape {expected}, got an input of shape {shape_text(input_shape)}"
        )
    if channels is not None and input_shape[0] not in (None, channels):
        raise ValueError(
            f"{layer!r}: expected {channels} input channels on axis 1, got an input of shape "
            f"{shape_text(input_shape)}"
        )
    sizes: list[int | None] = []
    for axis, size in enumerate(input_shape[1:]):
        if size is None:
            sizes.append(None)
            continue
        span = dilation[axis] * (kernel[axis] - 1) + 1
        padded = size + padding[axis][0] + padding[axis][1]
        if padded < span:
            raise ValueError(
                f"{layer!r}: the kernel spans {span} pixels along {'HW'[axis]} but the padded input has "
                f"only {padded} (input shape {shape_text(input_shape)})"
            )
        sizes.append(output_size(size, kernel[axis], stride[axis], padding[axis], dilation[axis]))
    return (out_channels if out_channels is not None else input_shape[0], *sizes)


def padded(layer: Any, x: Any, padding: tuple[Pair, Pair], fill: float) -> Any:
    """``x`` with its border (a reused workspace of the layer; ``x`` itself if no padding)."""
    (top, bottom), (left, right) = padding
    if not (top or bottom or left or right):
        return layer.backend.xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    buffer = layer.workspace("padded", (n, c, h + top + bottom, w + left + right))
    buffer.fill(fill)
    buffer[:, :, top : top + h, left : left + w] = x
    return buffer


def window_slices(i: int, j: int, stride: Pair, dilation: Pair, out_hw: Pair) -> tuple[slice, slice]:
    """The pixels of a padded image that kernel position (i, j) touches, over all windows."""
    top, left = i * dilation[0], j * dilation[1]
    return (
        slice(top, top + stride[0] * (out_hw[0] - 1) + 1, stride[0]),
        slice(left, left + stride[1] * (out_hw[1] - 1) + 1, stride[1]),
    )


def unpad(layer: Any, grad_padded: Any, padding: tuple[Pair, Pair], shape: tuple[int, ...]) -> Any:
    """The interior of a padded gradient, as the input's gradient (a workspace)."""
    (top, _), (left, _) = padding
    if grad_padded.shape == tuple(shape):
        return grad_padded
    grad_in = layer.workspace("grad_in", tuple(shape))
    grad_in[...] = grad_padded[:, :, top : top + shape[2], left : left + shape[3]]
    return grad_in
