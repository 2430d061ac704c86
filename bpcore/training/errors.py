"""The error raised when training produces non-finite numbers."""

from __future__ import annotations


class TrainingDivergedError(FloatingPointError):
    """The loss (or a parameter) became NaN or Inf during :func:`fit`.

    A subclass of :class:`FloatingPointError` because it reports failed
    floating-point arithmetic, the same family NumPy raises under
    ``np.seterr(all="raise")``; ``except ArithmeticError`` catches both.
    When it is raised, the network's parameters, layer buffers and optimiser
    state have been restored to their values at the start of the epoch in
    which training diverged, so the caller can lower the learning rate and
    call ``fit`` again.
    """

    def __init__(self, message: str, *, epoch: int, step: int | None) -> None:
        super().__init__(message)
        #: The epoch (numbered from 1) in which the non-finite value appeared.
        self.epoch = epoch
        #: The step within that epoch (numbered from 1), or None if it is not known.
        self.step = step
