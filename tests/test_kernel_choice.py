"""``BPCORE_KERNELS=auto``: fit, predict and evaluate choose their CPU kernels from their size alone."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest

import bpcore
from bpcore.backends import Device, get_backend
from bpcore.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from bpcore.training import kernel_choice

rng = np.random.default_rng(0)
X = rng.normal(size=(300, 64)).astype(np.float32)
Y = rng.integers(0, 10, size=300)


def digits_net(mode: str, monkeypatch: pytest.MonkeyPatch, seed: int = 0) -> bpcore.Network:
    """examples/digits.py's network, built in kernel mode ``mode`` (the network keeps its backend's mode)."""
    monkeypatch.setenv("BPCORE_KERNELS", mode)
    network = bpcore.Network([Dense(64, 128), ReLU(), Dense(128, 10)], seed=seed)
    monkeypatch.delenv("BPCORE_KERNELS")
    return network


def train(network: bpcore.Network, epochs: int = 3, **options: Any) -> Any:
    optimizer = bpcore.optim.Adam(network.parameters(), lr=1e-3)
    return network.fit(X, Y, loss=bpcore.losses.CrossEntropy(), optimizer=optimizer, epochs=epochs,
                       batch_size=32, seed=1, metrics=["accuracy"], **options)


def test_auto_is_the_default_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BPCORE_KERNELS", raising=False)
    assert bpcore.backends.kernel_mode_from_env() == "auto"
    assert bpcore.Network([Dense(2, 2)]).backend.kernels == "auto"


def test_the_digits_example_chooses_generic_and_large_fits_fused(monkeypatch: pytest.MonkeyPatch) -> None:
    digits = digits_net("auto", monkeypatch)
    small = kernel_choice.for_fit(digits, (64,), samples=1347, batch_size=32, epochs=30)
    assert small.kernels == "generic"
    assert small.saving is not None and small.saving < kernel_choice.threshold()
    monkeypatch.setenv("BPCORE_KERNELS", "auto")
    mnist = bpcore.Network([Dense(784, 256), ReLU(), Dense(256, 128), ReLU(), Dense(128, 10)])
    assert kernel_choice.for_fit(mnist, (784,), samples=60000, batch_size=64, epochs=5).kernels == "fused"
    # A CNN gains per pixel: a few epochs of 8x8 digits are enough.
    cnn = bpcore.Network([Conv2D(1, 16, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(16, 32, 3, padding=1),
                          ReLU(), Flatten(), Dense(512, 10)])
    assert kernel_choice.for_fit(cnn, (1, 8, 8), samples=1347, batch_size=64, epochs=30).kernels == "fused"
    assert kernel_choice.for_fit(cnn, (1, 8, 8), samples=64, batch_size=64, epochs=1).kernels == "generic"
    # Prediction has no optimiser updates: a small MLP predicts generic, a large CNN batch fused.
    predict = kernel_choice.for_inference
    assert predict(mnist, "predict", (784,), rows=10000, batch_size=4096).kernels == "generic"
    assert predict(cnn, "predict", (1, 8, 8), rows=10**6, batch_size=4096).kernels == "fused"


def test_the_rule_depends_on_the_sizes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    network = digits_net("auto", monkeypatch)
    before = kernel_choice.for_fit(network, (64,), samples=1347, batch_size=32, epochs=30)
    pytest.importorskip("numba")
    get_backend("cpu", kernels="fused").ops.relu_forward(X, np.empty_like(X))  # Numba now loaded and warm
    train(network, epochs=1)  # and the network has trained
    assert kernel_choice.for_fit(network, (64,), samples=1347, batch_size=32, epochs=30) == before
    other = digits_net("auto", monkeypatch, seed=5)
    assert kernel_choice.for_fit(other, (64,), samples=1347, batch_size=32, epochs=30) == before
    # More epochs of the same network: more predicted saving, eventually fused.
    savings = [kernel_choice.for_fit(network, (64,), samples=1347, batch_size=32, epochs=e).saving
               for e in (1, 30, 3000)]
    assert savings == sorted(savings)
    assert kernel_choice.for_fit(network, (64,), samples=1347, batch_size=32, epochs=3000).kernels == "fused"


def test_a_fit_logs_its_choice_in_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    network = digits_net("auto", monkeypatch)
    with caplog.at_level(logging.INFO, logger="bpcore"):
        train(network, epochs=1)
    lines = [r.getMessage() for r in caplog.records if "kernels" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("fit: BPCORE_KERNELS=auto chose the generic kernels: their predicted saving")
    assert "10 steps of 32 rows" in lines[0] and "Numba's start-up" in lines[0]
    assert caplog.records[[r.getMessage() for r in caplog.records].index(lines[0])].levelno == logging.INFO


def test_predict_and_evaluate_decide_from_their_rows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    network = digits_net("auto", monkeypatch)
    seen: list[str] = []
    original = network._forward

    def forward(x: Any, training: bool, mask: Any = None) -> Any:
        seen.append(network.backend.kernels)
        return original(x, training, mask)

    monkeypatch.setattr(network, "_forward", forward)
    with caplog.at_level(logging.DEBUG, logger="bpcore"):
        network.predict(X)
        network.evaluate(X, Y, loss="cross_entropy")
    assert seen == ["generic", "generic"] and network.backend.kernels == "auto"
    messages = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
    assert [m.split(":")[0] for m in messages] == ["predict", "evaluate"]
    assert all("300 rows in 1 batches" in m and "generic" in m for m in messages)


@pytest.mark.parametrize("mode", ["fused", "generic"])
def test_forced_modes_are_not_overridden(mode: str, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    network = digits_net(mode, monkeypatch)
    choice = kernel_choice.for_fit(network, (64,), samples=10**6, batch_size=32, epochs=100)
    assert choice.kernels == mode and choice.saving is None
    seen: list[str] = []
    with caplog.at_level(logging.INFO, logger="bpcore"):
        train(network, epochs=1, callbacks=[lambda epoch, logs: seen.append(network.backend.kernels)])
    assert seen == [mode]
    assert any(f"fit: the {mode} kernels (the network's mode)" in r.getMessage() for r in caplog.records)


def test_auto_on_a_gpu_is_fused() -> None:
    backend = types.SimpleNamespace(kernels="auto", device=Device("cuda", 0))
    gpu_network = types.SimpleNamespace(backend=backend)
    assert kernel_choice.for_fit(gpu_network, (64,), samples=10, batch_size=10, epochs=1).kernels == "fused"
    assert kernel_choice.for_inference(gpu_network, "predict", (64,), rows=1, batch_size=1).kernels == "fused"


def test_a_small_auto_fit_runs_the_generic_twin_and_gives_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    network = digits_net("auto", monkeypatch)
    own = network.backend
    loss = bpcore.losses.CrossEntropy()
    seen: list[Any] = []

    def look(epoch: int, logs: dict[str, float]) -> None:
        seen.append({network.backend.kernels, network.store.backend.kernels, loss._backend.kernels,
                     *(layer.backend.kernels for layer in network.walk())})

    optimizer = bpcore.optim.Adam(network.parameters(), lr=1e-3)
    network.fit(X, Y, loss=loss, optimizer=optimizer, epochs=1, batch_size=32, callbacks=[look])
    assert seen == [{"generic"}]
    assert network.backend is own and network.store.backend is own
    assert all(layer.backend is own for layer in network.walk())
    assert loss._backend is None  # as it was before the fit
    # Direct calls (custom loops) keep the network's own, fused kernels.
    if own.resolve("adam_step")[1] == "numba":
        optimizer.step()
        assert optimizer._ops is not None and optimizer._ops.backend is own


def test_the_network_is_given_back_when_a_fit_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    network = digits_net("auto", monkeypatch)
    own = network.backend

    def fail(epoch: int, logs: dict[str, float]) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        train(network, epochs=2, callbacks=[fail])
    assert network.backend is own and network.store.backend is own
    assert all(layer.backend is own for layer in network.walk())


def test_an_auto_fit_equals_the_forced_mode_it_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit for bit, for a generic choice and (with the threshold at zero) for a fused one."""
    for margin, chosen in ((kernel_choice.MARGIN, "generic"), (0.0, "fused")):
        monkeypatch.setattr(kernel_choice, "MARGIN", margin)
        auto, forced = digits_net("auto", monkeypatch), digits_net(chosen, monkeypatch)
        assert kernel_choice.for_fit(auto, (64,), samples=len(X), batch_size=32, epochs=3).kernels == chosen
        history_auto, history_forced = train(auto), train(forced)
        assert history_auto.loss == history_forced.loss
        np.testing.assert_array_equal(auto.store.data, forced.store.data)
        np.testing.assert_array_equal(auto.predict(X), forced.predict(X))
        assert auto.evaluate(X, Y, loss="cross_entropy") == forced.evaluate(X, Y, loss="cross_entropy")


FRESH_PROCESS = """
import json, sys
import numpy as np
import bpcore
from bpcore.layers import BatchNorm, Conv2D, Dense, Dropout, Embedding, Flatten, LSTM, MaxPool2D, ReLU
rng = np.random.default_rng(0)
images, labels = rng.normal(size=(40, 1, 8, 8)), rng.integers(0, 3, size=40)
cnn = bpcore.Network([Conv2D(1, 4, 3, padding=1), BatchNorm(4), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.2),
                      Dense(64, 3)], seed=0)
cnn.fit(images, labels, loss="cross_entropy", optimizer=bpcore.optim.Adam(cnn.parameters()), epochs=2,
        batch_size=8, validation_split=0.25, metrics=["accuracy"])
cnn.predict(images)
cnn.evaluate(images, labels, loss="cross_entropy")
tokens = rng.integers(1, 20, size=(24, 7))
rnn = bpcore.Network([Embedding(20, 8, padding_idx=0), LSTM(8, 8), Dense(8, 2)], seed=0)
rnn.fit(tokens, labels[:24] % 2, loss="cross_entropy", optimizer=bpcore.optim.SGD(rnn.parameters(), lr=0.1),
        epochs=2, batch_size=8)
print(json.dumps({"numba": "numba" in sys.modules, "modes": [cnn.backend.kernels, rnn.backend.kernels]}))
"""


@pytest.mark.slow
def test_a_small_auto_fit_does_not_import_numba() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "BPCORE_KERNELS"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True,
                            timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"numba": False, "modes": ["auto", "auto"]}


def test_layers_that_keep_operations_forget_them_when_the_kernels_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Conv2D keeps its operations without the layout guard and the recurrent layers their cell
    # operations: after use_kernels (what an auto fit does) they must come from the new backend.
    generic = get_backend("cpu", kernels="generic")
    rng = np.random.default_rng(0)
    monkeypatch.setenv("BPCORE_KERNELS", "fused")
    conv = Conv2D(1, 2, 3, padding=1)
    lstm = bpcore.layers.LSTM(3, 4)
    images = bpcore.Network([conv, Flatten(), Dense(72, 2)], seed=0, dtype="float64")
    sequences = bpcore.Network([lstm, Dense(4, 2)], seed=0, dtype="float64")
    monkeypatch.delenv("BPCORE_KERNELS")
    images.forward(rng.standard_normal((2, 1, 6, 6)))
    sequences.forward(rng.standard_normal((2, 5, 3)))
    conv.use_kernels(generic)
    lstm.use_kernels(generic)
    assert conv._kernel("im2col") is generic.ops.im2col
    sequences._forward(rng.standard_normal((2, 5, 3)), False)
    assert lstm._ops_backend is generic


def test_a_wrong_kernel_mode_names_the_variable_and_the_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPCORE_KERNELS", "fast")
    with pytest.raises(ValueError, match=r"environment variable BPCORE_KERNELS: expected one of "
                                         r"\('auto', 'fused', 'generic'\), got 'fast'"):
        bpcore.Network([Dense(2, 2)])
