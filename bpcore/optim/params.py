"""Which parameters an optimiser or a clip works on, and whether they form one flat buffer.

When the parameters are exactly those of one :class:`~bpcore.parameters.ParameterStore`,
in its order (what ``network.parameters()`` returns), every whole-set
operation runs once over the store's flat ``data`` and ``grad`` buffers.
Any other selection is handled parameter by parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backends import Backend
from ..parameters import Parameter, ParameterStore


def collect_parameters(params: Any, *, argument: str = "params") -> list[Parameter]:
    """``params`` as a list of distinct, built :class:`Parameter` objects.

    Accepts a list or other iterable of Parameters, a single Parameter, or
    anything with a ``parameters()`` method (a Network).
    """
    if isinstance(params, Parameter):
        params = [params]
    elif callable(getattr(params, "parameters", None)):
        params = params.parameters()
    if not isinstance(params, Iterable) or isinstance(params, (str, bytes, dict)):
        raise TypeError(
            f"{argument}: expected an iterable of bpcore Parameters (e.g. network.parameters()), "
            f"got {type(params).__name__}"
        )
    found = list(params)
    seen: set[int] = set()
    for position, parameter in enumerate(found):
        if not isinstance(parameter, Parameter):
            raise TypeError(
                f"{argument}[{position}]: expected a bpcore Parameter, got {type(parameter).__name__}"
            )
        if parameter.data is None or parameter.grad is None or parameter.store is None:
            raise ValueError(
                f"{argument}[{position}]: parameter {parameter.name!r} has no data yet; "
                "pass the parameters of a built Network"
            )
        if id(parameter) in seen:
            raise ValueError(f"{argument}[{position}]: parameter {parameter.name!r} appears more than once")
        seen.add(id(parameter))
    return found


def whole_store(params: list[Parameter]) -> ParameterStore | None:
    """The store whose parameters are exactly ``params`` (same order), else None."""
    if not params:
        return None
    store = params[0].store
    if store is None or len(store.parameters) != len(params):
        return None
    if all(mine is theirs for mine, theirs in zip(params, store.parameters, strict=True)):
        return store
    return None


def flat_store(params: Any) -> ParameterStore | None:
    """The store whose parameters are exactly the list ``params``, in order, or None; cheap.

    The fast way in for whole-network operations called every step with
    ``network.parameters()``: such a list needs none of the checks of
    :func:`collect_parameters` (a store's parameters are built and distinct),
    so only identity with the store's list is tested.  Anything else gives
    None, and the caller goes the checked way.
    """
    if type(params) is not list or not params or not isinstance(params[0], Parameter):
        return None
    store = params[0].store
    if store is None:
        return None
    references = store._parameters
    if len(references) != len(params):
        return None
    for parameter, reference in zip(params, references, strict=True):
        if parameter is not reference():
            return None
    return store


class ParameterSet:
    """A fixed list of parameters, seen as one flat buffer when they cover a whole store."""

    def __init__(self, params: Any, *, argument: str = "params", allow_empty: bool = False) -> None:
        self.params = collect_parameters(params, argument=argument)
        if not self.params and not allow_empty:
            raise ValueError(f"{argument}: expected at least one Parameter, got an empty parameter list")
        self.store = whole_store(self.params)
        self.sizes = [parameter.size for parameter in self.params]
        self.total_size = sum(self.sizes)

    @property
    def flat(self) -> bool:
        return self.store is not None

    def __len__(self) -> int:
        return len(self.params)

    def backends(self) -> list[Backend]:
        """Each unit's backend: one for a flat set, else one per parameter."""
        if self.store is not None:
            return [self.store.backend]
        return [parameter.store.backend for parameter in self.params]  # type: ignore[union-attr]

    def units(self) -> list[tuple[Backend, Any, Any]]:
        """``(backend, data, grad)`` 1-D views: the flat buffers, or one triple per parameter."""
        if self.store is not None:
            return [(self.store.backend, self.store.data, self.store.grad)]
        return [
            (parameter.store.backend, parameter.data.reshape(-1), parameter.grad.reshape(-1))  # type: ignore[union-attr]
            for parameter in self.params
        ]

    def decay_flags(self) -> list[bool]:
        return [bool(parameter.decay) for parameter in self.params]

    def single_backend(self, what: str) -> Backend:
        """The one backend all parameters live on; a clear error if they are spread over devices."""
        backends = self.backends()
        first = backends[0]
        for backend in backends[1:]:
            if backend is not first:
                raise ValueError(
                    f"{what}: all parameters must be on one device, got parameters on "
                    f"{sorted({str(b.device) for b in backends})}"
                )
        return first
