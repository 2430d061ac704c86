"""Monthly CO2 at Mauna Loa (shipped with statsmodels): an LSTM forecasts each next month, beating naive ones.

The series is statsmodels' weekly Mauna Loa record (1958-2001) averaged by
month (weeks the record misses are interpolated): 526 months with a trend and
a yearly cycle.  It is split in time order: the first 70 % of the months to
train on, the next 15 % to validate on (early stopping on the validation loss
restores the best epoch), the last 15 % to test on.  Each month is forecast
one step ahead from the 24 months before it, every value taken relative to
the latest one and divided by the spread of the training set's monthly
changes, so the network learns the shape of the last two years, not the
level.  On the test span the forecast is compared with the two naive
forecasts (the last month's value, and the value twelve months earlier);
the script exits with status 1 unless the network beats both.

    pip install 'bpcore[timeseries]'
    python examples/timeseries.py [--device cpu] [--epochs 200] [--seed 0] [--plot co2.png]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from blas_threads import limit_blas_threads

import bpcore
from bpcore.cli import run_script
from bpcore.layers import LSTM, Dense
from bpcore.losses import MSE
from bpcore.optim import Adam

WINDOW = 24  # months of history per forecast
SEASON = 12  # months per yearly cycle (the seasonal naive forecast's lag)


def load_co2() -> tuple[np.ndarray, np.ndarray]:
    """The monthly means of the bundled weekly record: (month starts, ppm)."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()
    return monthly.index.to_numpy(), monthly.to_numpy(dtype=np.float64)


def windows(series: np.ndarray, targets: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, WINDOW, 1) and targets (n, 1) to forecast ``series[t]`` for each ``t`` in ``targets``."""
    last = series[targets - 1]
    history = np.stack([series[t - WINDOW : t] for t in targets])
    x = ((history - last[:, None]) / scale)[:, :, None]
    y = ((series[targets] - last) / scale)[:, None]
    return x.astype(np.float32), y.astype(np.float32)


def errors(truth: np.ndarray, forecast: np.ndarray) -> tuple[float, float]:
    """Mean absolute error and root-mean-square error."""
    difference = forecast - truth
    return float(np.abs(difference).mean()), float(np.sqrt((difference**2).mean()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE, else cpu)"
    )
    parser.add_argument("--epochs", type=int, default=200, help="at most this many (early stopping)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="threads for the matrix products (small ones: more only add wake-ups)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="draw history, forecast and truth")
    args = parser.parse_args(argv)
    limit_blas_threads(args.blas_threads)
    bpcore.get_backend(args.device)  # a device that is not there: one clear error before any work

    try:
        dates, series = load_co2()
    except ImportError:
        print("this example needs statsmodels: pip install 'bpcore[timeseries]'", file=sys.stderr)
        return 2
    n = len(series)
    validation_start, test_start = int(n * 0.70), int(n * 0.85)
    train_t = np.arange(WINDOW, validation_start)
    validation_t = np.arange(validation_start, test_start)
    test_t = np.arange(test_start, n)
    scale = float(np.diff(series[:validation_start]).std())
    x_train, y_train = windows(series, train_t, scale)
    x_val, y_val = windows(series, validation_t, scale)
    x_test, _ = windows(series, test_t, scale)

    layers = [LSTM(1, args.hidden), Dense(args.hidden, 1)]
    network = bpcore.Network(layers, seed=args.seed, device=args.device)
    started = time.perf_counter()
    history = network.fit(
        x_train, y_train, loss=MSE(), optimizer=Adam(network.parameters(), lr=args.lr), epochs=args.epochs,
        batch_size=32, validation_data=(x_val, y_val),
        early_stopping=bpcore.EarlyStopping(patience=args.patience), seed=args.seed, verbose=0,
    )
    seconds = time.perf_counter() - started
    predicted = network.backend.to_numpy(network.predict(x_test))[:, 0].astype(np.float64)

    truth = series[test_t]
    forecasts = {
        f"LSTM({args.hidden})": series[test_t - 1] + scale * predicted,
        "naive: last month": series[test_t - 1],
        f"naive: {SEASON} months before": series[test_t - SEASON],
    }
    print(f"device {network.device}: monthly CO2 {str(dates[0])[:7]} to {str(dates[-1])[:7]} ({n} months); "
          f"train {len(train_t)}, validation {len(validation_t)}, test {len(test_t)} "
          f"(from {str(dates[test_start])[:7]})")
    print(f"trained {len(history.loss)} epochs in {seconds:.1f}s, best epoch {history.best_epoch} "
          f"(validation loss {min(history['val_loss']):.4f})")
    print(f"one-step-ahead forecasts on the test span, in ppm:\n{'':28}{'MAE':>8}{'RMSE':>8}")
    scores = {}
    for name, forecast in forecasts.items():
        scores[name] = errors(truth, forecast)
        print(f"  {name:26}{scores[name][0]:8.3f}{scores[name][1]:8.3f}")
    if args.plot:
        plot(args.plot, dates, series, test_t, forecasts)
        print(f"plot written to {args.plot}")
    network_mae, network_rmse = scores[next(iter(forecasts))]
    beaten = [name for name, (mae, rmse) in scores.items() if name.startswith("naive")
              and (mae <= network_mae or rmse <= network_rmse)]
    if beaten:
        print(f"FAILED: the network does not beat {', '.join(beaten)}", file=sys.stderr)
        return 1
    print("the network beats both naive forecasts")
    return 0


def plot(path: str, dates: np.ndarray, series: np.ndarray, test_t: np.ndarray,
         forecasts: dict[str, np.ndarray]) -> None:
    """History and truth over the whole record, and the forecasts over the test span."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (whole, test) = plt.subplots(2, 1, figsize=(10, 7))
    whole.plot(dates, series, color="black", linewidth=0.8, label="monthly CO2")
    whole.axvspan(dates[test_t[0]], dates[-1], color="tab:orange", alpha=0.15, label="test span")
    whole.set_ylabel("ppm")
    whole.legend(loc="upper left")
    test.plot(dates[test_t], series[test_t], color="black", linewidth=2, label="truth")
    for name, forecast in forecasts.items():
        test.plot(dates[test_t], forecast, linewidth=1, label=name)
    test.set_ylabel("ppm")
    test.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
