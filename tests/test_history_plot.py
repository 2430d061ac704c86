"""History.plot: the loss and metric curves drawn with matplotlib (Agg, no window)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bpcore.training import History  # noqa: E402


def recorded(validation: bool = True) -> History:
    history = History(monitor="val_loss" if validation else "loss")
    for epoch, (loss, accuracy) in enumerate([(1.0, 0.5), (0.6, 0.7), (0.5, 0.8)], start=1):
        logs = {"loss": loss, "accuracy": accuracy, "lr": 0.1}
        if validation:
            logs |= {"val_loss": [0.9, 0.4, 0.7][epoch - 1], "val_accuracy": accuracy - 0.1}
        history.append(epoch, logs)
    return history


def curves(ax: Axes) -> dict[str, list[float]]:
    return {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}


def test_draws_loss_and_metric_panels_with_training_and_validation_curves() -> None:
    history = recorded()
    axes = history.plot()
    assert isinstance(axes, np.ndarray) and axes.shape == (2,)
    loss, accuracy = axes
    assert isinstance(loss, Axes) and isinstance(loss.figure, Figure)
    assert loss.get_title() == "loss" and accuracy.get_title() == "accuracy"
    assert curves(loss)["training"] == [1.0, 0.6, 0.5] and curves(loss)["validation"] == [0.9, 0.4, 0.7]
    assert "best epoch (2)" in curves(loss)  # the monitored val_loss is best at epoch 2
    assert curves(accuracy)["validation"] == pytest.approx([0.4, 0.6, 0.7])
    assert list(loss.get_lines()[0].get_xdata()) == [1, 2, 3] and loss.get_xlabel() == "epoch"
    axes[0].figure.savefig(__import__("io").BytesIO(), format="png")  # renders


def test_draws_into_the_given_axes_and_returns_them() -> None:
    figure = Figure()
    ax = figure.subplots()
    assert recorded(validation=False).plot(ax=ax, metrics=[]) is ax
    assert set(curves(ax)) == {"training", "best epoch (3)"}
    two = Figure().subplots(1, 2)
    returned = recorded().plot(ax=two, metrics=["lr"])
    assert list(returned) == list(two) and curves(two[1])["training"] == [0.1, 0.1, 0.1]


def test_never_opens_a_pyplot_figure() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    recorded().plot()
    assert plt.get_fignums() == before


@pytest.mark.parametrize(("ax", "metrics", "error", "match"), [
    ("one-axes-two-panels", None, ValueError, r"ax: expected 2 matplotlib Axes .*metrics=\[\]"),
    (None, ["f1"], ValueError, r"metrics\[0\]: 'f1' is not a recorded metric"),
    (None, ["val_accuracy"], ValueError, r"metrics\[0\]"),
    (None, "accuracy", TypeError, "metrics: expected None or a list"),
    (None, ["accuracy", "accuracy"], ValueError, "unique"),
])
def test_bad_arguments_are_one_clear_error(ax: object, metrics: object, error: type, match: str) -> None:
    if ax == "one-axes-two-panels":
        ax = Figure().subplots()
    with pytest.raises(error, match=match):
        recorded().plot(ax=ax, metrics=metrics)  # type: ignore[arg-type]


def test_an_empty_history_says_there_is_nothing_to_plot() -> None:
    with pytest.raises(ValueError, match="no epoch was recorded"):
        History().plot()


def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'bpcore\[plot\]'"):
        recorded().plot()
