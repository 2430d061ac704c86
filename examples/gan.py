"""A Wasserstein GAN as in the paper (Arjovsky et al., 2017) on 8 Gaussians on a ring, then on digits.

Two networks trained in turn in a custom loop: the critic ``D`` takes
``--critic-steps`` RMSProp steps (lr 5e-5) on ``mean D(fake) - mean D(real)``,
its weights clamped to ``[-0.01, 0.01]`` after each (``clamp_parameters``),
then the generator ``G`` takes one RMSProp step on ``-mean D(G(z))``, its
gradient flowing back through the critic without touching the critic's
gradients (``backward(..., parameter_grads=False)``).

``ring`` (default): a mixture of 8 Gaussians (standard deviation ``--std``)
on a circle of radius ``--radius``.  The script measures how many modes the
generator covers (a mode counts when at least 1/4 of its share of samples
lies within 3 standard deviations of it) and the fraction of samples within
3 standard deviations of some mode, prints both and exits with status 1
below 7 of 8 modes or 80 %.  ``digits``: scikit-learn's 8x8 digits, with
``--plot`` writing a grid of generated digits.

    python examples/gan.py [ring|digits] [--iterations N] [--seed 0] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any

import numpy as np
from blas_threads import limit_blas_threads

import bpcore
from bpcore.backends import device_scope
from bpcore.cli import run_script
from bpcore.layers import Dense, ReLU, Sigmoid
from bpcore.optim import RMSProp, clamp_parameters

MODES = 8


def mlp(widths: list[int], seed: int, device: Any, out_activation: Any = None) -> bpcore.Network:
    layers: list[Any] = []
    for position, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        layers.append(Dense(width_in, width_out, init="he_uniform"))
        if position < len(widths) - 2:
            layers.append(ReLU())
    if out_activation is not None:
        layers.append(out_activation)
    return bpcore.Network(layers, seed=seed, device=device)


class WGAN:
    """Generator, critic, their RMSProp optimisers and one training iteration (critic steps + one G step)."""

    def __init__(
        self,
        generator: bpcore.Network,
        critic: bpcore.Network,
        *,
        batch_size: int = 256,
        lr: float = 5e-5,
        clip: float = 0.01,
        critic_steps: int = 5,
        seed: int = 0,
    ) -> None:
        self.generator, self.critic = generator, critic
        self.g_optimizer = RMSProp(generator.parameters(), lr=lr)
        self.d_optimizer = RMSProp(critic.parameters(), lr=lr)
        self.batch_size, self.clip, self.critic_steps = batch_size, clip, critic_steps
        backend, dtype, n = critic.backend, critic.dtype, batch_size
        self.noise_width = generator.in_features or 1
        self.random = generator.backend.random(seed)
        self.noise = backend.empty((n, self.noise_width), dtype)
        # Real and generated samples go through the critic as ONE batch of 2n:
        # d/dscore of mean(D(fake)) - mean(D(real)) is -1/n on real rows, +1/n on fake ones.
        self.both = backend.empty((2 * n, critic.in_features), dtype)
        self.critic_grad = backend.asarray(np.repeat([[-1.0 / n], [1.0 / n]], n, axis=0), dtype)
        self.generator_grad = backend.asarray(np.full((n, 1), -1.0 / n), dtype)  # d/dscore of -mean(D(G(z)))

    def _draw_noise(self) -> Any:
        with device_scope(self.generator.backend):  # CuPy draws and computes on the current GPU
            return self.random.standard_normal(size=self.noise.shape, dtype=self.noise.dtype, out=self.noise)

    def iteration(self, real_batch: Any) -> None:
        """``critic_steps`` critic updates (with clipping), then one generator update.

        ``real_batch(n)`` returns ``n`` real samples on the networks' device.
        """
        g, d, n = self.generator, self.critic, self.batch_size
        with device_scope(d.backend):  # the networks' GPU current for the array work written here
            for _ in range(self.critic_steps):
                self.both[:n] = real_batch(n)
                self.both[n:] = g.forward(self._draw_noise(), check=False)
                d.forward(self.both, training=True, check=False)
                # accumulate=False writes the gradients instead of adding them: no zero_grad() needed.
                d.backward(self.critic_grad, check=False, input_grad=False, accumulate=False)
                self.d_optimizer.step()
                clamp_parameters(d.parameters(), -self.clip, self.clip)
            fake = g.forward(self._draw_noise(), training=True, check=False)
            d.forward(fake, check=False)
            through_critic = d.backward(self.generator_grad, check=False, parameter_grads=False)
            g.backward(through_critic, check=False, input_grad=False, accumulate=False)
            self.g_optimizer.step()

    def sample(self, count: int) -> np.ndarray:
        """``count`` generated samples, on the host."""
        with device_scope(self.generator.backend):
            noise = self.random.standard_normal(size=(count, self.noise_width), dtype=self.noise.dtype)
        return np.asarray(self.generator.backend.to_numpy(self.generator.forward(noise)))


# --- 8 Gaussians ---------------------------------------------------------------------------
def ring_centres(radius: float) -> np.ndarray:
    angles = 2 * np.pi * np.arange(MODES) / MODES
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def ring_sampler(network: bpcore.Network, radius: float, std: float, seed: int) -> Any:
    dtype = network.dtype
    centres = network.backend.asarray(ring_centres(radius), dtype=dtype)
    random = network.backend.random(seed + 1)

    def real_batch(n: int) -> Any:
        chosen = centres[random.integers(0, MODES, size=n)]
        chosen += std * random.standard_normal(size=(n, 2), dtype=dtype)
        return chosen

    return real_batch


def ring_quality(samples: np.ndarray, radius: float, std: float) -> tuple[int, float]:
    """(modes covered, fraction of samples within 3 std of some mode)."""
    distances = np.linalg.norm(samples[:, None, :] - ring_centres(radius)[None], axis=2)
    nearest, closest = distances.argmin(axis=1), distances.min(axis=1)
    good = closest <= 3 * std
    per_mode = np.bincount(nearest[good], minlength=MODES)
    covered = int((per_mode >= 0.25 * len(samples) / MODES).sum())
    return covered, float(good.mean())


def run_ring(args: argparse.Namespace) -> int:
    generator = mlp([2, args.hidden, args.hidden, 2], args.seed, args.device)
    critic = mlp([2, args.hidden, args.hidden, 1], args.seed + 1, args.device)
    gan = WGAN(generator, critic, batch_size=args.batch_size, critic_steps=args.critic_steps, seed=args.seed)
    real_batch = ring_sampler(critic, args.radius, args.std, args.seed)
    started = time.perf_counter()
    for _ in range(args.iterations):
        gan.iteration(real_batch)
    seconds = time.perf_counter() - started
    covered, within = ring_quality(gan.sample(10_000), args.radius, args.std)
    print(f"device {critic.device}: {args.iterations} iterations ({args.critic_steps} critic steps each, "
          f"batch {args.batch_size}) in {seconds:.1f}s, {seconds / args.iterations * 1e3:.2f} ms each")
    print(f"modes covered: {covered} of {MODES}; samples within 3 std of a mode: {within:.1%}")
    if args.plot:
        samples = gan.sample(2_000)
        title = f"WGAN: {covered}/8 modes, {within:.0%} near a mode"
        scatter(args.plot, samples, ring_centres(args.radius), title)
    if covered < 7 or within < 0.8:
        print(f"below the target (7 of 8 modes and 80 %): {covered} modes, {within:.1%}", file=sys.stderr)
        return 1
    return 0


def scatter(path: str, samples: np.ndarray, centres: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="generated")
    axes.scatter(centres[:, 0], centres[:, 1], marker="x", color="k", label="modes")
    axes.set(title=title, aspect="equal")
    axes.legend(loc="upper right", fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"samples written to {path}")


# --- digits --------------------------------------------------------------------------------
def run_digits(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits

    images = (load_digits().data / 16.0).astype(np.float32)
    generator = mlp([args.noise, args.hidden, args.hidden, 64], args.seed, args.device,
                    out_activation=Sigmoid())
    critic = mlp([64, args.hidden, args.hidden, 1], args.seed + 1, args.device)
    gan = WGAN(generator, critic, batch_size=args.batch_size, critic_steps=args.critic_steps,
               lr=args.lr, seed=args.seed)
    data = critic.as_input(images)
    random = critic.backend.random(args.seed + 1)

    def real_batch(n: int) -> Any:
        return data[random.integers(0, data.shape[0], size=n)]

    started = time.perf_counter()
    for _ in range(args.iterations):
        gan.iteration(real_batch)
    samples = gan.sample(1_000)
    # Quality: each generated image's distance to its nearest real digit, against real-to-real.
    squared = (samples**2).sum(1)[:, None] - 2 * samples @ images.T + (images**2).sum(1)[None]
    nearest = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    print(f"device {critic.device}: {args.iterations} iterations in {time.perf_counter() - started:.1f}s; "
          f"mean distance of a generated digit to the nearest real one {nearest.mean():.2f} "
          f"(pixel values in [0, 1], 64 pixels)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, grid = plt.subplots(8, 8, figsize=(6, 6))
        for axes, image in zip(grid.ravel(), samples[:64], strict=True):
            axes.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes.axis("off")
        figure.suptitle("WGAN: generated digits")
        figure.savefig(args.plot, dpi=100)
        plt.close(figure)
        print(f"grid of generated digits written to {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", choices=["ring", "digits"], default="ring")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=None,
                        help="generator steps (default: 4000)")
    parser.add_argument("--critic-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--noise", type=int, default=16, help="noise width of the digits generator")
    parser.add_argument("--radius", type=float, default=2.0)
    parser.add_argument("--std", type=float, default=0.25)
    parser.add_argument("--plot", metavar="FILE.png", help="write generated samples to FILE.png")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads (default 1: these matrices are too small for more to pay off)")
    args = parser.parse_args(argv)
    limit_blas_threads(args.blas_threads)
    if args.iterations is None:
        args.iterations = 4000
    return run_ring(args) if args.data == "ring" else run_digits(args)


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
