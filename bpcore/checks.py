"""Argument checks: the one place where bpcore decides what a number, a flag or a choice is.

Every public constructor and function checks its arguments with these
helpers, so the rules are the same everywhere:

* ``True`` and ``False`` are not numbers (``Dense(True, 3)`` is a mistake);
* NumPy scalars (``np.int64(3)``, ``np.float32(0.1)``) work wherever Python
  numbers do, and the result is always a plain Python ``int`` or ``float``;
* NaN and Inf are refused unless the argument allows them (``finite=False``),
  and so are values that cannot be represented: an integer such as
  ``10**400`` overflows a float (and any integer beyond 64 bits overflows
  NumPy's arithmetic);
* a flag is ``True`` or ``False`` (or a NumPy bool): a string is refused,
  since ``bool("False")`` is true.

A wrong type raises :class:`TypeError`, a value out of range
:class:`ValueError`; both name the argument, what was expected and what was
seen.  This module imports nothing from bpcore, so every layer may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np

_INT64_MAX = 2**63 - 1
T = TypeVar("T")


def _seen(value: Any) -> str:
    """How a value is shown in an error: its type and a short repr (a huge integer by its length)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) > _INT64_MAX:
        return f"an integer of {len(str(abs(int(value))))} digits"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, (bool, int, float, str)) and type(value) in (bool, int, float, str):
        return text
    return f"{type(value).__name__} {text}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(
    value: Any,
    argument: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    expected: str | None = None,
) -> int:
    """``value`` as a Python int in ``[minimum, maximum]`` (and within 64 bits).

    ``expected`` replaces the generated description in errors
    ("a positive integer", ...).
    """
    if expected is None:
        if minimum is None and maximum is None:
            expected = "an integer"
        elif maximum is None:
            expected = {0: "a non-negative integer", 1: "a positive integer"}.get(
                minimum, f"an integer >= {minimum}"  # type: ignore[arg-type]
            )
        elif minimum is None:
            expected = f"an integer <= {maximum}"
        else:
            expected = f"an integer in [{minimum}, {maximum}]"
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}: expected {expected}, got {_seen(value)}")
    number = int(value)
    if (
        abs(number) > _INT64_MAX
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
    ):
        raise ValueError(f"{argument}: expected {expected}, got {_seen(value)}")
    return number


def positive_int(value: Any, argument: str) -> int:
    """An integer >= 1."""
    return integer(value, argument, minimum=1)


def non_negative_int(value: Any, argument: str) -> int:
    """An integer >= 0."""
    return integer(value, argument, minimum=0)


def optional(check: Any, value: Any, argument: str, **options: Any) -> Any:
    """``None``, or ``check(value, argument, **options)``."""
    return None if value is None else check(value, argument, **options)


def real(
    value: Any,
    argument: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    finite: bool = True,
    expected: str | None = None,
) -> float:
    """``value`` as a Python float.

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below``
    exclusive ones; ``finite=False`` admits +-Inf (never NaN) within those
    bounds.  Integers too large for a float (``10**400``) are refused.
    """
    if expected is None:
        kind = "a finite number" if finite else "a number (not NaN)"
        low = f"[{minimum:g}" if minimum is not None else f"({above:g}" if above is not None else None
        high = f"{maximum:g}]" if maximum is not None else f"{below:g})" if below is not None else None
        if low is not None and high is not None:
            expected = f"{kind} in {low}, {high}"
        elif low is not None:
            expected = f"{kind} {'>=' if low[0] == '[' else '>'} {low[1:]}"
        elif high is not None:
            expected = f"{kind} {'<=' if high[-1] == ']' else '<'} {high[:-1]}"
        else:
            expected = kind
    if not _is_number(value):
        raise TypeError(f"{argument}: expected {expected}, got {_seen(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(
            f"{argument}: expected {expected}, got {_seen(value)} (too large for a float)"
        ) from None
    if (
        math.isnan(number)
        or (finite and math.isinf(number))
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
        or (above is not None and not number > above)
        or (below is not None and not number < below)
    ):
        raise ValueError(f"{argument}: expected {expected}, got {_seen(value)}")
    return number


def positive(value: Any, argument: str) -> float:
    """A finite number > 0."""
    return real(value, argument, above=0.0)


def non_negative(value: Any, argument: str) -> float:
    """A finite number >= 0."""
    return real(value, argument, minimum=0.0)


def flag(value: Any, argument: str) -> bool:
    """``True`` or ``False`` (a NumPy bool too); anything else, strings above all, is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}: expected True or False, got {_seen(value)}")
    return bool(value)


def verbosity(value: Any, argument: str) -> int:
    """A Keras-style verbosity: 0/False silent, 1/True progress bar, 2 one line per epoch; returned as an int.

    Strings are refused (``"2"`` is a mistake, not a level), and so are
    integers other than 0, 1 and 2.
    """
    if isinstance(value, (bool, np.bool_)):
        return int(bool(value))
    if not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument}: expected True, False, 0, 1 or 2, got {_seen(value)}")
    if int(value) not in (0, 1, 2):
        raise ValueError(f"{argument}: expected True, False, 0, 1 or 2, got {_seen(value)}")
    return int(value)


def choice(value: Any, argument: str, choices: Iterable[T]) -> T:
    """One of ``choices`` (compared with ``==``, after checking the type, so that 1 never equals True)."""
    options = list(choices)
    for option in options:
        same_kind = isinstance(value, type(option)) and isinstance(value, bool) == isinstance(option, bool)
        if same_kind and value == option:
            return option
    shown = ", ".join(repr(option) for option in options)
    raise ValueError(f"{argument}: expected one of {shown}, got {_seen(value)}")


__all__ = [
    "choice",
    "flag",
    "integer",
    "non_negative",
    "non_negative_int",
    "optional",
    "positive",
    "positive_int",
    "real",
    "verbosity",
]
