"""A scikit-learn pipeline with a bpcore classifier: tune, save, reload on the CPU, serve.

StandardScaler + bpcore.sklearn.MLPClassifier on scikit-learn's bundled
breast-cancer data, tuned with GridSearchCV.  The best network is saved with
``bpcore.save`` (the scaler's statistics and the class labels go in the same
file as ``extra``), loaded back with ``bpcore.load_checkpoint`` on the CPU,
and served with plain NumPy code: its predictions must equal the pipeline's.

    python examples/pipeline.py [--device cpu|cuda|auto] [--output model.bpcore]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import bpcore
from bpcore.cli import run_script
from bpcore.sklearn import MLPClassifier


def tune(x_train: np.ndarray, y_train: np.ndarray, device: str) -> GridSearchCV:
    """Grid-search the network's width and L2 strength with 3-fold cross-validation."""
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("mlp", MLPClassifier(learning_rate_init=0.01, random_state=0, device=device)),
        ]
    )
    grid = {"mlp__hidden_layer_sizes": [(16,), (32, 16)], "mlp__alpha": [1e-4, 1e-2]}
    search = GridSearchCV(pipeline, grid, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x_train, y_train)
    return search


def save_best(search: GridSearchCV, path: str) -> None:
    """The best network, with what serving needs besides it: the scaling and the labels."""
    scaler, mlp = search.best_estimator_["scale"], search.best_estimator_["mlp"]
    bpcore.save(
        mlp.network_,
        path,
        extra={
            "scaler_mean": scaler.mean_,
            "scaler_scale": scaler.scale_,
            "classes": mlp.classes_,
            "best_params": {key: str(value) for key, value in search.best_params_.items()},
        },
    )


class Server:
    """Serves a saved model on the CPU, with NumPy and bpcore only (no scikit-learn objects)."""

    def __init__(self, path: str) -> None:
        checkpoint = bpcore.load_checkpoint(path, device="cpu")
        self.network = checkpoint.network
        self.mean = checkpoint.extra["scaler_mean"]
        self.scale = checkpoint.extra["scaler_scale"]
        self.classes = checkpoint.extra["classes"]

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = self.network.predict((np.asarray(x, dtype=np.float64) - self.mean) / self.scale)
        if logits.shape[1] == 1:  # binary: one logistic output
            return self.classes[(logits[:, 0] > 0).astype(int)]
        return self.classes[np.argmax(logits, axis=1)]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where to train: cpu, cuda, cuda:N or auto")
    parser.add_argument("--output", default=None, help="model file to write (default: a temporary file)")
    args = parser.parse_args(argv)
    bpcore.backends.resolve_device(args.device, origin="--device")  # fail now, not inside each search fit

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    search = tune(x_train, y_train, args.device)
    print(f"best parameters {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")

    with tempfile.TemporaryDirectory() as scratch:
        path = args.output or os.path.join(scratch, "breast_cancer.bpcore")
        save_best(search, path)
        server = Server(path)
        served = server.predict(x_test)
    expected = search.predict(x_test)
    accuracy = float(np.mean(served == y_test))
    agree = bool(np.array_equal(served, expected))
    print(
        f"served on the CPU: test accuracy {accuracy:.3f}; identical to the pipeline's predictions: {agree}"
    )
    if not agree:
        raise SystemExit("the reloaded model's predictions differ from the pipeline's")
    return {"accuracy": accuracy, "cv_accuracy": float(search.best_score_)}


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
