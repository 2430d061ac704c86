"""Handwritten digits (scikit-learn's bundled 8x8 images): a one-hidden-layer network, >= 97% test accuracy.

The 1,797 images are split 75/25 (stratified), standardised with the
training set's statistics, and a 64-128-10 ReLU network is trained with Adam
and softmax cross-entropy.  Exits with status 1 below 97% test accuracy.

    BPCORE_DEVICE=cpu python examples/digits.py [--device cpu] [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpcore
from bpcore.cli import run_script
from bpcore.layers import Dense, ReLU
from bpcore.losses import CrossEntropy
from bpcore.optim import Adam

TARGET_ACCURACY = 0.97


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE, else cpu)"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")
    args = parser.parse_args(argv)

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0  # pixels that are always blank
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    network = bpcore.Network([Dense(64, 128), ReLU(), Dense(128, 10)], seed=args.seed, device=args.device)
    optimizer = Adam(network.parameters(), lr=args.lr)
    loss = CrossEntropy()
    started = time.perf_counter()
    history = network.fit(
        x_train, y_train, loss=loss, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
        metrics=["accuracy"], seed=args.seed,
    )
    seconds = time.perf_counter() - started
    test = network.evaluate(x_test, y_test, loss=loss, metrics=["accuracy"])
    print(f"device {network.device}: {len(x_train)} training and {len(x_test)} test images, "
          f"{args.epochs} epochs in {seconds:.2f}s")
    print(f"train: loss {history.loss[-1]:.4f}, accuracy {history['accuracy'][-1]:.4f}")
    print(f"test:  loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f} (target {TARGET_ACCURACY:.0%})")
    if test["accuracy"] < TARGET_ACCURACY:
        print(f"FAILED: test accuracy {test['accuracy']:.4f} is below {TARGET_ACCURACY:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
