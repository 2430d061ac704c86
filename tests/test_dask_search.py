"""bpcore's scikit-learn estimators in a hyperparameter search on a real Dask cluster (worker processes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
distributed = pytest.importorskip(
    "dask.distributed", reason="needs dask[distributed] (pip install 'bpcore[dask]')"
)

ROOT = Path(__file__).resolve().parent.parent


def _fit(estimator, x, y):  # runs on a worker
    return estimator.fit(x, y), os.getpid()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_on_a_local_cluster_of_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from bpcore.sklearn import MLPClassifier

    # The workers are new processes: they import this checkout's bpcore, on the CPU.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("BPCORE_DEVICE", "cpu")
    monkeypatch.setenv("BPCORE_KERNELS", "generic")  # no kernel compilation in the new workers
    x, y = load_digits(return_X_y=True)
    x, y = (x[:300] / 16.0).astype(np.float32), y[:300]
    grid = {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-4]}
    estimator = MLPClassifier(max_iter=5, random_state=0, device="auto")

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
            on_cluster = GridSearchCV(estimator, grid, cv=2, n_jobs=-1).fit(x, y)
        workers = set(client.scheduler_info()["workers"])
        assert {task["worker"] for task in tasks.data} <= workers and len(tasks.data) >= 4
        # A fitted estimator comes back from a worker process and predicts as one fitted here.
        fitted, pid = client.submit(_fit, estimator, x, y, pure=False).result(timeout=60)
        assert pid != os.getpid()

    local = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(x, y)
    np.testing.assert_allclose(
        on_cluster.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], atol=2.0 / len(y)
    )
    assert on_cluster.best_params_ == local.best_params_
    here = estimator.__class__(**estimator.get_params()).fit(x, y)
    np.testing.assert_array_equal(fitted.predict(x), here.predict(x))
