"""Optimisers, learning-rate schedules, gradient clipping and L1/L2 regularisation.

Everything follows ``torch.optim`` (rules, defaults, epsilon placement), and
works on a whole network's flat parameter buffer in one operation per step.
"""

from .clipping import clip_grad_norm, clip_grad_value
from .constraints import clamp_parameters
from .optimizers import OPTIMIZERS, SGD, AdaGrad, Adam, AdamW, Optimizer, RMSProp, from_config, serialize
from .regularization import Regularizer, add_regularization_grad, regularization_penalty
from .schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearWarmup",
    "Optimizer",
    "RMSProp",
    "ReduceLROnPlateau",
    "Regularizer",
    "StepLR",
    "add_regularization_grad",
    "clamp_parameters",
    "clip_grad_norm",
    "clip_grad_value",
    "from_config",
    "regularization_penalty",
    "serialize",
]
