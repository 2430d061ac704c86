"""scikit-learn estimators backed by bpcore: :class:`MLPClassifier` and :class:`MLPRegressor`.

Their parameters mirror scikit-learn's own ``MLPClassifier``/``MLPRegressor``
where the meaning is the same, plus ``device`` (where the network trains)
and ``dtype``.  They pass scikit-learn's ``check_estimator``, work inside
``Pipeline`` and ``GridSearchCV``, pickle and clone, and accept NumPy,
pandas, SciPy sparse and CuPy inputs.

scikit-learn is an optional dependency: ``pip install 'bpcore[sklearn]'``.
Importing :mod:`bpcore` never imports it; only this module does.
"""

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "bpcore.sklearn needs scikit-learn, which is an optional extra: "
        "install it with pip install 'bpcore[sklearn]'"
    ) from exc

from .estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
