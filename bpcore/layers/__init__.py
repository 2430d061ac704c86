"""Layers: Dense, activations, Dropout, BatchNorm and Residual."""

from .activations import (
    ELU,
    GELU,
    Activation,
    Identity,
    LeakyReLU,
    ReLU,
    SiLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from .base import Layer
from .dense import Dense

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "Dense",
    "Identity",
    "Layer",
    "LeakyReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]
