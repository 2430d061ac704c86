"""Training, prediction and evaluation: ``fit``, ``predict``, ``evaluate``.

``Network.fit``, ``Network.predict`` and ``Network.evaluate`` delegate here.
"""

from .callbacks import Callback, EarlyStopping
from .errors import TrainingDivergedError
from .history import History
from .inference import evaluate, predict
from .loop import fit
from .metrics import METRICS

__all__ = [
    "METRICS",
    "Callback",
    "EarlyStopping",
    "History",
    "TrainingDivergedError",
    "evaluate",
    "fit",
    "predict",
]
