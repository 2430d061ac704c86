"""Optimisers, learning-rate schedules, gradient clipping and L1/L2 regularisation.

Everything follows ``torch.optim`` (rules, defaults, epsilon placement), and
works on a whole network's flat parameter buffer in one operation per step.
"""

from .optimizers import OPTIMIZERS, SGD, AdaGrad, Adam, AdamW, Optimizer, RMSProp, from_config, serialize
from .regularization import Regularizer, add_regularization_grad, regularization_penalty

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSProp",
    "Regularizer",
    "add_regularization_grad",
    "from_config",
    "regularization_penalty",
    "serialize",
]
