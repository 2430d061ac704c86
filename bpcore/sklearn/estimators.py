"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn estimators training a bpcore network."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
)
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..losses import MSE, BinaryCrossEntropy, CrossEntropy
from ._base import BaseMLP

_PARAMETERS_DOC = """
    Parameters mirror scikit-learn's ``MLPClassifier``/``MLPRegressor`` (same
    names, defaults and meaning): ``hidden_layer_sizes``, ``activation``
    (``'identity'``, ``'logistic'``, ``'tanh'``, ``'relu'``), ``solver``
    (``'sgd'``, ``'adam'``; ``'lbfgs'`` is not offered), ``alpha`` (L2 term
    ``alpha / (2 n) * sum ||W||^2`` of each batch of n samples, so its
    gradient is ``alpha * W / n``; biases are not penalised), ``batch_size``
    (``'auto'`` is ``min(200, n_samples)``), ``learning_rate``
    (``'constant'``, ``'invscaling'``, ``'adaptive'``: SGD only),
    ``learning_rate_init``, ``power_t``, ``max_iter`` (epochs), ``shuffle``,
    ``random_state``, ``tol``, ``verbose``, ``warm_start``, ``momentum``,
    ``nesterovs_momentum``, ``early_stopping``, ``validation_fraction``,
    ``beta_1``, ``beta_2``, ``epsilon``, ``n_iter_no_change``.  Added:

    device : None or str
        Where the network trains and predicts: ``'cpu'``, ``'cuda'``,
        ``'cuda:N'``, ``'auto'``; None means bpcore's current device.
    dtype : None, 'float32' or 'float64'
        The network's precision; None follows the input (float32 input trains
        in float32, anything else in float64), as scikit-learn does.

    The optimisers are bpcore's, with torch.optim's update rules: Adam's
    epsilon is added to ``sqrt(v_hat)`` rather than scikit-learn's
    ``sqrt(v)``; SGD with constant learning rate follows the same trajectory.
    Weights start Glorot-uniform and biases at zero.

    Fitted attributes as scikit-learn's: ``loss_curve_``, ``best_loss_``,
    ``n_iter_``, ``t_``, ``validation_scores_`` and ``best_validation_score_``
    (with early stopping), ``n_features_in_``, ``feature_names_in_``,
    ``n_outputs_``, ``n_layers_``, ``coefs_``, ``intercepts_``; and
    ``network_``, the trained :class:`bpcore.Network` (save it with
    :func:`bpcore.save`).  ``verbose=True`` writes scikit-learn's progress
    lines to stdout; otherwise nothing is printed (progress is logged under
    ``bpcore`` at DEBUG level).
"""


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

    def _encode_targets(self, y: Any, *, first: bool, classes: Any = None) -> np.ndarray:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if classes is None else classes)
            self.classes_ = self._label_binarizer.classes_
            self._kind = (
                "multilabel"
                if self._label_binarizer.y_type_.startswith("multilabel")
                else ("multiclass" if self._label_binarizer.y_type_ == "multiclass" else "binary")
            )
            self._loss = self._make_loss()
        elif classes is None and type_of_target(y) != "multilabel-indicator":
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            if unseen.size:
                raise ValueError(
                    f"y: labels {unseen.tolist()} were not seen in the first fit "
                    f"(classes_ = {self.classes_.tolist()})"
                )
        return self._label_binarizer.transform(y).astype(np.float64)

    def _make_loss(self) -> Any:
        if self._kind == "multiclass":
            return CrossEntropy()
        return BinaryCrossEntropy(from_logits=True, reduction="sum")

    def _batch_loss(self, out: Any, target: Any, batch: int) -> tuple[Any, Any]:
        value = self._loss(out, target, check=False)
        grad = self._loss.backward()
        if self._kind != "multiclass":  # summed log-loss over outputs, averaged over samples (sklearn)
            value = value / batch
            grad = grad * (1.0 / batch)
        return value, grad

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` for up to ``max_iter`` epochs."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``; the first call needs ``classes``, every label that will be seen."""
        if _check_partial_fit_first_call(self, classes):  # sets classes_ from ``classes``
            return self._fit(X, y, incremental=True, classes=self.classes_)
        return self._fit(X, y, incremental=True)

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
        logits = self._logits(X)
        if self._kind == "multiclass":
            return self.classes_[np.argmax(logits, axis=1)]
        scores = (logits > 0).astype(np.int64)
        return self._label_binarizer.inverse_transform(scores.ravel() if self._kind == "binary" else scores)


class MLPRegressor(RegressorMixin, BaseMLP):
    """A multi-layer perceptron regressor trained by bpcore, on the CPU or a CUDA GPU.

    The loss is scikit-learn's squared error: half the mean squared error,
    whose gradient with respect to the output is ``(prediction - y) / n``.
    """

    __doc__ = (__doc__ or "") + _PARAMETERS_DOC

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = True
        return tags

    def _encode_targets(self, y: Any, *, first: bool, classes: Any = None) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if first:
            self._loss = self._make_loss()
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _make_loss(self) -> Any:
        return MSE(reduction="sum")

    def _batch_loss(self, out: Any, target: Any, batch: int) -> tuple[Any, Any]:
        value = self._loss(out, target, check=False)
        grad = self._loss.backward() * (0.5 / batch)
        return value / (2.0 * batch * out.shape[1]), grad

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features) and targets ``y`` for up to ``max_iter`` epochs."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current network."""
        return self._fit(X, y, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """The predicted targets: shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        out = self._raw_output(self._validate_X(X, reset=False))
        return out.ravel() if out.shape[1] == 1 else out
