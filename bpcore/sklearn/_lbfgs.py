"""``solver='lbfgs'``: SciPy's L-BFGS-B over the network's flat parameter buffer.

As scikit-learn's ``_fit_lbfgs``: the whole training set in every
evaluation, the same loss and L2 term as the stochastic solvers,
``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``, ``n_iter_`` the
number of L-BFGS iterations and a ``ConvergenceWarning`` whenever SciPy
reports that it stopped without converging.  The parameters and gradients
stay on the network's device; only the flat vectors SciPy works on (float64)
are copied to and from the host once per evaluation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from . import _layers


def objective(estimator: Any, X: Any, Y: Any, sample_weight: Any) -> Callable[[Any], tuple[float, Any]]:
    """``theta -> (loss, gradient)`` over the flat parameter buffer, for validated ``X`` and encoded ``Y``.

    Call it while holding ``estimator.network_.exclusive()``.
    """
    network = estimator.network_
    backend, store = network.backend, network.store
    dense = X.toarray() if sp.issparse(X) else X
    X_dev = network.as_input(dense, check_finite=False)
    Y_dev = backend.asarray(np.asarray(Y), dtype=network.dtype)
    W_dev = None if sample_weight is None else backend.asarray(sample_weight, dtype=network.dtype)
    norm = float(X.shape[0] if sample_weight is None else np.sum(sample_weight))
    weights = [parameter for parameter in network.parameters() if parameter.decay]

    def loss_and_gradient(theta: Any) -> tuple[float, Any]:
        store.load(theta)
        value = estimator._penalised_step(X_dev, Y_dev, W_dev, norm, weights)
        return float(value), backend.to_numpy(store.grad).astype(np.float64)

    return loss_and_gradient


def fit_lbfgs(estimator: Any, X: Any, Y: np.ndarray, sample_weight: Any) -> None:
    """Minimise the training loss from the network's current parameters; sets ``n_iter_`` and ``loss_``."""
    network = estimator.network_
    store = network.store
    with network.exclusive():
        loss_and_gradient = objective(estimator, X, Y, sample_weight)
        theta = network.backend.to_numpy(store.data).astype(np.float64)
        iteration = [0]

        def report(intermediate_result: scipy.optimize.OptimizeResult) -> None:
            iteration[0] += 1
            estimator._report(f"Iteration {iteration[0]}, loss = {float(intermediate_result.fun):.8f}")

        result = scipy.optimize.minimize(
            loss_and_gradient,
            theta,
            method="L-BFGS-B",
            jac=True,
            callback=report,
            options={"maxfun": estimator.max_fun, "maxiter": estimator.max_iter, "gtol": estimator.tol},
        )
        store.load(result.x)
    estimator.n_iter_ = min(int(result.nit), estimator.max_iter)
    estimator.loss_ = float(result.fun)
    if result.status != 0:
        message = (
            f"lbfgs failed to converge after {estimator.n_iter_} iteration(s) "
            f"(status={result.status}):\n{result.message}\n"
        )
        if estimator.n_iter_ == estimator.max_iter:
            message += (
                "\nIncrease the number of iterations to improve the convergence "
                f"(max_iter={estimator.max_iter})."
            )
        message += "\nYou might also want to scale the data (e.g. with StandardScaler)."
        warnings.warn(message, ConvergenceWarning, stacklevel=4)


def sklearn_order(estimator: Any) -> np.ndarray:
    """Positions in the flat buffer of scikit-learn's packed vector (every coefs_, then every intercepts_)."""
    layers = _layers.dense_layers(estimator.network_)
    parameters = [layer.weight for layer in layers] + [layer.bias for layer in layers]
    return np.concatenate([np.arange(p.offset, p.offset + p.size) for p in parameters if p is not None])
