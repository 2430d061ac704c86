"""The benchmarked networks, their floating-point work and their synthetic data."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np

from .. import checks


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A ReLU multi-layer perceptron ending in logits for ``sizes[-1]`` classes."""

    name: str
    sizes: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    description: str
    default_baselines: tuple[str, ...] = ("numpy-naive", "torch-adam-fused", "torch-adam-default", "sklearn")

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def classes(self) -> int:
        return self.sizes[-1]

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each Dense layer."""
        return list(itertools.pairwise(self.sizes))

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.sizes[1:-1]

    @property
    def parameter_count(self) -> int:
        return sum(i * o + o for i, o in self.shapes)

    @property
    def label(self) -> str:
        return "-".join(str(s) for s in self.sizes)

    def flops_per_step(self, batch: int) -> int:
        """Floating-point operations of one training step's matrix products.

        The forward products cost ``2 * batch * sum(in * out)``; the backward
        pass doubles that (gradients of weights and of inputs), so a step is
        three times the forward work.
        """
        return 3 * 2 * batch * sum(i * o for i, o in self.shapes)

    def layers(self) -> list[Any]:
        """Fresh bpcore layers for this model."""
        from ..layers import Dense, ReLU

        layers: list[Any] = []
        for position, (fan_in, fan_out) in enumerate(self.shapes):
            layers.append(Dense(fan_in, fan_out))
            if position < len(self.shapes) - 1:
                layers.append(ReLU())
        return layers


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("tiny", (32, 64, 64, 2), (32,), "per-step overhead dominates"),
        ModelSpec("mnist", (784, 256, 128, 10), (64, 128, 1024), "MNIST-shaped"),
        # A step takes about a second here; only the strongest baseline keeps the matrix under a minute.
        ModelSpec("wide", (784, 4096, 4096, 10), (1024,), "matrix products dominate",
                  default_baselines=("torch-adam-fused",)),
    )
}


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"models: expected names from {sorted(MODELS)}, got {name!r}") from None


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """Random features and class labels with a model's real shapes, on the host.

    Enough rows for several distinct batches, so that successive steps read
    different data as real training does.
    """

    x: np.ndarray
    labels: np.ndarray
    batch: int

    @property
    def batches(self) -> int:
        return self.x.shape[0] // self.batch


def synthetic_data(spec: ModelSpec, batch: int, dtype: Any, *, seed: int = 0,
                   min_rows: int = 8192) -> SyntheticData:
    """Features N(0, 1) in ``dtype`` and uniform labels, at least four batches of them."""
    batch = checks.positive_int(batch, "batch")
    batches = max(4, math.ceil(min_rows / batch))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batches * batch, spec.in_features), dtype=np.float32).astype(dtype, copy=False)
    labels = rng.integers(0, spec.classes, size=batches * batch, dtype=np.int64)
    return SyntheticData(x, labels, int(batch))
