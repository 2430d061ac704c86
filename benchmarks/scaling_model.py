"""The scaling model of data-parallel training: ring all-reduce time against a step's compute time.

    python benchmarks/scaling_model.py [--ranks 8] [--markdown]

Per step each of ``p`` ranks computes forward and backward on its ``b``
samples, then the gradient buffer (4 bytes per float32 parameter) is summed
by a ring all-reduce, which sends ``2(p-1)/p`` times the buffer over each
link in ``2(p-1)`` steps:

    t_compute(b) = t_fixed + b * F / R          F: training FLOPs per sample, R: the device's rate
    t_allreduce  = 2(p-1)/p * bytes / bandwidth + 2(p-1) * latency

Without overlap, the scaling efficiency is ``t_compute / (t_compute +
t_allreduce)``; a model "stops scaling" below the per-rank batch at which the
all-reduce costs as much as the compute (50 %), and runs at 90 % above
``b90``.  F counts multiply-adds of the matrix products (and convolutions)
twice, three products per layer (forward, input and weight gradients).
The device figures are assumptions, printed with the table; the CPU's are
this project's measurements on a 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    parameters: int
    forward_macs: int  # multiply-adds of one sample's forward pass

    @property
    def flops(self) -> float:
        return 3 * 2 * self.forward_macs  # forward, input gradient, weight gradient


def mlp(name: str, *sizes: int) -> Model:
    pairs = list(itertools.pairwise(sizes))
    return Model(name, sum(i * o + o for i, o in pairs), sum(i * o for i, o in pairs))


def lenet() -> Model:
    """LeNet-5 on 28x28 inputs: conv 6@5x5 (pad 2), pool, conv 16@5x5, pool, 400-120-84-10."""
    conv1, conv2 = 6 * (25 + 1), 16 * (6 * 25 + 1)
    fc = 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    return Model("LeNet-5", conv1 + conv2 + fc, macs)


MODELS = [mlp("MNIST 784-256-128-10", 784, 256, 128, 10), mlp("wide 784-4096-4096-10", 784, 4096, 4096, 10),
          lenet()]


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    rate: float  # effective FLOP/s of the step's matrix products
    fixed: float  # seconds per step that do not grow with the batch (kernel launches, Python)


DEVICES = [
    Device("GPU (assumed: 20 TFLOP/s effective float32, 0.2 ms launch overhead per step)", 20e12, 0.2e-3),
    Device("CPU node (GEMM rate measured here, rounded: 0.2 TFLOP/s; 0.05 ms per step estimated)",
           0.2e12, 0.05e-3),
]
LINKS = [("25 GB/s (NVLink-class)", 25e9, 10e-6), ("1.25 GB/s (10 GbE)", 1.25e9, 30e-6)]


def allreduce_seconds(parameters: int, ranks: int, bandwidth: float, latency: float) -> float:
    return 2 * (ranks - 1) / ranks * 4 * parameters / bandwidth + 2 * (ranks - 1) * latency


def batch_for(efficiency: float, t_allreduce: float, model: Model, device: Device) -> float:
    """The per-rank batch at which compute / (compute + all-reduce) reaches ``efficiency``."""
    needed = t_allreduce * efficiency / (1 - efficiency)
    return max(0.0, (needed - device.fixed) * device.rate / model.flops)


def rows(ranks: int) -> list[list[str]]:
    table = []
    for device in DEVICES:
        for link, bandwidth, latency in LINKS:
            for model in MODELS:
                t_ar = allreduce_seconds(model.parameters, ranks, bandwidth, latency)
                per_sample = model.flops / device.rate
                b50, b90 = (batch_for(e, t_ar, model, device) for e in (0.5, 0.9))
                table.append([
                    device.name.split(" (")[0], link, model.name, f"{model.parameters:,}",
                    f"{model.flops / 1e6:.1f}", f"{per_sample * 1e6:.3g}", f"{t_ar * 1e3:.3g}",
                    "any" if b50 < 1 else f"{math.ceil(b50):,}", "any" if b90 < 1 else f"{math.ceil(b90):,}",
                ])
    return table


HEADER = ["device", "link", "model", "parameters", "MFLOP/sample", "µs/sample", "all-reduce ms",
          "b50", "b90"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=8)
    args = parser.parse_args()
    print(f"p = {args.ranks} ranks; " + "; ".join(d.name for d in DEVICES))
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows(args.ranks):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
