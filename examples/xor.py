"""XOR with the classic 2-2-1 sigmoid network, mean squared error and plain gradient descent.

The textbook demonstration that a hidden layer lets backpropagation learn a
function no single-layer network can.  Every epoch is one full-batch
gradient-descent step on the four XOR patterns.  A 2-2-1 network has local
minima, so some initialisations get stuck; the default seed is one that
learns.  Exits with status 1 if the network did not learn XOR.

    python examples/xor.py [--device cpu] [--epochs 3000] [--lr 2.0] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import bpcore
from bpcore.cli import run_script
from bpcore.layers import Dense, Sigmoid
from bpcore.losses import MSE
from bpcore.optim import SGD

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([[0], [1], [1], [0]], dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE, else cpu)"
    )
    parser.add_argument("--epochs", type=int, default=3000, help="full-batch gradient-descent steps")
    parser.add_argument("--lr", type=float, default=2.0, help="learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    args = parser.parse_args(argv)

    network = bpcore.Network(
        [Dense(2, 2), Sigmoid(), Dense(2, 1), Sigmoid()], seed=args.seed, device=args.device
    )
    optimizer = SGD(network.parameters(), lr=args.lr)
    history = network.fit(X, Y, loss=MSE(), optimizer=optimizer, epochs=args.epochs, batch_size=None)

    output = network.backend.to_numpy(network.predict(X)).ravel()  # predict gives a CuPy array on a GPU
    print(f"device {network.device}: {args.epochs} epochs of gradient descent, "
          f"lr={args.lr}, seed={args.seed}")
    print(f"loss (MSE): first epoch {history.loss[0]:.4f}, last epoch {history.loss[-1]:.6f}")
    for inputs, target, value in zip(X, Y.ravel(), output, strict=True):
        print(f"  {int(inputs[0])} XOR {int(inputs[1])} = {int(target)}   network: {value:.3f}")
    learned = bool(np.all((output > 0.5) == (Y.ravel() > 0.5))) and history.loss[-1] < 0.05
    if not learned:
        print("FAILED: the network did not learn XOR (stuck in a local minimum? try another --seed "
              "or more --epochs)", file=sys.stderr)
        return 1
    print("learned XOR")
    return 0


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
