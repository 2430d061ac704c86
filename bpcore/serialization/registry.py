"""Layer types by name: how a network's architecture becomes JSON and back.

Only classes defined in :mod:`bpcore.layers`, plus the classes a caller
passes explicitly as ``custom_layers``, can be created from a file.  A file
naming anything else is rejected; a type name is never imported.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from ..layers.base import Layer

# Constructor arguments whose saved value "custom" (a user's own initialiser
# function, which cannot be stored) is replaced by a stand-in on loading.  The
# stand-in never runs on saved weights: they are overwritten from the file.
_STAND_INS = {"init": "zeros", "bias_init": "zeros"}


def builtin_layer_types() -> dict[str, type[Layer]]:
    """Every concrete layer class exported by :mod:`bpcore.layers`, by class name."""
    from .. import layers

    found: dict[str, type[Layer]] = {}
    for name in dir(layers):
        candidate = getattr(layers, name)
        if inspect.isclass(candidate) and issubclass(candidate, Layer) and not _is_abstract(candidate):
            found[candidate.__name__] = candidate
    return found


def _is_abstract(cls: type[Layer]) -> bool:
    return cls is Layer or cls.__name__ == "Activation"


def layer_types(custom_layers: Mapping[str, type[Layer]] | None = None) -> dict[str, type[Layer]]:
    """Built-in layer types plus ``custom_layers`` (which must be Layer subclasses)."""
    types = builtin_layer_types()
    for name, cls in (custom_layers or {}).items():
        if not (inspect.isclass(cls) and issubclass(cls, Layer)):
            raise TypeError(f"custom_layers[{name!r}]: expected a bpcore Layer subclass, got {cls!r}")
        types[name] = cls
    return types


def children(layer: Layer) -> list[Layer] | None:
    """The layers nested in a container layer (such as Residual), or None for a plain layer."""
    nested = getattr(layer, "layers", None)
    if isinstance(nested, (list, tuple)) and all(isinstance(child, Layer) for child in nested):
        return list(nested)
    return None


def walk_with_paths(layers: list[Layer], prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """``(path, layer)`` for every layer, nested ones included; paths look like ``"2"`` or ``"2.0"``."""
    for index, layer in enumerate(layers):
        path = f"{prefix}{index}"
        yield path, layer
        nested = children(layer)
        if nested is not None:
            yield from walk_with_paths(nested, f"{path}.")


def describe(layer: Layer, path: str) -> dict[str, Any]:
    """The JSON description of ``layer``: its type name, its config and its nested layers."""
    spec: dict[str, Any] = {"type": type(layer).__name__, "config": dict(layer.config())}
    nested = children(layer)
    if nested is not None:
        spec["layers"] = [describe(child, f"{path}.{index}") for index, child in enumerate(nested)]
    return spec


def build(spec: Any, path: str, types: Mapping[str, type[Layer]]) -> Layer:
    """A new layer from its JSON description.  Raises ValueError or TypeError naming ``path``."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"layer {path}: expected an object with a 'type' name, got {spec!r:.80}")
    name = spec["type"]
    cls = types.get(name)
    if cls is None:
        raise ValueError(
            f"layer {path}: unknown layer type {name!r}; known types: {', '.join(sorted(types))} "
            "(pass your own classes as custom_layers={'Name': Class})"
        )
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"layer {path} ({name}): 'config' must be an object, got {config!r:.80}")
    config = {
        key: _STAND_INS[key] if value == "custom" and key in _STAND_INS else value
        for key, value in config.items()
    }
    nested = spec.get("layers")
    if nested is not None and not isinstance(nested, list):
        raise ValueError(f"layer {path} ({name}): 'layers' must be a list, got {nested!r:.80}")
    inner = [build(child, f"{path}.{index}", types) for index, child in enumerate(nested or [])]
    try:
        return cls(*inner, **config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer {path}: cannot create {name} from config {config} ({exc})") from None
