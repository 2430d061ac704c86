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
    standard: bool = True  # in the matrix that a plain ``bpcore bench`` runs

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One input sample's shape."""
        return (self.sizes[0],)

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

    def torch_layers(self, torch: Any) -> list[Any]:
        """The same network as PyTorch modules (``torch`` is the imported module)."""
        layers: list[Any] = []
        for position, (fan_in, fan_out) in enumerate(self.shapes):
            layers.append(torch.nn.Linear(fan_in, fan_out))
            if position < len(self.shapes) - 1:
                layers.append(torch.nn.ReLU())
        return layers


@dataclasses.dataclass(frozen=True)
class ConvModelSpec:
    """A CNN on ``image`` (C, H, W): per conv a 3x3 ``Conv2D`` with padding 1 and a ReLU, then
    a 2x2 max pool where ``pools`` says so; then Flatten and ReLU-separated Dense layers
    ``dense`` ((in, out) each), the last giving the logits.
    """

    name: str
    image: tuple[int, int, int]
    convs: tuple[tuple[int, int], ...]  # (in_channels, out_channels)
    pools: tuple[bool, ...]
    dense: tuple[tuple[int, int], ...]
    batch_sizes: tuple[int, ...]
    description: str
    default_baselines: tuple[str, ...] = ("torch-adam-fused",)
    standard: bool = False  # not in a plain ``bpcore bench``: ``--models cnn``

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.image

    @property
    def classes(self) -> int:
        return self.dense[-1][1]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Input channels, every layer's output channels or features (the report's short label)."""
        return (self.image[0], *(out for _, out in self.convs), *(out for _, out in self.dense))

    @property
    def label(self) -> str:
        convs = " ".join(f"conv{o}" + ("+pool" if p else "") for (_, o), p in zip(self.convs, self.pools,
                                                                                    strict=True))
        dense = " ".join(f"dense{o}" for _, o in self.dense)
        return f"{'x'.join(map(str, self.image))} {convs} {dense}"

    @property
    def parameter_count(self) -> int:
        return sum(o * (i * 9 + 1) for i, o in self.convs) + sum(i * o + o for i, o in self.dense)

    def conv_products(self, batch: int) -> list[tuple[int, int, int]]:
        """Per conv layer (out channels, im2col rows ``in * 9``, output pixels over the batch)."""
        products = []
        height, width = self.image[1:]
        for (cin, cout), pool in zip(self.convs, self.pools, strict=True):
            products.append((cout, cin * 9, batch * height * width))
            if pool:
                height, width = height // 2, width // 2
        return products

    def flops_per_step(self, batch: int) -> int:
        """The matrix products' floating-point operations: three times the forward's, as for the MLPs."""
        convs = sum(o * k * p for o, k, p in self.conv_products(batch))
        return 3 * 2 * (convs + batch * sum(i * o for i, o in self.dense))

    def layers(self) -> list[Any]:
        from ..layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU

        layers: list[Any] = []
        for (cin, cout), pool in zip(self.convs, self.pools, strict=True):
            layers += [Conv2D(cin, cout, 3, padding=1), ReLU()] + ([MaxPool2D(2)] if pool else [])
        layers.append(Flatten())
        for position, (fan_in, fan_out) in enumerate(self.dense):
            layers.append(Dense(fan_in, fan_out))
            if position < len(self.dense) - 1:
                layers.append(ReLU())
        return layers

    def torch_layers(self, torch: Any) -> list[Any]:
        layers: list[Any] = []
        for (cin, cout), pool in zip(self.convs, self.pools, strict=True):
            layers += [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU()]
            if pool:
                layers.append(torch.nn.MaxPool2d(2))
        layers.append(torch.nn.Flatten())
        for position, (fan_in, fan_out) in enumerate(self.dense):
            layers.append(torch.nn.Linear(fan_in, fan_out))
            if position < len(self.dense) - 1:
                layers.append(torch.nn.ReLU())
        return layers


AnyModel = ModelSpec | ConvModelSpec

MODELS: dict[str, AnyModel] = {
    spec.name: spec
    for spec in (
        ModelSpec("tiny", (32, 64, 64, 2), (32,), "per-step overhead dominates"),
        ModelSpec("mnist", (784, 256, 128, 10), (64, 128, 1024), "MNIST-shaped"),
        # A step takes about a second here; only the strongest baseline keeps the matrix under a minute.
        ModelSpec("wide", (784, 4096, 4096, 10), (1024,), "matrix products dominate",
                  default_baselines=("torch-adam-fused",)),
        ConvModelSpec("lenet", (1, 28, 28), ((1, 32), (32, 64)), (True, True), ((3136, 128), (128, 10)),
                      (64, 128), "LeNet-shaped CNN on 28x28 images"),
        ConvModelSpec("digits-cnn", (1, 8, 8), ((1, 16), (16, 32)), (True, False), ((512, 10),),
                      (64, 128), "CNN on 8x8 digits: per-operation overhead dominates"),
    )
}

#: Names that stand for several models on the command line.
MODEL_GROUPS: dict[str, tuple[str, ...]] = {
    "mlp": tuple(name for name, spec in MODELS.items() if isinstance(spec, ModelSpec)),
    "cnn": tuple(name for name, spec in MODELS.items() if isinstance(spec, ConvModelSpec)),
}
STANDARD_MODELS = tuple(name for name, spec in MODELS.items() if spec.standard)


def expand_models(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` with each group (``cnn``, ``mlp``) replaced by its models, duplicates dropped."""
    expanded: list[str] = []
    for name in names:
        for member in MODEL_GROUPS.get(name, (name,)):
            if member not in expanded:
                expanded.append(member)
    return tuple(expanded)


def get_model(name: str) -> AnyModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"models: expected names from {sorted(MODELS)} or a group from {sorted(MODEL_GROUPS)}, "
            f"got {name!r}"
        ) from None


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


def synthetic_data(spec: AnyModel, batch: int, dtype: Any, *, seed: int = 0,
                   min_rows: int = 8192) -> SyntheticData:
    """Features N(0, 1) in ``dtype`` and uniform labels, at least four batches of them."""
    batch = checks.positive_int(batch, "batch")
    batches = max(4, math.ceil(min_rows / batch))
    rng = np.random.default_rng(seed)
    shape = (batches * batch, *spec.sample_shape)
    x = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    labels = rng.integers(0, spec.classes, size=batches * batch, dtype=np.int64)
    return SyntheticData(x, labels, int(batch))
