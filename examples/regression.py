"""Noisy regression: a linear and a non-linear target, learned by a small network.

For each problem the test error is compared with the noise floor, the
variance of the noise added to the targets: no model can beat it on fresh
data, and a good one comes close.  Exits with status 1 if a model's test
MSE is more than 1.5 times the noise floor.

    python examples/regression.py [--device cpu] [--epochs 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np

import bpcore
from bpcore.cli import run_script
from bpcore.layers import Dense, Tanh
from bpcore.losses import MSE
from bpcore.optim import Adam

NOISE = 0.1  # standard deviation of the target noise; its variance is the floor of the test MSE


def make_data(
    target: Callable[[np.ndarray], np.ndarray], features: int, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-2.0, 2.0, size=(samples, features)).astype(np.float32)
    y = target(x) + rng.normal(0.0, NOISE, size=(samples, 1))
    return x, y.astype(np.float32)


def linear(x: np.ndarray) -> np.ndarray:
    return x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3


def nonlinear(x: np.ndarray) -> np.ndarray:
    return np.sin(2.0 * x[:, :1]) * np.cos(x[:, 1:2]) + 0.5 * x[:, :1] ** 2 - 1.0


def run(name: str, layers: list, target: Callable, features: int, args: argparse.Namespace) -> bool:
    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_data(target, features, 2000, rng)
    x_test, y_test = make_data(target, features, 2000, rng)
    network = bpcore.Network(layers, seed=args.seed, device=args.device)
    optimizer = Adam(network.parameters(), lr=args.lr)
    history = network.fit(
        x_train, y_train, loss=MSE(), optimizer=optimizer, epochs=args.epochs, batch_size=32,
        validation_split=0.1, seed=args.seed, metrics=["mae"],
    )
    test = network.evaluate(x_test, y_test, loss=MSE(), metrics=["mae"])
    floor = NOISE**2
    ok = test["loss"] <= 1.5 * floor
    print(
        f"{name:>10}: train MSE {history.loss[-1]:.4f}, validation MSE {history.val_loss[-1]:.4f}, "
        f"test MSE {test['loss']:.4f} (noise floor {floor:.4f}, ratio {test['loss'] / floor:.2f}), "
        f"test MAE {test['mae']:.4f}  {'ok' if ok else 'TOO HIGH'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE, else cpu)"
    )
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"device {bpcore.get_backend(args.device).device}, {args.epochs} epochs, seed {args.seed}")
    results = [
        run("linear", [Dense(3, 1)], linear, 3, args),
        run("nonlinear", [Dense(2, 64), Tanh(), Dense(64, 64), Tanh(), Dense(64, 1)], nonlinear, 2, args),
    ]
    if not all(results):
        print("FAILED: a test MSE is more than 1.5 times the noise floor", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
