"""L1 and L2 regularisation of the weights, as penalty gradients added before an update.

The textbook penalty ``l1 * sum|w| + (l2 / 2) * sum w**2`` over the
parameters whose ``decay`` flag is set (weights; biases and batch-norm
parameters are created with ``decay=False`` and are left alone).  Its
gradient ``l1 * sign(w) + l2 * w`` is added to the gradients in place,
so with ``l2`` alone it equals torch's ``weight_decay`` restricted to the
weights.  (An optimiser's own ``weight_decay`` follows torch exactly and
applies to every parameter it updates, biases included.)  ``sign(0) = 0``:
the subgradient of ``|w|`` at zero is taken as zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend, device_scope
from .params import ParameterSet


class Regularizer:
    """Adds the L1/L2 penalty gradient to a fixed set of parameters' gradients.

    Keeps, per unit of the set, a mask (1 for regularised entries, 0 for
    the rest) on the parameters' device, moved along if they move.
    """

    def __init__(self, params: Any, *, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = checks.non_negative(l1, "l1")
        self.l2 = checks.non_negative(l2, "l2")
        self.parameters = params if isinstance(params, ParameterSet) else ParameterSet(params)
        self._masks: list[tuple[Backend, Any] | None] = []

    @property
    def active(self) -> bool:
        return self.l1 != 0 or self.l2 != 0

    def _mask(self, index: int, backend: Backend, grad: Any) -> Any | None:
        """The mask of unit ``index`` on ``backend`` (None: nothing in it is regularised)."""
        if index < len(self._masks):
            entry = self._masks[index]
            if entry is None:
                return None
            if entry[0] is backend:
                return entry[1]
        flags = self.parameters.decay_flags()
        if self.parameters.flat:
            wanted = any(flags)
            host = np.repeat(np.asarray(flags, dtype=grad.dtype), self.parameters.sizes)
        else:
            wanted = flags[index]
            host = np.ones(grad.shape, dtype=grad.dtype)
        mask = backend.asarray(host, dtype=grad.dtype) if wanted else None
        while len(self._masks) <= index:
            self._masks.append(None)
        self._masks[index] = None if mask is None else (backend, mask)
        return mask

    def add_grad(self) -> None:
        """``grad += l1 * sign(w) + l2 * w`` for every regularised parameter, in place."""
        if not self.active:
            return
        for index, (backend, data, grad) in enumerate(self.parameters.units()):
            mask = self._mask(index, backend, grad)
            if mask is not None:
                backend.ops.l1_l2_grad(grad, data, self.l1, self.l2, mask, grad)

    def penalty(self) -> Any:
        """``l1 * sum|w| + (l2 / 2) * sum w**2`` over the regularised parameters, a 0-d array."""
        backend = self.parameters.single_backend("Regularizer.penalty")
        xp = backend.xp
        total = backend.zeros((), self.parameters.params[0].data.dtype)
        with device_scope(backend):  # the parameters' GPU, whichever the calling thread has current
            for parameter in self.parameters.params:
                if parameter.decay:
                    if self.l1:
                        total += self.l1 * xp.abs(parameter.data).sum()
                    if self.l2:
                        total += (0.5 * self.l2) * xp.vdot(parameter.data, parameter.data)
        return total


def add_regularization_grad(params: Any, *, l1: float = 0.0, l2: float = 0.0) -> None:
    """Add the L1/L2 penalty gradient to ``params``' gradients (weights only; see the module doc)."""
    Regularizer(params, l1=l1, l2=l2).add_grad()


def regularization_penalty(params: Any, *, l1: float = 0.0, l2: float = 0.0) -> Any:
    """The L1/L2 penalty of ``params`` (weights only) as a 0-d array, e.g. to report with the loss."""
    return Regularizer(params, l1=l1, l2=l2).penalty()
