"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn estimators training a bpcore network."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..losses import MSE, BinaryCrossEntropy, CrossEntropy
from ._base import BaseMLP

_PARAMETERS_DOC = """
    Parameters are scikit-learn 1.9's ``MLPClassifier``/``MLPRegressor`` (same
    names, order, defaults and meaning): ``loss`` (regressor only:
    ``'squared_error'``, ``'poisson'``), ``hidden_layer_sizes``,
    ``activation`` (``'identity'``, ``'logistic'``, ``'tanh'``, ``'relu'``),
    ``solver`` (``'lbfgs'``: SciPy's L-BFGS-B over the whole training set;
    ``'sgd'``, ``'adam'``), ``alpha`` (L2 term ``alpha / (2 n) * sum ||W||^2``
    per batch of n samples, or of summed sample weight n; biases are not
    penalised), ``batch_size`` (``'auto'`` is ``min(200, n_samples)``),
    ``learning_rate`` (``'constant'``, ``'invscaling'``, ``'adaptive'``: SGD
    only), ``learning_rate_init``, ``power_t``, ``max_iter`` (epochs, or
    L-BFGS iterations), ``shuffle``, ``random_state``, ``tol``, ``verbose``
    (bool or int), ``warm_start``, ``momentum``, ``nesterovs_momentum``,
    ``early_stopping``, ``validation_fraction``, ``beta_1``, ``beta_2``,
    ``epsilon``, ``n_iter_no_change`` (an int or ``np.inf``), ``max_fun``
    (L-BFGS loss evaluations).  Added:

    device : None or str
        Where the network trains and predicts: ``'cpu'``, ``'cuda'``,
        ``'cuda:N'``, ``'auto'``; None means bpcore's current device.
    dtype : None, 'float32' or 'float64'
        The network's precision; None follows the input (float32 input trains
        in float32, anything else in float64), as scikit-learn does.

    The starting weights, the shuffling and the early-stopping split are drawn
    from ``random_state`` exactly as scikit-learn draws them, so one seed gives
    the same starting network, and SGD and L-BFGS follow scikit-learn's
    trajectory to rounding.  Adam is bpcore's, with torch.optim's rule: its
    epsilon is added to ``sqrt(v_hat)`` rather than scikit-learn's ``sqrt(v)``.
    ``fit`` and ``partial_fit`` take ``sample_weight``.

    Fitted attributes as scikit-learn's: ``loss_``, ``loss_curve_``,
    ``best_loss_``, ``n_iter_`` (the epochs of the last call, as in
    scikit-learn 1.9), ``t_``, ``validation_scores_`` and
    ``best_validation_score_`` (with early stopping), ``n_features_in_``,
    ``feature_names_in_``, ``n_outputs_``, ``n_layers_``, ``coefs_`` and
    ``intercepts_`` (assignable: they write through to the network), and
    ``network_``, the trained :class:`bpcore.Network` (save it with
    :func:`bpcore.save`).  ``verbose`` writes scikit-learn's progress lines
    to stdout; otherwise nothing is printed (progress is logged under
    ``bpcore`` at DEBUG level).
"""


REGRESSION_LOSSES = ("squared_error", "poisson")


def _simple_labels(y: Any) -> bool:
    """1-d labels of one plain kind (booleans, integers, strings), where ``np.unique`` is exact."""
    return isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "biuUS" and y.size > 0


def _stochastic_solver(estimator: BaseMLP) -> bool:
    """``partial_fit`` exists only for the stochastic solvers, as in scikit-learn."""
    if estimator.solver not in ("sgd", "adam"):
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {estimator.solver} is not stochastic."
        )
    return True


class MLPClassifier(ClassifierMixin, BaseMLP):
    """A multi-layer perceptron classifier trained by bpcore, on the CPU or a CUDA GPU.

    Binary and multi-label targets get a logistic output and log-loss,
    multi-class targets a softmax output and cross-entropy; the network
    itself outputs logits (``network_`` ends with its last Dense layer).
    """

    __doc__ = (__doc__ or "") + _PARAMETERS_DOC

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        return tags

    def _encode_targets(self, y: Any, *, incremental: bool) -> np.ndarray:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        refit = "classes_" not in self.__dict__ or (not self.warm_start and not incremental)
        if not refit and _simple_labels(y) and self._kind != "multilabel":
            return self._encode_known_labels(y)
        check_classification_targets(y)
        if refit:
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
            self._set_kind()
        else:
            self._check_known_classes(unique_labels(y))
        return self._label_binarizer.transform(y)

    def _check_known_classes(self, classes: np.ndarray) -> None:
        """scikit-learn's errors for labels that do not fit ``classes_`` (warm start: the same set)."""
        if self.warm_start:
            if set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the previous "
                    f"call to fit. Previously got {self.classes_}, `y` has {classes}"
                )
        elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
            raise ValueError(
                f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                f"'y' has {classes}."
            )

    def _encode_known_labels(self, y: np.ndarray) -> np.ndarray:
        """What ``unique_labels`` and ``LabelBinarizer.transform`` give, in one ``np.unique``.

        The common case of ``partial_fit`` and warm starts (1-d numeric or string labels, classes
        already known); scikit-learn's general checks cost more than an epoch on small batches.
        """
        classes, inverse = np.unique(y, return_inverse=True)
        self._check_known_classes(classes)
        column = np.searchsorted(self.classes_, classes)[inverse]
        if self._kind == "binary":
            return (column == 1).astype(np.int64).reshape(-1, 1)
        encoded = np.zeros((y.shape[0], len(self.classes_)), dtype=np.int64)
        encoded[np.arange(y.shape[0]), column] = 1
        return encoded

    def _set_kind(self) -> None:
        kind = self._label_binarizer.y_type_
        self._kind: str = (
            "multilabel"
            if kind.startswith("multilabel")
            else ("multiclass" if kind == "multiclass" else "binary")
        )
        self._loss = self._make_loss()

    def _decode_targets(self, Y: np.ndarray) -> Any:
        return self._label_binarizer.inverse_transform(Y)

    def _make_loss(self) -> Any:
        if self._kind == "multiclass":
            return CrossEntropy(reduction="sum")
        return BinaryCrossEntropy(from_logits=True, reduction="sum")

    def _batch_loss(self, out: Any, target: Any, weights: Any, norm: float) -> tuple[Any, Any]:
        value = self._loss(out, target, check=False)
        grad = self._loss.backward()  # summed log-loss: grad = p - y per row (canonical link)
        if weights is None:
            return value * (1.0 / norm), grad * (1.0 / norm)
        xp = self.network_.xp
        if self._kind == "multiclass":
            top = out.max(axis=1, keepdims=True)
            log_sum = top[:, 0] + xp.log(xp.exp(out - top).sum(axis=1))
            rows = log_sum - (target * out).sum(axis=1)
        else:
            rows = (xp.maximum(out, 0) + xp.log1p(xp.exp(-xp.abs(out))) - target * out).sum(axis=1)
        return xp.dot(weights, rows) * (1.0 / norm), grad * (weights * (1.0 / norm))[:, None]

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` for up to ``max_iter`` epochs.

        ``sample_weight`` (n_samples,) weighs each sample's loss, as in scikit-learn.
        """
        return self._fit(X, y, sample_weight, incremental=False)  # type: ignore[return-value]

    @available_if(_stochastic_solver)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``; the first call needs ``classes``, every label that will be seen.

        Only for the stochastic solvers (``'sgd'``, ``'adam'``), as in scikit-learn.
        """
        if classes is not None and "classes_" in self.__dict__ and _simple_labels(np.asarray(classes)):
            if not np.array_equal(self.classes_, np.unique(np.asarray(classes))):  # sklearn's check, cheaper
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                    f"was: {self.classes_!r}"
                )
        elif _check_partial_fit_first_call(self, classes):  # sets classes_ from ``classes``
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self._set_kind()
        return self._fit(X, y, sample_weight, incremental=True)  # type: ignore[return-value]

    def _predict_validated(self, X: Any) -> np.ndarray:
        return self._labels(self._raw_output(X))

    def _logits(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._raw_output(self._validate_X(X, reset=False))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        logits = self._logits(X)
        if self._kind == "multiclass":
            return softmax(logits, axis=1)
        probabilities = expit(logits)
        if self._kind == "binary":
            positive = probabilities.ravel()
            return np.vstack([1 - positive, positive]).T
        return probabilities

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The predicted labels (for multi-label targets, the indicator matrix)."""
        return self._labels(self._logits(X))

    def _labels(self, logits: np.ndarray) -> np.ndarray:
        if self._kind == "multiclass":
            return self.classes_[np.argmax(logits, axis=1)]
        scores = (logits > 0).astype(np.int64)
        return self._label_binarizer.inverse_transform(scores.ravel() if self._kind == "binary" else scores)


class MLPRegressor(RegressorMixin, BaseMLP):
    """A multi-layer perceptron regressor trained by bpcore, on the CPU or a CUDA GPU.

    ``loss='squared_error'`` (the default) is scikit-learn's half mean squared
    error, with gradient ``(prediction - y) / n`` with respect to the output;
    ``loss='poisson'`` is its half Poisson deviance with a log link (the
    prediction is ``exp`` of the network's output, targets must be >= 0).
    """

    __doc__ = (__doc__ or "") + _PARAMETERS_DOC

    def __init__(
        self,
        loss: str = "squared_error",
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
        self.loss = loss
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            device=device,
            dtype=dtype,
        )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = True
        return tags

    def _check_parameters(self) -> None:
        if self.loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss: expected one of {list(REGRESSION_LOSSES)}, got {self.loss!r}")
        super()._check_parameters()

    def _encode_targets(self, y: Any, *, incremental: bool) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("y: loss='poisson' needs non-negative targets, got negative values")
        self._loss = self._make_loss()
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _make_loss(self) -> Any:
        return MSE(reduction="sum") if self.loss == "squared_error" else None

    def _batch_loss(self, out: Any, target: Any, weights: Any, norm: float) -> tuple[Any, Any]:
        xp = self.network_.xp
        if self.loss == "poisson":  # per element exp(z) - y z + (y log y - y): half the deviance
            prediction = xp.exp(out)
            safe = xp.where(target > 0, target, 1)
            elements = prediction - target * out + target * xp.log(safe) - target
            grad = prediction - target
            rows = elements.sum(axis=1)
        else:
            value = self._loss(out, target, check=False)
            grad = self._loss.backward() * 0.5  # (p - y): scikit-learn does not divide by n_outputs
            if weights is None:
                return value * (0.5 / (norm * out.shape[1])), grad * (1.0 / norm)
            rows = ((out - target) ** 2).sum(axis=1) * (0.5 / out.shape[1])
        if weights is None:
            return rows.sum() * (1.0 / norm), grad * (1.0 / norm)
        return xp.dot(weights, rows) * (1.0 / norm), grad * (weights * (1.0 / norm))[:, None]

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features) and targets ``y`` for up to ``max_iter`` epochs.

        ``sample_weight`` (n_samples,) weighs each sample's loss, as in scikit-learn.
        """
        return self._fit(X, y, sample_weight, incremental=False)  # type: ignore[return-value]

    @available_if(_stochastic_solver)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current network (solvers 'sgd', 'adam')."""
        return self._fit(X, y, sample_weight, incremental=True)  # type: ignore[return-value]

    def _predict_validated(self, X: Any) -> np.ndarray:
        out = self._raw_output(X)
        if self.loss == "poisson":
            out = np.exp(out)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, X: Any) -> np.ndarray:
        """The predicted targets: shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict_validated(self._validate_X(X, reset=False))
