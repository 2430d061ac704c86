"""A character-level LSTM language model on the Python documentation that ships with Python itself.

The text is the standard library's ``pydoc_data.topics`` (the help topics of
the Python Language Reference, about 460,000 characters of English and
code); its first 90 % is the training text, the rest is held out.  The
model is Embedding -> LSTM -> Dense over the characters, trained by
truncated backpropagation through time: the training text is cut into
``--batch-size`` parallel streams, each batch is the next ``--steps``
characters of every stream, and the LSTM's final state after one batch is
the initial state of the next (so the model sees context far beyond one
batch while gradients flow back ``--steps`` characters); gradients are
clipped by norm.  The held-out loss (nats per character) is compared with
the unigram entropy of the text (a model that knows only character
frequencies); the script exits with status 1 unless it is at most
``--target`` times that.  Text sampled from the model is printed at the end.

    python examples/char_lm.py [--device cpu] [--seconds 45] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from blas_threads import limit_blas_threads

import bpcore
from bpcore.cli import run_script
from bpcore.layers import LSTM, Dense, Embedding
from bpcore.losses import CrossEntropy
from bpcore.optim import Adam, clip_grad_norm


def load_text() -> str:
    """The help topics of the Language Reference, in the order pydoc lists them."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def streams(ids: np.ndarray, batch: int) -> np.ndarray:
    """``ids`` cut into ``batch`` contiguous streams, one per row: (batch, len(ids) // batch)."""
    length = len(ids) // batch
    return ids[: batch * length].reshape(batch, length)


def held_out_loss(network: bpcore.Network, lstm: LSTM, data: np.ndarray, steps: int) -> float:
    """Mean loss per character over ``data`` (rows are streams), the state carried between chunks."""
    loss = CrossEntropy(reduction="sum")
    lstm.reset_state()
    total, count = 0.0, 0
    for start in range(0, data.shape[1] - 1, steps):
        stop = min(start + steps, data.shape[1] - 1)
        out = network.forward(data[:, start:stop])
        total += float(loss(out, data[:, start + 1 : stop + 1]))
        count += data.shape[0] * (stop - start)
        lstm.initial_state = lstm.state
    return total / count


def sample(network: bpcore.Network, lstm: LSTM, prompt: str, length: int, vocabulary: str,
           temperature: float, rng: np.random.Generator) -> str:
    """``prompt`` continued by ``length`` characters drawn from the model one at a time."""
    index = {char: position for position, char in enumerate(vocabulary)}
    lstm.reset_state()
    logits = network.backend.to_numpy(network.forward(np.array([[index[c] for c in prompt]])))[0, -1]
    out = []
    for _ in range(length):
        lstm.initial_state = lstm.state
        scaled = logits.astype(np.float64) / temperature
        p = np.exp(scaled - scaled.max())
        choice = int(rng.choice(len(p), p=p / p.sum()))
        out.append(vocabulary[choice])
        logits = network.backend.to_numpy(network.forward(np.array([[choice]])))[0, -1]
    return prompt + "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE, else cpu)"
    )
    parser.add_argument("--seconds", type=float, default=45.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=20, help="at most this many passes over the text")
    parser.add_argument("--batches", type=int, default=None, help="at most this many batches")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64, help="characters per batch and stream (BPTT length)")
    parser.add_argument("--embedding", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    parser.add_argument("--target", type=float, default=0.75,
                        help="held-out loss must be at most this fraction of the unigram entropy")
    parser.add_argument("--sample", type=int, default=300, help="characters to sample at the end")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="threads for the matrix products (small ones: more only add wake-ups)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    limit_blas_threads(args.blas_threads)
    bpcore.get_backend(args.device)  # a device that is not there: one clear error before any work

    text = load_text()
    vocabulary = "".join(sorted(set(text)))
    lookup = np.zeros(max(map(ord, vocabulary)) + 1, dtype=np.int64)
    lookup[[ord(c) for c in vocabulary]] = np.arange(len(vocabulary))
    ids = lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]
    split = int(len(ids) * 0.9)
    train, held_out = streams(ids[:split], args.batch_size), streams(ids[split:], args.batch_size)

    counts = np.bincount(ids[:split], minlength=len(vocabulary)) + 1.0  # add-one: every character seen
    frequencies = counts / counts.sum()
    unigram = float(-np.log(frequencies[ids[split:]]).mean())

    v = len(vocabulary)
    lstm = LSTM(args.embedding, args.hidden, return_sequences=True)
    network = bpcore.Network([Embedding(v, args.embedding), lstm, Dense(args.hidden, v)],
                             seed=args.seed, device=args.device)
    optimizer = Adam(network.parameters(), lr=args.lr)
    loss = CrossEntropy()
    print(f"device {network.device}: {len(text):,} characters, {v} distinct; training on "
          f"{train.size:,} as {args.batch_size} streams, {held_out.size:,} held out")
    started = time.perf_counter()
    batches = 0
    for epoch in range(1, args.epochs + 1):
        lstm.reset_state()
        for start in range(0, train.shape[1] - args.steps - 1, args.steps):
            x = train[:, start : start + args.steps]
            y = train[:, start + 1 : start + args.steps + 1]
            with network.step():
                value = loss(network.forward(x, training=True), y)
                network.zero_grad()
                network.backward(loss.backward())
                clip_grad_norm(network.parameters(), args.clip)
                optimizer.step()
            lstm.initial_state = lstm.state  # truncated BPTT: the next batch continues each stream
            batches += 1
            if time.perf_counter() - started > args.seconds or batches == args.batches:
                break
        else:
            print(f"epoch {epoch}: training loss {float(value):.3f} after "
                  f"{time.perf_counter() - started:.0f}s")
            continue
        break
    seconds = time.perf_counter() - started
    result = held_out_loss(network, lstm, held_out, args.steps)
    print(f"{batches} batches ({batches * args.batch_size * args.steps:,} characters, "
          f"{batches * args.batch_size * args.steps / train.size:.2f} passes) in {seconds:.0f}s; "
          f"last training loss {float(value):.3f}")
    print(f"held-out loss {result:.3f} nats/char ({result / math.log(2):.2f} bits); unigram entropy "
          f"{unigram:.3f} nats/char ({unigram / math.log(2):.2f} bits); ratio {result / unigram:.2f}")
    print("sampled text (temperature 0.7):")
    print(sample(network, lstm, "The ", args.sample, vocabulary, 0.7, np.random.default_rng(args.seed)))
    if result > args.target * unigram:
        print(f"FAILED: held-out loss {result:.3f} is above {args.target} x the unigram entropy",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
