"""The shared part of bpcore's scikit-learn estimators: parameters, network and training loop.

The loops are scikit-learn 1.9's MLP training on a bpcore network: the
stochastic one (``_fit_stochastic``: the same epochs, mini-batches, sample
weights, L2 term, convergence test (``tol``, ``n_iter_no_change``),
learning-rate schedules, early stopping and ``n_iter_`` counting) and
L-BFGS (SciPy's ``L-BFGS-B`` over the network's flat parameter buffer), so
that ``loss_curve_``, ``best_loss_``, ``n_iter_``, ``validation_scores_``
mean what they mean there.  scikit-learn's own ``test_mlp.py`` runs against
these estimators in the test suite.
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
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, validate_data

from .. import optim
from ..interop import import_array, is_cupy_array
from ..layers import Dense, Identity, ReLU, Sigmoid, Tanh
from ..network import Network
from ..serialization import load_checkpoint, write_model
from . import _layers
from ._lbfgs import fit_lbfgs, objective, sklearn_order

logger = logging.getLogger("bpcore")

ACTIVATIONS = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
SOLVERS = ("lbfgs", "sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")


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
        verbose: Any = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: Any = 10,
        max_fun: int = 15000,
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
        self.max_fun = max_fun
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
        if not (isinstance(self.n_iter_no_change, numbers.Real) and self.n_iter_no_change == np.inf):
            _check_number("n_iter_no_change", self.n_iter_no_change, 1, np.inf, integer=True, high_open=True)
        _check_number("max_fun", self.max_fun, 1, np.inf, integer=True, high_open=True)
        if not isinstance(self.verbose, (bool, np.bool_)):
            _check_number("verbose", self.verbose, 0, np.inf, integer=True, high_open=True)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
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
    def _encode_targets(self, y: Any, *, incremental: bool) -> np.ndarray:
        """The targets as a float matrix (n_samples, n_outputs); classifiers set ``classes_`` here."""
        raise NotImplementedError

    def _decode_targets(self, Y: np.ndarray) -> Any:
        """Encoded targets back to what ``score`` compares predictions with."""
        return Y

    def _predict_validated(self, X: Any) -> np.ndarray:
        """``predict`` for already validated ``X``."""
        raise NotImplementedError

    def _make_loss(self) -> Any:
        """The bpcore loss on the network's output, chosen from the fitted targets."""
        raise NotImplementedError

    def _batch_loss(self, out: Any, target: Any, weights: Any, norm: float) -> tuple[Any, Any]:
        """The batch's loss (0-d, sklearn's scale) and its gradient with respect to ``out``.

        ``weights`` are the batch's sample weights (None: all 1) and ``norm``
        their sum, by which scikit-learn divides the loss and its gradient.
        """
        raise NotImplementedError

    # --- network ------------------------------------------------------------------
    def _build_network(self, n_features: int, n_outputs: int, dtype: np.dtype) -> Network:
        sizes = [n_features, *self._hidden_sizes(), n_outputs]
        layers: list[Any] = []
        for position, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(Dense(fan_in, fan_out))
            if position < len(sizes) - 2:
                layers.append(ACTIVATIONS[self.activation]())
        network = Network(layers, dtype=dtype, device=self.device)
        # scikit-learn's initialisation, drawn from the same generator in the same order, so that one
        # random_state gives the same starting weights as scikit-learn's MLP: weights and biases
        # uniform in +-sqrt(factor / (fan_in + fan_out)), factor 2 for 'logistic', else 6.
        factor = 2.0 if self.activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out))
        _layers.assign_all(network, "coefs_", coefs)
        _layers.assign_all(network, "intercepts_", intercepts)
        return network

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

    # --- coefs_ and intercepts_: scikit-learn's per-layer arrays, written through to the network ---
    def _layer_arrays(self, kind: str) -> list[np.ndarray]:
        network = self.__dict__.get("network_")
        if network is not None:
            return _layers.LayerArrays(network, kind)
        initial = self.__dict__.get(f"_initial_{kind}")
        if initial is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {kind!r}: it is not fitted yet")
        return initial

    def _assign_layer_arrays(self, kind: str, values: Any) -> None:
        network = self.__dict__.get("network_")
        if network is not None:
            _layers.assign_all(network, kind, values)
        else:  # weights to start from, used by the next warm-started or partial fit
            self.__dict__[f"_initial_{kind}"] = list(values)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, ``coefs_[i]`` of shape (n_in, n_out), as in scikit-learn.

        Assigning the list, or one of its items, writes into the network's
        parameters (shapes checked).  On the CPU the arrays are views of the
        parameters; from a GPU they are host copies.  Assigned before any fit,
        they are the starting weights of a ``partial_fit`` or warm-started fit.
        """
        return self._layer_arrays("coefs_")

    @coefs_.setter
    def coefs_(self, values: Any) -> None:
        self._assign_layer_arrays("coefs_", values)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, ``intercepts_[i]`` of shape (n_out,); assignable like :attr:`coefs_`."""
        return self._layer_arrays("intercepts_")

    @intercepts_.setter
    def intercepts_(self, values: Any) -> None:
        self._assign_layer_arrays("intercepts_", values)

    # --- training -----------------------------------------------------------------
    def _fit(self, X: Any, y: Any, sample_weight: Any = None, *, incremental: bool) -> BaseMLP:
        self._check_parameters()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        has_network = "network_" in self.__dict__
        initial = self.__dict__.get("_initial_coefs_") is not None
        fresh = not (has_network or initial) or (not self.warm_start and not incremental)
        X, y = self._validate_Xy(X, y, reset=fresh or not has_network)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        self._random_state = check_random_state(self.random_state)
        Y = self._encode_targets(y, incremental=incremental)
        if fresh or not has_network:
            self._start(X, Y, from_initial=not fresh)
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} outputs as in the first fit, got {Y.shape[1]}")
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            if self.solver == "lbfgs":
                fit_lbfgs(self, X, Y, sample_weight)
            else:
                if not incremental or "_optimizer" not in self.__dict__:
                    self._optimizer = self._make_optimizer()
                self._fit_stochastic(X, Y, sample_weight, incremental=incremental)
            store = self.network_.store
            if not bool(self.network_.xp.isfinite(store.data).all()):
                raise ValueError(
                    "Solver produced non-finite parameter weights. The input data may contain large "
                    "values and need to be preprocessed."
                )
        return self

    def _start(self, X: Any, Y: np.ndarray, *, from_initial: bool) -> None:
        """A new network (random, or from assigned ``coefs_``/``intercepts_``) and fresh counters."""
        coefs = self.__dict__.pop("_initial_coefs_", None)
        intercepts = self.__dict__.pop("_initial_intercepts_", None)
        self.n_outputs_ = int(Y.shape[1])
        self.n_layers_ = len(self._hidden_sizes()) + 2
        network = self._build_network(X.shape[1], self.n_outputs_, self._network_dtype(X))
        if from_initial and coefs is not None:
            sizes = _layers.layer_sizes(coefs, intercepts if intercepts is not None else [])
            expected = [X.shape[1], *self._hidden_sizes(), self.n_outputs_]
            if sizes != expected:
                raise ValueError(
                    f"coefs_: the assigned weights describe layers of sizes {sizes}, but X, y and "
                    f"hidden_layer_sizes need {expected}"
                )
            _layers.assign_all(network, "coefs_", coefs)
            _layers.assign_all(network, "intercepts_", intercepts)
        self.network_ = network
        self.__dict__.pop("_optimizer", None)
        self.n_iter_ = 0
        self.t_ = 0
        self._best_parameters = network.backend.to_numpy(network.store.data).copy()
        if self.solver == "lbfgs":
            for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
                self.__dict__.pop(name, None)
            return
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

    def _split_validation(self, X: Any, Y: np.ndarray, sample_weight: Any) -> tuple[Any, ...]:
        """scikit-learn's early-stopping split: stratified only for single-output classification."""
        stratify = Y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
        index = np.arange(X.shape[0])
        train, val = train_test_split(
            index, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify
        )
        if val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of your "
                "dataset."
            )
        weights = (None, None) if sample_weight is None else (sample_weight[train], sample_weight[val])
        return X[train], Y[train], weights[0], X[val], self._decode_targets(Y[val]), weights[1]

    def _penalised_step(self, xb: Any, yb: Any, wb: Any, norm: float, weights: list[Any]) -> Any:
        """Forward and backward of one batch; the loss (sklearn's scale, L2 term included) as 0-d."""
        network = self.network_
        out = network._forward(xb, True)
        value, grad = self._batch_loss(out, yb, wb, norm)
        network._backward(grad, accumulate=False, need_input_grad=False)
        if self.alpha:
            xp = network.xp
            penalty = 0.0
            for parameter in weights:
                penalty = penalty + xp.vdot(parameter.data, parameter.data)
                parameter.grad += (self.alpha / norm) * parameter.data
            value = value + (0.5 * self.alpha / norm) * penalty
        return value

    def _fit_stochastic(self, X: Any, Y: np.ndarray, sample_weight: Any, *, incremental: bool) -> None:
        network, optimizer = self.network_, self._optimizer
        early_stopping = self.early_stopping
        X_val = y_val = weight_val = None
        if early_stopping:
            X, Y, sample_weight, X_val, y_val, weight_val = self._split_validation(X, Y, sample_weight)
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
            W_dev = (
                None if sample_weight is None else network.backend.asarray(sample_weight, dtype=network.dtype)
            )
            weights = [p for p in network.parameters() if p.decay]
            order = np.arange(n)
            self.n_iter_ = 0  # scikit-learn 1.9 counts the epochs of this call only
            try:
                for _ in range(self.max_iter):
                    if self.shuffle:  # scikit-learn's shuffle: the previous order, permuted again
                        order = order[self._random_state.permutation(n)]
                    epoch_loss = xp.zeros((), dtype=np.float64)
                    for start in range(0, n, batch):
                        rows = min(batch, n - start)
                        index = order[start : start + rows]
                        part: Any = index if self.shuffle else slice(start, start + rows)
                        if sparse:
                            xb = network.as_input(X[index].toarray(), check_finite=False)
                        else:
                            xb = X_dev[part]
                        wb = None if W_dev is None else W_dev[part]
                        norm = rows if sample_weight is None else float(sample_weight[index].sum())
                        value = self._penalised_step(xb, Y_dev[part], wb, norm, weights)
                        epoch_loss += value * rows
                        optimizer.step()
                    self.n_iter_ += 1
                    self.t_ += n
                    loss = float(epoch_loss) / n
                    self.loss_ = loss
                    self.loss_curve_.append(loss)
                    self._report(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                    self._update_no_improvement_count(early_stopping, X_val, y_val, weight_val)
                    if self.solver == "sgd" and self.learning_rate == "invscaling":
                        optimizer.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
                    if self._no_improvement_count > self.n_iter_no_change:
                        subject = "Validation score" if early_stopping else "Training loss"
                        message = (
                            f"{subject} did not improve more than tol={self.tol:f} for "
                            f"{self.n_iter_no_change} consecutive epochs."
                        )
                        if self.solver != "sgd" or self.learning_rate != "adaptive":
                            self._report(message)
                            break
                        if optimizer.lr <= 1e-6:
                            self._report(message + " Learning rate too small. Stopping.")
                            break
                        optimizer.lr = optimizer.lr / 5.0
                        self._report(message + f" Setting learning rate to {optimizer.lr:f}")
                        self._no_improvement_count = 0
                    if incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn(
                            f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                            "optimization hasn't converged yet.",
                            ConvergenceWarning,
                            stacklevel=4,
                        )
            except KeyboardInterrupt:
                warnings.warn("Training interrupted by user.", stacklevel=4)
            best = self.__dict__.get("_best_parameters")
            if early_stopping and best is not None:
                network.store.load(best)

    def _update_no_improvement_count(
        self, early_stopping: bool, X_val: Any, y_val: Any, weight_val: Any
    ) -> None:
        if early_stopping:
            score = self._validation_score(X_val, y_val, weight_val)
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

    def _loss_grad_lbfgs(self, packed: Any, X: Any, y: Any, sample_weight: Any = None, *_: Any) -> Any:
        """The L-BFGS objective in scikit-learn's private signature and packed layout.

        ``packed`` holds every ``coefs_`` then every ``intercepts_``, raveled, as
        in scikit-learn; ``y`` is the encoded target matrix.  Returns the loss
        and its gradient in the same layout (the network's parameters are left
        at ``packed``).  Kept so that code written against scikit-learn's
        objective, such as its gradient test, runs unchanged.
        """
        network = self.network_
        order = sklearn_order(self)
        theta = np.empty(network.store.size, dtype=np.float64)
        theta[order] = np.asarray(packed, dtype=np.float64)
        Y = np.asarray(y, dtype=np.float64)
        with network.exclusive():
            value, grad = objective(self, X, Y.reshape(Y.shape[0], -1), sample_weight)(theta)
        return value, grad[order]

    def _validation_score(self, X: Any, y: Any, sample_weight: Any) -> float:
        """The score on validated data, without validating again (that would drop feature names).

        NaN when the predictions are not finite, as in scikit-learn.
        """
        prediction = self._predict_validated(X)
        if np.issubdtype(prediction.dtype, np.floating) and not np.isfinite(prediction).all():
            return float("nan")
        score_function = accuracy_score if is_classifier(self) else r2_score
        return float(score_function(y, prediction, sample_weight=sample_weight))

    def _report(self, message: str) -> None:
        """Progress: always logged (DEBUG); written to stdout only when ``verbose`` asks for it."""
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
