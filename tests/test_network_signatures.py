"""Network.fit/predict/evaluate show the full signature and docstring of bpcore.training's functions."""

from __future__ import annotations

import inspect

import pytest

import bpcore
from bpcore import training


@pytest.mark.parametrize("name", ["fit", "predict", "evaluate"])
def test_method_signature_and_doc_are_the_training_functions(name: str) -> None:
    method, function = getattr(bpcore.Network, name), getattr(training, name)
    shown = list(inspect.signature(method).parameters)
    assert shown[0] == "self" and shown[1:] == list(inspect.signature(function).parameters)[1:]
    assert "options" not in shown
    assert method.__doc__ == function.__doc__
    net = bpcore.Network([bpcore.layers.Dense(2, 1)], seed=0)
    assert list(inspect.signature(getattr(net, name)).parameters) == shown[1:]
