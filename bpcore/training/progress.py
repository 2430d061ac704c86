"""Reporting during ``fit``: a progress bar in a terminal, log records always.

``verbose`` follows Keras: 0 (or False) is silent, 1 (or True) draws a bar
(tqdm, on stderr), 2 writes one line per epoch to stderr (through tqdm's
``write``, as the bar does).  None, the default, draws the bar only when
stderr is a terminal; an embedded run (a pipeline, a notebook kernel writing
to a pipe, a test) stays silent.  Every epoch is
also logged under the ``bpcore`` logger at DEBUG, and the start and end of
training at INFO, so applications decide what they see.
"""

from __future__ import annotations

import logging
import sys
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
    """The progress bar over epochs and the per-epoch log records of one ``fit``."""

    def __init__(self, *, epochs: int, verbose: int | None, description: str) -> None:
        self.epochs = epochs
        self._bar: Any = None
        self._lines = verbose == 2
        if wants_progress_bar(verbose):
            from tqdm import tqdm

            self._bar = tqdm(total=epochs, unit="epoch", desc="fit", file=sys.stderr, leave=True,
                             dynamic_ncols=True)
        logger.info("fit: %s", description)

    def epoch_end(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        logger.debug("epoch %d/%d (%.3fs): %s", epoch, self.epochs, seconds, format_logs(logs))
        if self._bar is not None:
            self._bar.set_postfix({key: f"{value:.4g}" for key, value in logs.items() if key != "lr"},
                                  refresh=False)
            self._bar.update(1)
        if self._lines:
            from tqdm import tqdm

            tqdm.write(f"epoch {epoch}/{self.epochs} - {seconds:.3f}s - {format_logs(logs)}", file=sys.stderr)

    def close(self, summary: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        logger.info("fit: %s", summary)
