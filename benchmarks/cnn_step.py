"""Training-step time of two CNNs: bpcore against PyTorch eager (fused Adam), with bpcore's GEMM time.

Models (float32, softmax cross-entropy, Adam), as in the convolutional-network design:

* ``lenet``: 28x28x1, Conv 1->32 3x3 pad 1, ReLU, MaxPool 2; Conv 32->64 3x3 pad 1,
  ReLU, MaxPool 2; Dense 3136->128, ReLU; Dense 128->10;
* ``digits``: 8x8x1, Conv 1->16 3x3 pad 1, ReLU, MaxPool 2; Conv 16->32 3x3 pad 1,
  ReLU; Dense 512->10.

For each model and batch size one step is forward, loss, backward and the
Adam update.  The "GEMM" column is the time of the same step's matrix
products alone (im2col matrices times weights, forward and both backward
products, and the Dense layers) through the array module's BLAS: the floor
the GEMM formulation can reach.  Samples of both contenders are interleaved
so that background load hits both alike; medians and the interquartile
range are printed.

    python benchmarks/cnn_step.py [--models lenet digits] [--batches 64 128] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import bpcore
from bpcore.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from bpcore.losses import CrossEntropy
from bpcore.optim import Adam

MODELS: dict[str, dict[str, Any]] = {
    "lenet": {
        "image": (1, 28, 28),
        "convs": [(1, 32), (32, 64)],
        "pools": [True, True],
        "dense": [(3136, 128), (128, 10)],
    },
    "digits": {
        "image": (1, 8, 8),
        "convs": [(1, 16), (16, 32)],
        "pools": [True, False],
        "dense": [(512, 10)],
    },
}


def bpcore_step(spec: dict[str, Any], batch: int) -> Callable[[], None]:
    layers: list[Any] = []
    for (cin, cout), pool in zip(spec["convs"], spec["pools"], strict=True):
        layers += [Conv2D(cin, cout, 3, padding=1), ReLU()] + ([MaxPool2D(2)] if pool else [])
    layers.append(Flatten())
    for position, (fin, fout) in enumerate(spec["dense"]):
        layers.append(Dense(fin, fout))
        if position < len(spec["dense"]) - 1:
            layers.append(ReLU())
    network = bpcore.Network(layers, seed=0)
    optimizer, loss = Adam(network.parameters(), lr=1e-3), CrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *spec["image"]), dtype=np.float32)
    y = rng.integers(0, 10, batch)

    def step() -> None:
        network.zero_grad()
        out = network._forward(x, True)
        loss(out, y, check=False)
        network._backward(loss.backward(), accumulate=True, need_input_grad=False)
        optimizer.step()

    return step


def gemm_step(spec: dict[str, Any], batch: int) -> Callable[[], None]:
    """The step's matrix products alone, with the shapes the GEMM formulation uses."""
    rng = np.random.default_rng(0)
    products: list[tuple[Any, Any, Any]] = []
    size = spec["image"][1]
    for (cin, cout), pool in zip(spec["convs"], spec["pools"], strict=True):
        rows, width = batch * size * size, cin * 9
        cols = rng.standard_normal((rows, width), dtype=np.float32)
        weight = rng.standard_normal((width, cout), dtype=np.float32)
        grad = rng.standard_normal((rows, cout), dtype=np.float32)
        products += [(cols, weight, None), (grad.T, cols, None), (grad, weight.T, None)]
        size = size // 2 if pool else size
    for fin, fout in spec["dense"]:
        x = rng.standard_normal((batch, fin), dtype=np.float32)
        w = rng.standard_normal((fin, fout), dtype=np.float32)
        g = rng.standard_normal((batch, fout), dtype=np.float32)
        products += [(x, w, None), (x.T, g, None), (g, w.T, None)]

    def step() -> None:
        for a, b, _ in products:
            np.matmul(a, b)

    return step


def torch_step(spec: dict[str, Any], batch: int) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    modules: list[Any] = []
    for (cin, cout), pool in zip(spec["convs"], spec["pools"], strict=True):
        modules += [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU()]
        if pool:
            modules.append(torch.nn.MaxPool2d(2))
    modules.append(torch.nn.Flatten())
    for position, (fin, fout) in enumerate(spec["dense"]):
        modules.append(torch.nn.Linear(fin, fout))
        if position < len(spec["dense"]) - 1:
            modules.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*modules)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    criterion = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, *spec["image"])
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(x), y).backward()
        optimizer.step()

    return step


def measure(steps: dict[str, Callable[[], None]], repeats: int, inner: int) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(5):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(inner):
                step()
            samples[name].append((time.perf_counter() - started) / inner)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inner", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':8} {'batch':>5}  {'bpcore ms':>16}  {'torch ms':>16}  {'GEMM ms':>16}  "
          f"{'bpcore/torch samples/s':>22}  {'bpcore/GEMM time':>16}")
    for name in args.models:
        for batch in args.batches:
            spec = MODELS[name]
            steps = {"bpcore": bpcore_step(spec, batch), "gemm": gemm_step(spec, batch)}
            reference = torch_step(spec, batch)
            if reference is not None:
                steps["torch"] = reference
            samples = measure(steps, args.repeats, args.inner)
            median = {key: statistics.median(values) * 1e3 for key, values in samples.items()}

            def cell(key: str, samples: dict[str, list[float]] = samples) -> str:
                if key not in samples:
                    return f"{'-':>16}"
                low, _, high = statistics.quantiles(samples[key], n=4)
                middle = statistics.median(samples[key]) * 1e3
                return f"{middle:6.2f} [{low * 1e3:.2f}-{high * 1e3:.2f}]".rjust(16)

            speedup = f"{median['torch'] / median['bpcore']:.2f}x" if "torch" in median else "-"
            print(f"{name:8} {batch:5d}  {cell('bpcore')}  {cell('torch')}  {cell('gemm')}  {speedup:>22}  "
                  f"{median['bpcore'] / median['gemm']:15.2f}x", flush=True)


if __name__ == "__main__":
    main()
