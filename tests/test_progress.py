"""fit's progress bar advances with every batch, so that a long epoch shows its progress."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import bpcore
from bpcore.layers import Dense
from bpcore.training.progress import Progress


class ThreeBatches:
    steps = 3

    def epoch(self) -> Iterator[int]:
        yield from range(self.steps)


def test_the_bar_moves_after_each_batch_and_names_the_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(epochs=2, verbose=1, description="test")
    batches = progress.follow(ThreeBatches())
    bar = progress._bar
    assert bar.total == 6 and bar.unit == "batch" and batches.steps == 3
    seen = []
    for batch in batches.epoch():
        seen.append((batch, bar.n))  # the bar counts the batches whose step is done
    assert seen == [(0, 0), (1, 1), (2, 2)] and bar.n == 3
    assert bar.desc.startswith("fit (epoch 1 of 2)")
    progress.epoch_end(1, {"loss": 0.5}, 0.1)
    list(batches.epoch())
    assert bar.desc.startswith("fit (epoch 2 of 2)") and bar.n == 6
    progress.close("done")
    assert "6/6" in capsys.readouterr().err


def test_a_resumed_run_starts_past_the_epochs_done() -> None:
    progress = Progress(epochs=4, verbose=1, description="test")
    batches = progress.follow(ThreeBatches(), first_epoch=3)
    assert progress._bar.n == 6
    list(batches.epoch())
    assert progress._bar.desc.startswith("fit (epoch 3 of 4)") and progress._bar.n == 9
    progress.close("done")


@pytest.mark.parametrize("verbose", [0, 2, False])
def test_without_a_bar_the_batches_are_untouched(verbose: int) -> None:
    batches = ThreeBatches()
    assert Progress(epochs=2, verbose=verbose, description="test").follow(batches) is batches


def test_fit_with_verbose_1_counts_every_batch_of_every_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(0).normal(size=(64, 3))
    y = (x[:, 0] > 0).astype(int)
    net = bpcore.Network([Dense(3, 2)], seed=0)
    history = net.fit(x, y, loss="cross_entropy", optimizer=bpcore.optim.SGD(net.parameters(), lr=0.1),
                      epochs=3, batch_size=16, verbose=1)
    err = capsys.readouterr().err
    assert len(history) == 3
    assert "fit (epoch 3 of 3)" in err and "12/12" in err and "batch" in err
