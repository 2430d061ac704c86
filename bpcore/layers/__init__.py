"""Layers: Dense, Conv2D, pooling, Flatten/Reshape, RNN/LSTM/GRU, activations, Dropout, BatchNorm..."""

from .activations import (
    ELU,
    GELU,
    Activation,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .base import Layer
from .batchnorm import BatchNorm
from .bidirectional import Bidirectional
from .concatenate import Concatenate
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .masking import Masking, mask_from_lengths
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .recurrent import GRU, LSTM, RNN
from .reshape import Flatten, Reshape
from .residual import Residual
from .sequence_pooling import GlobalAvgPool1D, GlobalMaxPool1D

__all__ = [
    "ELU",
    "GELU",
    "GRU",
    "LSTM",
    "RNN",
    "Activation",
    "AvgPool2D",
    "BatchNorm",
    "Bidirectional",
    "Concatenate",
    "Conv2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalMaxPool1D",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Masking",
    "MaxPool2D",
    "ReLU",
    "Reshape",
    "Residual",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "mask_from_lengths",
]
