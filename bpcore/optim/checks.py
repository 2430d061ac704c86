"""Argument checks shared by the optimisers, schedules and clipping functions."""

from __future__ import annotations

import math
import numbers
from typing import Any


def as_real(value: Any, argument: str) -> float:
    """``value`` as a Python float; a TypeError naming ``argument`` if it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument}: expected a real number, got {type(value).__name__} {value!r}")
    return float(value)


def as_non_negative(value: Any, argument: str) -> float:
    """A finite real number >= 0."""
    number = as_real(value, argument)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{argument}: expected a finite number >= 0, got {value!r}")
    return number


def as_positive_int(value: Any, argument: str) -> int:
    """An integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument}: expected a positive integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{argument}: expected a positive integer, got {value!r}")
    return int(value)
