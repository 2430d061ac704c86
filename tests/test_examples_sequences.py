"""The sequence examples (time series, character model, text classification) shortened, in a fresh process."""

from __future__ import annotations

import re

import pytest
from test_examples import run_example


@pytest.mark.slow
def test_timeseries_beats_both_naive_forecasts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("statsmodels", reason="the example's data ships with statsmodels")
    pytest.importorskip("matplotlib")
    plot = tmp_path / "co2.png"
    result = run_example("timeseries.py", "--epochs", "15", "--patience", "5", "--plot", str(plot))
    assert result.returncode == 0, result.stdout + result.stderr
    table = dict(re.findall(r"^  (.+?)\s+(\d+\.\d+)\s+\d+\.\d+$", result.stdout, flags=re.M))
    network, last, seasonal = (float(table[key]) for key in ("LSTM(32)", "naive: last month",
                                                             "naive: 12 months before"))
    assert network < last < seasonal
    assert "beats both naive forecasts" in result.stdout
    assert plot.stat().st_size > 10_000


@pytest.mark.slow
def test_char_lm_learns_beyond_character_frequencies_and_samples_text() -> None:
    short = ["--batches", "60", "--hidden", "64", "--steps", "32", "--target", "0.95", "--sample", "40"]
    result = run_example("char_lm.py", *short)
    assert result.returncode == 0, result.stdout + result.stderr
    held_out, unigram = map(float, re.search(
        r"held-out loss (\d+\.\d+) nats/char .* unigram entropy (\d+\.\d+) nats/char", result.stdout
    ).groups())  # type: ignore[union-attr]
    assert 3.0 < unigram < 3.5 and held_out < 0.95 * unigram
    sampled = result.stdout.split("sampled text (temperature 0.7):\n")[1]
    assert sampled.startswith("The ") and len(sampled) >= 44


@pytest.mark.slow
def test_text_classification_compares_the_network_with_the_baseline() -> None:
    pytest.importorskip("sklearn")
    # Smaller and shorter than the defaults, with a larger step: measured 0.778-0.780 (seeds 0-2).
    short = ["--epochs", "6", "--max-len", "32", "--embedding", "32", "--hidden", "16", "--patience", "2",
             "--lr", "0.02", "--target", "0.68"]
    result = run_example("text_classification.py", *short)
    assert result.returncode == 0, result.stdout + result.stderr
    network, baseline = map(float, re.search(
        r"test accuracy: network (\d\.\d+)(?: \([\d.]+s\))?, bag-of-words logistic regression (\d\.\d+)",
        result.stdout,
    ).groups())  # type: ignore[union-attr]
    assert network >= 0.68 and baseline > 0.7  # 7 classes: chance is below 0.25
    assert "7 areas" in result.stdout and "validation" in result.stdout
    best = re.search(r"best validation loss after epoch ([1-6]) \(validation accuracy 0\.\d+\)",
                     result.stdout)
    assert best is not None
    assert re.search(rf"trained again on all \d+ training texts for {best.group(1)} epochs", result.stdout)


@pytest.mark.slow
def test_a_device_error_is_one_line_before_any_work() -> None:
    # The data and the baseline come before the network here, so the device is checked first.
    result = run_example("text_classification.py", "--device", "cuda:99")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'cuda:99' was asked for" in lines[0]
