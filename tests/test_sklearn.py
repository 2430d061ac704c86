"""bpcore.sklearn: scikit-learn's own estimator checks, sklearn's conventions, pickling, inputs."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is an optional extra")

from sklearn.base import clone
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import bpcore
from bpcore.sklearn import MLPClassifier, MLPRegressor

gpu = pytest.mark.gpu  # skipped by conftest.py where no GPU is usable


# scikit-learn's whole check suite, at the default parameters (max_iter=200 as scikit-learn's).
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=120, n_features=5, n_targets=2, noise=0.5, random_state=0)
    return X, y / 100.0


def fitted_classifier(iris, **options):
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        options = {"learning_rate_init": 0.01, **options}
        return MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=60, **options).fit(X, y)


# --- the import is optional -------------------------------------------------------
def test_importing_bpcore_does_not_import_sklearn():
    code = "import sys, bpcore; assert 'sklearn' not in sys.modules, 'sklearn was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_missing_sklearn_gives_an_error_naming_the_extra():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "try:\n    import bpcore.sklearn\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'bpcore[sklearn]'" in result.stdout


# --- scikit-learn's conventions ------------------------------------------------------
def test_loss_curve_is_sklearns_loss_with_its_l2_term(regression):
    """loss = sum((p - y)^2) / (2 n k) + alpha / (2 n) * sum ||W||^2 (full batch, tiny steps)."""
    X, y = regression
    alpha = 0.3
    model = MLPRegressor(
        hidden_layer_sizes=(6,),
        activation="tanh",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=1e-300,
        batch_size=X.shape[0],
        alpha=alpha,
        max_iter=1,
        random_state=0,
        shuffle=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    prediction = np.tanh(X @ w1 + b1) @ w2 + b2
    n = X.shape[0]
    expected = ((prediction - y) ** 2).sum() / (2 * n * y.shape[1]) + alpha / (2 * n) * (
        (w1**2).sum() + (w2**2).sum()
    )
    assert model.loss_curve_[0] == pytest.approx(expected, rel=1e-12)


def test_l2_gradient_is_alpha_w_over_n(regression):
    """One full-batch SGD step: W1 = W0 - lr * (X^T (p - y) / n + alpha * W0 / n) for a linear model."""
    X, y = regression
    y = y[:, 0]
    n, lr, alpha = X.shape[0], 0.05, 2.0
    options = dict(
        hidden_layer_sizes=(),
        solver="sgd",
        momentum=0.0,
        batch_size=n,
        alpha=alpha,
        max_iter=1,
        random_state=1,
        shuffle=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = MLPRegressor(learning_rate_init=1e-300, **options).fit(X, y)
        stepped = MLPRegressor(learning_rate_init=lr, **options).fit(X, y)
    w0, b0 = start.coefs_[0], start.intercepts_[0]
    residual = X @ w0 + b0 - y[:, None]
    assert np.allclose(stepped.coefs_[0], w0 - lr * (X.T @ residual / n + alpha * w0 / n), rtol=1e-12)
    assert np.allclose(stepped.intercepts_[0], b0 - lr * residual.mean(axis=0), rtol=1e-12)


def test_classifier_learns_and_reports_like_sklearn(iris):
    X, y = iris
    model = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=300, learning_rate_init=0.01)
    model.fit(X, y)
    assert model.score(X, y) > 0.95
    assert model.n_iter_ == len(model.loss_curve_) < 300  # converged by the tol / n_iter_no_change rule
    assert model.best_loss_ == min(model.loss_curve_) and model.validation_scores_ is None
    assert model.n_features_in_ == 4 and model.n_layers_ == 3 and model.n_outputs_ == 3
    proba = model.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    assert [w.shape for w in model.coefs_] == [(4, 16), (16, 3)]


def test_early_stopping_keeps_validation_scores(iris):
    X, y = iris
    model = MLPClassifier(
        hidden_layer_sizes=(8,),
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        random_state=0,
        learning_rate_init=0.01,
    )
    model.fit(X, y)
    assert model.best_loss_ is None and len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.n_iter_ < 200


def test_warm_start_and_partial_fit_continue_training(iris):
    X, y = iris
    model = fitted_classifier(iris, warm_start=True)
    curve = list(model.loss_curve_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.loss_curve_[: len(curve)] == curve and len(model.loss_curve_) > len(curve)
    online = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        online.partial_fit(X, y)
    online.partial_fit(X[:20], y[:20], classes=[0, 1, 2])  # the first batch has only class 0
    online.partial_fit(X, y)
    # scikit-learn 1.9 counts the epochs of the last call in n_iter_, and every sample seen in t_
    assert online.n_iter_ == 1 and online.t_ == 20 + len(X) and list(online.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"`y` has classes not in `self.classes_`"):
        online.partial_fit(X[:2], [0, 7])
    model.set_params(warm_start=True)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        model.fit(X[y < 2], y[y < 2])


def test_binary_multilabel_and_string_labels(iris):
    X, y = iris
    names = np.array(["setosa", "other"])[(y > 0).astype(int)]
    binary = fitted_classifier((X, names))
    assert binary.predict_proba(X).shape == (150, 2) and set(binary.predict(X)) <= {"setosa", "other"}
    assert binary.score(X, names) > 0.95
    multilabel = np.stack([y == 0, y == 2], axis=1).astype(int)
    model = fitted_classifier((X, multilabel))
    assert model.predict(X).shape == (150, 2) and model.predict_proba(X).shape == (150, 2)


def test_regressor_one_and_many_outputs(regression):
    X, y = regression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        two = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0).fit(X, y)
        one = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0).fit(X, y[:, 0])
    assert two.predict(X).shape == (120, 2) and one.predict(X).shape == (120,)
    assert two.score(X, y) > 0.9


def test_dtype_follows_the_input_unless_given(iris):
    X, y = iris
    assert fitted_classifier((X.astype(np.float32), y)).network_.dtype == np.float32
    assert fitted_classifier((X, y)).network_.dtype == np.float64
    assert fitted_classifier((X, y), dtype="float32").network_.dtype == np.float32


def test_pandas_inputs_record_feature_names(iris):
    X, y = iris
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = fitted_classifier((frame, pd.Series(y)))
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        from_array = model.predict(X)
    assert np.array_equal(model.predict(frame), from_array)


def test_same_seed_same_model(iris):
    first, second = fitted_classifier(iris), fitted_classifier(iris)
    assert first.loss_curve_ == second.loss_curve_
    assert np.array_equal(first.network_.store.data, second.network_.store.data)


def test_pickle_and_clone(iris):
    X, y = iris
    model = fitted_classifier(iris, solver="sgd")
    copy = pickle.loads(pickle.dumps(model))
    assert np.array_equal(copy.predict_proba(X), model.predict_proba(X))
    assert copy.network_ is not model.network_
    copy.partial_fit(X, y)  # the optimiser state came along
    assert copy._optimizer.step_count == model._optimizer.step_count + 1
    fresh = clone(model)
    assert fresh.get_params() == model.get_params() and not hasattr(fresh, "network_")


def test_the_network_is_pickled_in_bpcores_own_format(iris):
    state = fitted_classifier(iris).__getstate__()
    assert "network_" not in state and state["_network_file"][:2] == b"PK"  # a ZIP: bpcore's model file


def test_the_network_can_be_saved_with_bpcore(tmp_path, iris):
    X, _ = iris
    model = fitted_classifier(iris)
    bpcore.save(model.network_, tmp_path / "net.bpcore")
    logits = bpcore.load(tmp_path / "net.bpcore", device="cpu").predict(X)
    assert np.array_equal(model.classes_[np.argmax(logits, axis=1)], model.predict(X))


def test_verbose_prints_only_when_asked(iris, capsys):
    fitted_classifier(iris)
    assert capsys.readouterr().out == ""
    fitted_classifier(iris, verbose=True)
    assert "Iteration 1, loss = " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"activation": "softsign"}, "activation: expected one of"),
        ({"solver": "newton"}, "solver: expected one of"),
        ({"n_iter_no_change": 2.5}, "n_iter_no_change: expected an integer"),
        ({"verbose": -1}, "verbose: expected an integer"),
        ({"max_fun": 0}, "max_fun: expected an integer"),
        ({"hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes: expected positive integers"),
        ({"alpha": -1.0}, r"alpha: expected a number in \[0.0, inf\)"),
        ({"batch_size": 0}, "batch_size: expected an integer"),
        ({"learning_rate": "fast"}, "learning_rate: expected one of"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"dtype": "float16"}, "dtype: expected None, 'float32' or 'float64'"),
    ],
)
def test_bad_parameters_give_one_clear_error(iris, options, message):
    X, y = iris
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**options).fit(X, y)


def test_a_bad_device_is_reported(iris):
    X, y = iris
    with pytest.raises(bpcore.DeviceError, match="tpu"):
        MLPClassifier(device="tpu").fit(X, y)


@gpu
def test_cupy_inputs_and_gpu_training(iris):
    import cupy

    X, y = iris
    model = fitted_classifier((cupy.asarray(X), cupy.asarray(y)), device="cuda")
    assert model.network_.device.is_cuda
    assert np.array_equal(model.predict(cupy.asarray(X)), model.predict(X))
    cpu_copy = pickle.loads(pickle.dumps(model.set_params(device="cpu")))
    assert isinstance(cpu_copy.network_.store.data, np.ndarray)
    assert np.allclose(cpu_copy.predict_proba(X), model.predict_proba(X), atol=1e-6)


# --- scikit-learn 1.9's meaning, checked against scikit-learn itself ---------------------------
def test_same_random_state_same_start_and_sgd_trajectory_as_sklearn(iris):
    """Initialisation and shuffling draw from the generator as scikit-learn's do; SGD's update is the same."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    X, y = iris
    options = dict(hidden_layer_sizes=(7,), solver="sgd", batch_size=32, max_iter=3, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**options).fit(X, y)
        theirs = SkMLPClassifier(**options).fit(X, y)
    pairs = zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True)
    for mine, reference in pairs:
        np.testing.assert_allclose(mine, reference, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.n_iter_ == theirs.n_iter_ == 3 and ours.t_ == theirs.t_


def test_lbfgs_follows_sklearns_lbfgs(regression):
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor

    X, y = regression
    options = dict(hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", max_iter=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(**options).fit(X, y)
        theirs = SkMLPRegressor(**options).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 8
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-5, atol=1e-8)


def test_lbfgs_sample_weight_is_repetition(regression):
    """Full-batch L-BFGS with integer weights minimises the same loss as repeating the samples."""
    X, y = regression
    counts = np.arange(len(X)) % 3
    options = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=30, random_state=1, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MLPRegressor(**options).fit(X, y, sample_weight=counts)
        repeated = MLPRegressor(**options).fit(np.repeat(X, counts, axis=0), np.repeat(y, counts, axis=0))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-6, atol=1e-8)


def test_coefs_and_intercepts_write_through_to_the_network(iris):
    X, _ = iris
    model = fitted_classifier(iris)
    before = model.predict_proba(X)
    assert [c.shape for c in model.coefs_] == [(4, 8), (8, 3)]
    model.coefs_[1] = np.zeros((8, 3))
    model.intercepts_ = [model.intercepts_[0], np.array([0.0, 5.0, 0.0])]
    assert np.array_equal(model.predict(X), np.ones(len(X)))
    assert np.array_equal(model.network_.layers[-1].weight.data, np.zeros((8, 3), dtype=model.network_.dtype))
    model.coefs_[0][0, 0] += 1.0  # a view on the CPU: in-place changes write through too
    assert model.network_.layers[0].weight.data[0, 0] == model.coefs_[0][0, 0]
    wrong_shape = r"coefs_\[1\]: expected an array of shape \(8, 3\), got shape \(3, 8\)"
    with pytest.raises(ValueError, match=wrong_shape):
        model.coefs_[1] = np.zeros((3, 8))
    with pytest.raises(ValueError, match="intercepts_: expected 2 arrays"):
        model.intercepts_ = [np.zeros(8)]
    assert not np.array_equal(before, model.predict_proba(X))
    assert not hasattr(MLPClassifier(), "coefs_")


def test_invscaling_rate_after_a_warm_start_and_adaptive_rate():
    """scikit-learn's test_learning_rate_warmstart and test_adaptive_learning_rate, on bpcore's `.lr`."""
    X = [[3, 2], [1, 6], [5, 6], [-2, -4]]
    y = [1, 1, 1, 0]
    for learning_rate in ["invscaling", "constant"]:
        mlp = MLPClassifier(
            solver="sgd", hidden_layer_sizes=4, learning_rate=learning_rate, max_iter=1, power_t=0.25,
            warm_start=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(X, y)
            prev_eta = mlp._optimizer.lr
            mlp.fit(X, y)
            post_eta = mlp._optimizer.lr
        if learning_rate == "constant":
            assert prev_eta == post_eta
        else:
            assert mlp.learning_rate_init / pow(8 + 1, mlp.power_t) == post_eta
    clf = MLPClassifier(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive")
    clf.fit([[3, 2], [1, 6]], [1, 0])
    assert clf.max_iter > clf.n_iter_
    assert clf._optimizer.lr < 1e-6


def test_poisson_loss_predicts_exp_and_refuses_negative_targets():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(80, 2))
    y = rng.poisson(np.exp(X @ [1.0, -0.5] + 0.5))
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor

    options = dict(loss="poisson", hidden_layer_sizes=(4,), solver="lbfgs", max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(**options).fit(X, y)
        reference = SkMLPRegressor(**options).fit(X, y)
    assert (model.predict(X) > 0).all() and model.loss_ == pytest.approx(reference.loss_, rel=1e-6)
    np.testing.assert_allclose(model.predict(X), reference.predict(X), rtol=1e-5)
    with pytest.raises(ValueError, match="loss='poisson' needs non-negative targets"):
        MLPRegressor(loss="poisson").fit(X, -y - 1.0)


@gpu
def test_lbfgs_on_a_gpu_matches_the_cpu(regression):
    X, y = regression
    options = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=10, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu = MLPRegressor(**options).fit(X, y)
        gpu_model = MLPRegressor(device="cuda", **options).fit(X, y)
    assert gpu_model.network_.device.is_cuda and gpu_model.n_iter_ == cpu.n_iter_
    np.testing.assert_allclose(gpu_model.predict(X), cpu.predict(X), rtol=1e-6, atol=1e-9)
    gpu_model.coefs_[0] = cpu.coefs_[0]  # assignment writes through to the device
    np.testing.assert_allclose(gpu_model.coefs_[0], cpu.coefs_[0])
