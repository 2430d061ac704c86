"""On a CUDA GPU: every fused CuPy kernel against the NumPy path, and digits on both devices.

Every test here carries the ``gpu`` marker and is skipped, with the probe's
reason, where no CUDA GPU is usable (see ``conftest.py``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from kernel_cases import CASES, TOLERANCE

from bpcore.backends.ops import OPERATIONS

pytestmark = pytest.mark.gpu

CUDA_OPS = sorted(name for name, op in OPERATIONS.items() if op.cuda is not None)


@pytest.fixture(scope="module")
def cuda_backend() -> Any:
    from bpcore.backends import get_backend

    return get_backend("cuda:0", kernels="fused")


def test_the_cuda_backend_runs_a_fused_kernel_for_every_declared_operation(cuda_backend: Any) -> None:
    table = cuda_backend.dispatch_table()
    assert {name for name, source in table.items() if source == "cuda"} == set(CUDA_OPS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", CUDA_OPS)
def test_fused_cuda_kernel_matches_the_numpy_path(name: str, dtype: type, cuda_backend: Any) -> None:
    cupy = cuda_backend.xp
    implementation = getattr(cuda_backend.ops, name)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for _label, make in CASES[name]:
        for rows, edge in ((41, False), (41, True), (5000, False)):
            args = make(rng, dtype, rows, edge)
            expected = copy.deepcopy(args)
            with np.errstate(all="ignore"):
                OPERATIONS[name].generic(np, *expected)
            on_device = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
            implementation(*on_device)
            cuda_backend.synchronize()
            for position, (e, g) in enumerate(zip(expected, on_device, strict=True)):
                if not isinstance(e, np.ndarray) or e.dtype.kind != "f":
                    continue
                rtol, atol = TOLERANCE[e.dtype]
                magnitude = max(1.0, float(np.abs(e[np.isfinite(e)]).max(initial=0.0)))
                np.testing.assert_allclose(
                    cupy.asnumpy(g),
                    e,
                    rtol=rtol * 50,
                    atol=atol * 50 * magnitude,
                    equal_nan=True,
                    err_msg=f"{name}: argument {position} differs from the NumPy path",
                )


def _digits_accuracy(device: str, kernels: str) -> float:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import bpcore
    from bpcore.backends import get_backend
    from bpcore.layers import Dense, ReLU
    from bpcore.losses import CrossEntropy
    from bpcore.optim import Adam

    get_backend(device, kernels=kernels)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    network = bpcore.Network([Dense(64, 128), ReLU(), Dense(128, 10)], seed=0, device=device)
    loss = CrossEntropy()
    network.fit(
        x_train,
        y_train,
        loss=loss,
        optimizer=Adam(network.parameters(), lr=1e-3),
        epochs=30,
        batch_size=32,
        seed=0,
        verbose=False,
    )
    return float(network.evaluate(x_test, y_test, loss=loss, metrics=["accuracy"])["accuracy"])


def test_digits_trains_to_the_same_accuracy_on_both_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPCORE_KERNELS", "fused")
    cpu = _digits_accuracy("cpu", "fused")
    gpu = _digits_accuracy("cuda:0", "fused")
    assert cpu >= 0.97 and gpu >= 0.97
    assert abs(cpu - gpu) <= 0.01
