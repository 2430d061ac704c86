"""Which part of the standard library does a docstring document? Bidirectional GRU beside a bag of words.

The usual labelled text corpora (20 Newsgroups, IMDb, AG News) are
downloads, not files inside a package, so this example builds a real,
offline one from the standard library itself: every public function, class
and method docstring of 62 modules, labelled with the area of the library
its module belongs to (7 classes: files and the OS, text, numbers and maths,
dates and times, networking and the internet, concurrency, data structures
and algorithms).  A docstring that occurs in more than one area is dropped.
The texts are lower-cased word and punctuation tokens, cut to ``--max-len``
tokens (100 keeps 89% of the docstrings whole, 40 only 68%); words seen at
least twice in training are the vocabulary (index 1 stands for any other
word), and each batch is padded with index 0.

The classifier is ``Embedding(..., padding_idx=0)``, whose mask makes the
layers after it skip the padding, then ``Concatenate`` of two branches over
the embedded words: a ``Bidirectional(GRU(..., return_sequences=True))``
that reads each docstring both ways followed by ``GlobalMaxPool1D`` (each
feature's maximum over the real steps, so that a telling word anywhere in a
long docstring counts), and ``GlobalAvgPool1D``, the mean embedding of the
real words (a fastText-style bag of words beside the GRU); then ``Dense``
over the 7 classes, with dropout on the embeddings and on the joined
features, trained by AdamW (decoupled weight decay 0.3).  Word dropout:
every epoch, each training token is read as the unknown word with
probability ``--word-dropout`` (0.2), so the network cannot lean on a few
words.  15% of the training texts (stratified) are held out for early
stopping on the validation loss (the best epoch's weights restored); with
``--refit`` (the default) a fresh network of the same seed is then trained
on all the training texts for that best epoch count.  Every choice was made
on the validation texts; the test set is used once, at the end.  The
baseline is scikit-learn's bag-of-words logistic regression (TF-IDF of the
words of the whole docstring), trained on all the training texts.  The
split is 75/25, stratified; the script exits with status 1 if the
network's test accuracy is below ``--target``.  The exact counts depend on
the Python version.

    pip install '.[sklearn]'
    python examples/text_classification.py [--device cpu] [--epochs 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import importlib
import inspect
import re
import sys
import time

import numpy as np
from blas_threads import limit_blas_threads
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import bpcore
from bpcore.cli import run_script
from bpcore.layers import (
    GRU,
    Bidirectional,
    Concatenate,
    Dense,
    Dropout,
    Embedding,
    GlobalAvgPool1D,
    GlobalMaxPool1D,
)
from bpcore.losses import CrossEntropy
from bpcore.optim import AdamW
from bpcore.training import EarlyStopping, History

AREAS = {
    "files and the OS": ["os", "os.path", "shutil", "pathlib", "tempfile", "glob", "fnmatch", "stat",
                         "filecmp", "io", "zipfile", "tarfile"],
    "text": ["string", "re", "textwrap", "difflib", "unicodedata", "codecs", "html", "html.parser"],
    "numbers and maths": ["math", "cmath", "statistics", "decimal", "fractions", "random", "numbers"],
    "dates and times": ["datetime", "time", "calendar", "zoneinfo"],
    "networking and the internet": ["socket", "ssl", "http.client", "http.server", "urllib.request",
                                    "urllib.parse", "email.message", "email.utils", "smtplib", "ftplib",
                                    "ipaddress", "mimetypes"],
    "concurrency": ["threading", "multiprocessing", "multiprocessing.pool", "asyncio", "concurrent.futures",
                    "queue", "subprocess", "sched", "selectors"],
    "data structures and algorithms": ["collections", "itertools", "functools", "heapq", "bisect", "array",
                                       "operator", "copy", "enum", "dataclasses"],
}
PAD, UNKNOWN = 0, 1
TOKEN = re.compile(r"[a-z0-9_]+|[^\sa-z0-9_]")


def module_docstrings(name: str) -> set[str]:
    """The docstrings of a module's public functions and classes and of those classes' public methods."""
    module = importlib.import_module(name)
    found: set[str] = set()
    for member_name, member in inspect.getmembers(module):
        if member_name.startswith("_"):
            continue
        members = [member]
        if inspect.isclass(member):
            members += [value for key, value in vars(member).items() if not key.startswith("_")]
        for item in members:
            text = inspect.getdoc(item) if callable(item) else None
            if text:
                found.add(text)
    return found


def load_corpus() -> tuple[list[str], np.ndarray, list[str]]:
    """Docstrings and their area labels; docstrings found in more than one area are left out."""
    by_area = {area: set().union(*map(module_docstrings, modules)) for area, modules in AREAS.items()}
    areas_of = collections.Counter(text for texts in by_area.values() for text in texts)
    names = list(AREAS)
    texts, labels = [], []
    for label, area in enumerate(names):
        for text in sorted(by_area[area]):
            if areas_of[text] == 1:
                texts.append(text)
                labels.append(label)
    return texts, np.array(labels), names


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def encode(texts: list[list[str]], vocabulary: dict[str, int], max_len: int) -> np.ndarray:
    """Token indices, (n, longest) padded with PAD at the end (each row at least 1 token)."""
    rows = [[vocabulary.get(word, UNKNOWN) for word in text[:max_len]] or [UNKNOWN] for text in texts]
    out = np.full((len(rows), max(map(len, rows))), PAD, dtype=np.int64)
    for position, row in enumerate(rows):
        out[position, : len(row)] = row
    return out


def drop_words(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``x`` with each real token replaced by UNKNOWN with probability ``p`` (padding stays)."""
    if p == 0.0:
        return x
    out = x.copy()
    out[(rng.random(x.shape) < p) & (x != PAD)] = UNKNOWN
    return out


def classifier(vocabulary_size: int, classes: int, args: argparse.Namespace) -> bpcore.Network:
    """Embedding, then a bidirectional GRU's maximum over time beside the mean embedding, then Dense."""
    e, h = args.embedding, args.hidden
    return bpcore.Network(
        [Embedding(vocabulary_size, e, padding_idx=PAD), Dropout(args.dropout),
         Concatenate([Bidirectional(GRU(e, h, return_sequences=True)), GlobalMaxPool1D()], GlobalAvgPool1D()),
         Dropout(args.dropout), Dense(2 * h + e, classes)],
        seed=args.seed, device=args.device,
    )


def train(network: bpcore.Network, x: np.ndarray, y: np.ndarray, args: argparse.Namespace, *, epochs: int,
          validation: tuple[np.ndarray, np.ndarray] | None = None,
          stopping: EarlyStopping | None = None) -> History:
    """``epochs`` epochs of AdamW (fewer if ``stopping`` ends them), each on freshly word-dropped texts."""
    loss = CrossEntropy()
    optimizer = AdamW(network.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    history = History("val_loss" if validation is not None else "loss")
    if stopping is not None:
        stopping.on_train_begin(network)
    for epoch in range(1, epochs + 1):
        # One epoch per call, so that every epoch sees its own dropped words; the optimiser
        # carries on, and each epoch has its own seed (sample order and dropout masks).
        ran = network.fit(drop_words(x, args.word_dropout, rng), y, loss=loss, optimizer=optimizer, epochs=1,
                          batch_size=args.batch_size, metrics=["accuracy"], validation_data=validation,
                          seed=1000 * args.seed + epoch, verbose=0)
        logs = {key: ran[key][-1] for key in list(ran.keys())}
        history.append(epoch, logs)
        if stopping is not None and stopping.on_epoch_end(epoch, logs):
            break
    if stopping is not None:
        stopping.on_train_end(history)
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE, else cpu)"
    )
    parser.add_argument("--epochs", type=int, default=40, help="at most; early stopping usually ends sooner")
    parser.add_argument("--patience", type=int, default=5, help="epochs without a lower validation loss")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=100, help="tokens kept per docstring")
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=32, help="per direction")
    parser.add_argument("--lr", type=float, default=6e-3)
    parser.add_argument("--weight-decay", type=float, default=0.3, help="AdamW's (decoupled) weight decay")
    parser.add_argument("--dropout", type=float, default=0.5, help="on the embeddings and pooled features")
    parser.add_argument("--word-dropout", type=float, default=0.2,
                        help="chance that a training token is read as an unknown word, drawn every epoch")
    parser.add_argument("--refit", action=argparse.BooleanOptionalAction, default=True,
                        help="train again on all training texts for the best epoch count")
    parser.add_argument("--target", type=float, default=0.80, help="least test accuracy of the network")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="threads for the matrix products (small ones: more only add wake-ups)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    limit_blas_threads(args.blas_threads)
    bpcore.get_backend(args.device)  # a device that is not there: one clear error before any work

    texts, labels, names = load_corpus()
    train_text, test_text, y_train, y_test = train_test_split(
        texts, labels, test_size=0.25, random_state=0, stratify=labels
    )
    train_tokens, test_tokens = [tokens(t) for t in train_text], [tokens(t) for t in test_text]
    counts = collections.Counter(word for text in train_tokens for word in text)
    vocabulary = {word: index for index, word in enumerate(sorted(w for w, c in counts.items() if c >= 2), 2)}
    x_train = encode(train_tokens, vocabulary, args.max_len)
    x_test = encode(test_tokens, vocabulary, args.max_len)
    # Early stopping's validation texts: 15% of the training part, never the test set.
    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train, y_train, test_size=0.15, random_state=0, stratify=y_train
    )
    lengths = (x_train != PAD).sum(axis=1)
    print(f"{len(texts)} docstrings in {len(names)} areas ({len(y_fit)} train + {len(y_val)} validation, "
          f"{len(y_test)} test); "
          f"vocabulary {len(vocabulary) + 2} tokens; lengths {lengths.min()} to {lengths.max()} "
          f"(median {int(np.median(lengths))}), padded to {x_train.shape[1]}")

    baseline = LogisticRegression(C=10.0, max_iter=2000)
    vectorizer = TfidfVectorizer(tokenizer=tokens, token_pattern=None, lowercase=False,
                                 min_df=2, sublinear_tf=True)
    started = time.perf_counter()
    baseline.fit(vectorizer.fit_transform(train_text), y_train)
    baseline_accuracy = float((baseline.predict(vectorizer.transform(test_text)) == y_test).mean())
    baseline_seconds = time.perf_counter() - started

    v = len(vocabulary) + 2
    stopping = EarlyStopping("val_loss", patience=args.patience, restore_best_weights=True)
    started = time.perf_counter()
    network = classifier(v, len(names), args)
    history = train(network, x_fit, y_fit, args, epochs=args.epochs, validation=(x_val, y_val),
                    stopping=stopping)
    best = stopping.best_epoch or len(history["loss"])
    print(f"device {network.device}: Embedding + [Bidirectional(GRU({args.hidden})), max over time | mean], "
          f"{len(history['loss'])} epochs, best validation loss after epoch {best} "
          f"(validation accuracy {history['val_accuracy'][best - 1]:.3f})")
    if args.refit:  # the epoch count chosen on the validation texts, now with them
        network = classifier(v, len(names), args)
        train(network, x_train, y_train, args, epochs=best)
        print(f"trained again on all {len(y_train)} training texts for {best} epochs")
    seconds = time.perf_counter() - started
    test = network.evaluate(x_test, y_test, loss=CrossEntropy(), metrics=["accuracy"])
    print(f"test accuracy: network {test['accuracy']:.3f} ({seconds:.1f}s), bag-of-words logistic regression "
          f"{baseline_accuracy:.3f} ({baseline_seconds:.1f}s)")
    if test["accuracy"] < args.target:
        print(f"FAILED: test accuracy {test['accuracy']:.3f} is below {args.target}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
