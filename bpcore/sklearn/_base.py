"""The shared part of bpcore's scikit-learn estimators: parameters, network and training loop.

The loop is scikit-learn's stochastic MLP training (``_fit_stochastic``) on
a bpcore network: the same epochs, mini-batches, L2 term, convergence test
(``tol``, ``n_iter_no_change``), learning-rate schedules and early stopping,
so that ``loss_curve_``, ``best_loss_``, ``n_iter_`` and
``validation_scores_`` mean what they mean there.
"""

from __future__ import annotations

import io
import itertools
import logging
import numbers
import sys
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from .. import optim
from ..interop import import_array, is_cupy_array
from ..layers import Dense, Identity, ReLU, Sigmoid, Tanh
from ..network import Network
from ..serialization import load_checkpoint, write_model

logger = logging.getLogger("bpcore")

ACTIVATIONS = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
_SEED_RANGE = np.iinfo(np.int32).max


def to_host(data: Any) -> Any:
    """Arrays from GPUs (CuPy, or any DLPack/CUDA-array-interface object) as NumPy, for validation.

    scikit-learn validates on the host; everything else passes through as is
    (pandas frames keep their column names, sparse matrices stay sparse).
    """
    if (
        is_cupy_array(data)
        or hasattr(data, "__cuda_array_interface__")
        or (hasattr(data, "__dlpack__") and not isinstance(data, np.ndarray))
    ):
        array = import_array(data, argument="X")
        return array.get() if is_cupy_array(array) else array
    return data


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def _check_number(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        what = "an integer" if integer else "a number"
        bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected {what} in {bounds}, got {value!r}")


class BaseMLP(BaseEstimator):
    """Parameters, validation and training shared by MLPClassifier and MLPRegressor."""

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.dtype = dtype

    # --- checks -----------------------------------------------------------------
    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else sizes
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes: expected a positive integer or a sequence of them, got {sizes!r}"
            ) from None
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                raise ValueError(
                    f"hidden_layer_sizes: expected positive integers, got {self.hidden_layer_sizes!r}"
                )
        return [int(size) for size in sizes]

    def _check_parameters(self) -> None:
        self._hidden_sizes()
        _check_choice("activation", self.activation, tuple(ACTIVATIONS))
        if self.solver == "lbfgs":
            raise ValueError("solver: 'lbfgs' is not supported by bpcore; use 'sgd' or 'adam'")
        _check_choice("solver", self.solver, SOLVERS)
        _check_choice("learning_rate", self.learning_rate, LEARNING_RATES)
        _check_number("alpha", self.alpha, 0.0, np.inf, high_open=True)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_number("batch_size", self.batch_size, 1, np.inf, integer=True, high_open=True)
        _check_number(
            "learning_rate_init", self.learning_rate_init, 0.0, np.inf, low_open=True, high_open=True
        )
        _check_number("power_t", self.power_t, 0.0, np.inf, high_open=True)
        _check_number("max_iter", self.max_iter, 1, np.inf, integer=True, high_open=True)
        _check_number("tol", self.tol, 0.0, np.inf, high_open=True)
        _check_number("momentum", self.momentum, 0.0, 1.0)
        _check_number("validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True)
        _check_number("beta_1", self.beta_1, 0.0, 1.0, high_open=True)
        _check_number("beta_2", self.beta_2, 0.0, 1.0, high_open=True)
        _check_number("epsilon", self.epsilon, 0.0, np.inf, low_open=True, high_open=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, 1, np.inf, integer=True, high_open=True)
        for name in ("shuffle", "verbose", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.dtype is not None and str(np.dtype(self.dtype)) not in ("float32", "float64"):
            raise ValueError(f"dtype: expected None, 'float32' or 'float64', got {self.dtype!r}")

    # --- data ---------------------------------------------------------------------
    def _validate_X(self, X: Any, *, reset: bool) -> Any:
        return validate_data(
            self, to_host(X), reset=reset, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32)
        )

    def _validate_Xy(self, X: Any, y: Any, *, reset: bool) -> tuple[Any, Any]:
        X, y = validate_data(
            self,
            to_host(X),
            to_host(y),
            reset=reset,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            y_numeric=not is_classifier(self),
        )
        return X, y

    def _network_dtype(self, X: Any) -> np.dtype:
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)

    # --- hooks for the subclasses ------------------------------------------------------
    def _encode_targets(self, y: Any, *, first: bool, classes: Any = None) -> np.ndarray:
        raise NotImplementedError

    def _make_loss(self) -> Any:
        """The bpcore loss on the network's output, chosen from the fitted targets."""
        raise NotImplementedError

    def _batch_loss(self, out: Any, target: Any, batch: int) -> tuple[Any, Any]:
        """The batch's loss (0-d, sklearn's scale) and its gradient with respect to ``out``."""
        raise NotImplementedError

    # --- network ------------------------------------------------------------------
    def _build_network(self, n_features: int, n_outputs: int, dtype: np.dtype) -> Network:
        sizes = [n_features, *self._hidden_sizes(), n_outputs]
        layers: list[Any] = []
        for position, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(Dense(fan_in, fan_out))
            if position < len(sizes) - 2:
                layers.append(ACTIVATIONS[self.activation]())
        seed = int(self._random_state.randint(_SEED_RANGE))
        return Network(layers, dtype=dtype, seed=seed, device=self.device)

    def _make_optimizer(self) -> Any:
        params = self.network_.parameters()
        if self.solver == "adam":
            return optim.Adam(
                params, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon
            )
        return optim.SGD(
            params,
            lr=self.learning_rate_init,
            momentum=self.momentum,
            nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
        )

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, layer by layer, as NumPy copies (scikit-learn's ``coefs_``)."""
        network = self.network_
        return [
            network.backend.to_numpy(layer.weight.data).copy()
            for layer in network.layers
            if isinstance(layer, Dense)
        ]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, layer by layer, as NumPy copies (scikit-learn's ``intercepts_``)."""
        network = self.network_
        return [
            network.backend.to_numpy(layer.bias.data).copy()
            for layer in network.layers
            if isinstance(layer, Dense) and layer.bias is not None
        ]

    # --- training -----------------------------------------------------------------
    def _fit(self, X: Any, y: Any, *, incremental: bool, classes: Any = None) -> BaseMLP:
        self._check_parameters()
        first = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, y = self._validate_Xy(X, y, reset=first)
        if first:
            self._random_state = check_random_state(self.random_state)
        Y = self._encode_targets(y, first=first, classes=classes)
        if first:
            dtype = self._network_dtype(X)
            self.n_outputs_ = int(Y.shape[1])
            self.n_layers_ = len(self._hidden_sizes()) + 2
            self.network_ = self._build_network(X.shape[1], self.n_outputs_, dtype)
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_: list[float] | None = []
                self.best_validation_score_: float | None = -np.inf
                self.best_loss_: float | None = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} outputs as in the first fit, got {Y.shape[1]}")
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            self._fit_stochastic(X, y, Y, incremental=incremental)
        return self

    def _fit_stochastic(self, X: Any, y: Any, Y: np.ndarray, *, incremental: bool) -> None:
        network, optimizer = self.network_, self._optimizer
        early_stopping = self.early_stopping and not incremental
        X_val = y_val = None
        if early_stopping:
            stratify = y if is_classifier(self) and getattr(self, "_kind", "") != "multilabel" else None
            index = np.arange(X.shape[0])
            train, val = train_test_split(
                index, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify
            )
            X_val, y_val = X[val], y[val]
            X, Y = X[train], Y[train]
            if X_val.shape[0] < 2:
                raise ValueError(
                    "validation_fraction: the validation set is too small for early stopping: "
                    f"{X_val.shape[0]} sample(s); use more data or a larger validation_fraction"
                )
        n = X.shape[0]
        if isinstance(self.batch_size, str):
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                    stacklevel=3,
                )
            batch = int(np.clip(self.batch_size, 1, n))
        xp = network.xp
        sparse = sp.issparse(X)
        with network.exclusive():
            X_dev = X if sparse else network.as_input(X, check_finite=False)
            Y_dev = network.backend.asarray(Y, dtype=network.dtype)
            weights = [p for p in network.parameters() if p.decay]
            order = np.arange(n)
            for _ in range(self.max_iter):
                if self.shuffle:
                    order = self._random_state.permutation(n)
                epoch_loss = xp.zeros((), dtype=np.float64)
                for start in range(0, n, batch):
                    index = order[start : start + batch]
                    rows = index.shape[0]
                    if sparse:
                        xb = network.as_input(X[index].toarray(), check_finite=False)
                    else:
                        xb = X_dev[index] if self.shuffle else X_dev[start : start + rows]
                    yb = Y_dev[index] if self.shuffle else Y_dev[start : start + rows]
                    out = network._forward(xb, True)
                    value, grad = self._batch_loss(out, yb, rows)
                    network._backward(grad, accumulate=False, need_input_grad=False)
                    if self.alpha:
                        penalty = 0.0
                        for parameter in weights:
                            penalty = penalty + xp.vdot(parameter.data, parameter.data)
                            parameter.grad += (self.alpha / rows) * parameter.data
                        value = value + (0.5 * self.alpha / rows) * penalty
                    epoch_loss += value * rows
                    optimizer.step()
                self.n_iter_ += 1
                self.t_ += n
                loss = float(epoch_loss) / n
                if not np.isfinite(loss):
                    raise FloatingPointError(
                        f"{type(self).__name__}.fit: the training loss became {loss} in iteration "
                        f"{self.n_iter_}; lower learning_rate_init or scale the features "
                        "(e.g. with StandardScaler)"
                    )
                self.loss_curve_.append(loss)
                self._report(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                self._update_no_improvement_count(early_stopping, X_val, y_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    optimizer.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    subject = "Validation score" if early_stopping else "Training loss"
                    self._report(
                        f"{subject} did not improve more than tol={self.tol:f} for "
                        f"{self.n_iter_no_change} consecutive epochs."
                    )
                    if self.solver == "sgd" and self.learning_rate == "adaptive" and optimizer.lr > 1e-6:
                        optimizer.lr = optimizer.lr / 5.0
                        self._report(f"Setting learning rate to {optimizer.lr:f}")
                        self._no_improvement_count = 0
                    else:
                        break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                        "optimization hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
            best: np.ndarray | None = getattr(self, "_best_parameters", None)
            if early_stopping and best is not None:
                network.store.load(best)
                self._best_parameters = None

    def _update_no_improvement_count(self, early_stopping: bool, X_val: Any, y_val: Any) -> None:
        if early_stopping:
            score = float(self.score(X_val, y_val))
            self.validation_scores_.append(score)  # type: ignore[union-attr]
            self._report(f"Validation score: {score:f}")
            best = self.best_validation_score_
            if score < best + self.tol:  # type: ignore[operator]
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > best:  # type: ignore[operator]
                self.best_validation_score_ = score
                self._best_parameters = self.network_.backend.to_numpy(self.network_.store.data).copy()
        else:
            loss = self.loss_curve_[-1]
            if loss > self.best_loss_ - self.tol:  # type: ignore[operator]
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if loss < self.best_loss_:  # type: ignore[operator]
                self.best_loss_ = loss

    def _report(self, message: str) -> None:
        """Progress: always logged (DEBUG); written to stdout only when ``verbose=True`` asks for it."""
        logger.debug("%s: %s", type(self).__name__, message)
        if self.verbose:
            sys.stdout.write(message + "\n")

    # --- prediction -------------------------------------------------------------------
    def _raw_output(self, X: Any) -> np.ndarray:
        """The network's output (logits for classifiers) for validated ``X``, as NumPy."""
        network = self.network_
        if sp.issparse(X):
            parts = [
                network.predict(X[start : start + 4096].toarray()) for start in range(0, X.shape[0], 4096)
            ]
            out = parts[0] if len(parts) == 1 else network.xp.concatenate(parts)
        else:
            out = network.predict(X)
        return network.backend.to_numpy(out)

    # --- pickling: the network travels in bpcore's own (pickle-free) model format ---------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        network = state.pop("network_", None)
        optimizer = state.pop("_optimizer", None)
        state.pop("_loss", None)  # holds device buffers; rebuilt from the fitted attributes
        if network is not None:
            buffer = io.BytesIO()
            write_model(buffer, network, optimizer=optimizer)
            state["_network_file"] = buffer.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        data = state.pop("_network_file", None)
        self.__dict__.update(state)
        if hasattr(self, "n_outputs_"):
            self._loss = self._make_loss()
        if data is not None:
            checkpoint = load_checkpoint(io.BytesIO(data), device=self.device)
            self.network_ = checkpoint.network
            if checkpoint.optimizer is not None:
                self._optimizer = checkpoint.optimizer
