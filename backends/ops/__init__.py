"""Hot operations, each declared once with its generic, CPU and CUDA versions."""

from . import activations, buffers, embedding, losses, normalization, optimizers, pooling  # noqa: F401  (registers the operations)
from . import recurrent as recurrent  # the recurrent cell steps (registers them)
from .activations import ACTIVATIONS, ActivationSpec
from .registry import OPERATIONS, Operation, declare, register

__all__ = ["ACTIVATIONS", "OPERATIONS", "ActivationSpec", "Operation", "declare", "register"]
