"""Reporting during ``fit``: a progress bar in a terminal, log records always.

``verbose`` follows Keras: 0 (or False) is silent, 1 (or True) draws a bar
(tqdm, on stderr) that advances with every batch, so that a long epoch shows
its progress too, 2 writes one line per epoch to stderr (through tqdm's
``write``, as the bar does).  None, the default, draws the bar only when
stderr is a terminal; an embedded run (a pipeline, a notebook kernel writing
to a pipe, a test) stays silent.  Every epoch is
also logged under the ``bpcore`` logger at DEBUG, and the start and end of
training at INFO, so applications decide what they see.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("bpcore")


def wants_progress_bar(verbose: int | None) -> bool:
    """Whether to draw a bar: ``verbose == 1``, or stderr being a terminal when it is None."""
    if verbose is not None:
        return verbose == 1
    stream = sys.stderr
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


def format_logs(logs: dict[str, float]) -> str:
    return " ".join(f"{key}={value:.6g}" for key, value in logs.items())


class Progress:
    """The progress bar (by batch, once it follows them) and the per-epoch log records of one ``fit``."""

    def __init__(self, *, epochs: int, verbose: int | None, description: str) -> None:
        self.epochs = epochs
        self._bar: Any = None
        self._steps: int | None = None  # batches per epoch, once the bar follows them
        self._lines = verbose == 2
        if wants_progress_bar(verbose):
            from tqdm import tqdm

            self._bar = tqdm(total=epochs, unit="epoch", desc="fit", file=sys.stderr, leave=True,
                             dynamic_ncols=True)
        logger.info("fit: %s", description)

    def follow(self, batches: Any, first_epoch: int = 1) -> Any:
        """``batches``, or, while a bar is drawn, a view of it whose epochs advance the bar by batch.

        The bar then counts the batches of all epochs together (a run resumed
        at ``first_epoch`` starts past the epochs done before) and names the
        epoch it is in.  Without a bar ``batches`` itself is returned, so the
        training loop runs exactly as before.
        """
        if self._bar is None:
            return batches
        self._steps = steps = batches.steps
        self._bar.reset(total=self.epochs * steps)
        self._bar.unit = "batch"
        self._bar.n = (first_epoch - 1) * steps
        return _FollowedBatches(batches, self._bar, steps, self.epochs)

    def epoch_end(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        logger.debug("epoch %d/%d (%.3fs): %s", epoch, self.epochs, seconds, format_logs(logs))
        if self._bar is not None:
            self._bar.set_postfix({key: f"{value:.4g}" for key, value in logs.items() if key != "lr"},
                                  refresh=False)
            if self._steps is None:  # a bar over epochs
                self._bar.update(1)
            else:
                self._bar.n = epoch * self._steps
                self._bar.refresh()
        if self._lines:
            from tqdm import tqdm

            tqdm.write(f"epoch {epoch}/{self.epochs} - {seconds:.3f}s - {format_logs(logs)}", file=sys.stderr)

    def close(self, summary: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        logger.info("fit: %s", summary)


class _FollowedBatches:
    """A fit's batches whose ``epoch()`` moves a progress bar on by one after each batch's step."""

    def __init__(self, batches: Any, bar: Any, steps: int, epochs: int) -> None:
        self._batches, self._bar, self._steps, self._epochs = batches, bar, steps, epochs

    def __getattr__(self, name: str) -> Any:  # steps, data, sizes(), ...: those of the batches
        return getattr(self._batches, name)

    def epoch(self) -> Iterator[tuple[Any, ...]]:
        bar = self._bar
        bar.set_description(f"fit (epoch {bar.n // self._steps + 1} of {self._epochs})", refresh=False)
        for batch in self._batches.epoch():
            yield batch
            bar.update(1)  # the loop asked for the next batch: this one's step is done
