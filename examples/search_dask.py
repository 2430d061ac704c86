"""Hyperparameter search with bpcore's scikit-learn estimators on a Dask cluster.

    python examples/search_dask.py [--workers 2] [--scheduler tcp://host:8786]

scikit-learn's GridSearchCV runs unchanged under joblib's Dask backend: each
(candidate, fold) fit is a task on a Dask worker process, and the estimators
travel between processes by pickling (which writes bpcore's own model
format, never a pickle of arrays).  The switch from local to cluster is two
lines: a ``Client`` and ``joblib.parallel_backend("dask")``.  Without
``--scheduler`` a LocalCluster of worker processes on this machine is
started; with ``device="auto"`` each worker trains on a GPU when it has one
(dask-cuda's ``LocalCUDACluster`` gives each worker its own GPU).
"""

from __future__ import annotations

import argparse
import time

import joblib
import numpy as np
from dask.distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bpcore.cli import run_script
from bpcore.sklearn import MLPClassifier


def search(client: Client, x: np.ndarray, y: np.ndarray, grid: dict[str, list[object]],
           max_iter: int) -> GridSearchCV:
    estimator = make_pipeline(
        StandardScaler(), MLPClassifier(max_iter=max_iter, random_state=0, device="auto")
    )
    searcher = GridSearchCV(estimator, grid, cv=3, n_jobs=-1)
    with joblib.parallel_backend("dask"):  # every fit is a task on the cluster's workers
        searcher.fit(x, y)
    return searcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    parser.add_argument("--max-iter", type=int, default=30)
    args = parser.parse_args(argv)

    x, y = load_digits(return_X_y=True)
    grid = {
        "mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
        "mlpclassifier__learning_rate_init": [1e-3, 3e-3],
    }
    cluster = None
    if args.scheduler is None:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    with Client(cluster if cluster is not None else args.scheduler) as client:
        started = time.perf_counter()
        searcher = search(client, x.astype(np.float32), y, grid, args.max_iter)
        seconds = time.perf_counter() - started
        workers = len(client.scheduler_info()["workers"])
    if cluster is not None:
        cluster.close()
    print(f"{len(searcher.cv_results_['params'])} candidates x 3 folds on {workers} Dask worker(s) "
          f"in {seconds:.1f}s")
    print(f"best: {searcher.best_params_} (cross-validated accuracy {searcher.best_score_:.4f})")
    return 0 if searcher.best_score_ > 0.9 else 1


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
