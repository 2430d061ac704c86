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


# --- the fixes of the GPU review, checked for real ----------------------------------------------
def _small_network(device: str, dtype: str = "float32", layers: Any = None) -> Any:
    import bpcore
    from bpcore.layers import Dense, Tanh

    return bpcore.Network(layers or [Dense(3, 4), Tanh(), Dense(4, 2)], dtype=dtype, seed=0, device=device)


def test_cupy_input_reaches_forward_predict_evaluate_and_fit(cuda_backend: Any) -> None:
    from bpcore.losses import MSE
    from bpcore.optim import SGD

    cupy = cuda_backend.xp
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)).astype(np.float32), rng.normal(size=(12, 2)).astype(np.float32)
    for device in ("cuda:0", "cpu"):
        net = _small_network(device)
        expected = cuda_backend.to_numpy(net.forward(x))
        np.testing.assert_allclose(cuda_backend.to_numpy(net.forward(cupy.asarray(x))), expected, rtol=1e-6)
        np.testing.assert_allclose(cuda_backend.to_numpy(net.predict(cupy.asarray(x))), expected, rtol=1e-6)
        assert np.isfinite(net.evaluate(cupy.asarray(x), cupy.asarray(y), loss=MSE())["loss"])
        net.fit(cupy.asarray(x), cupy.asarray(y), loss=MSE(), optimizer=SGD(net.parameters(), lr=0.1),
                epochs=1, batch_size=4, verbose=False)
        bad = x.copy()
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match="x: contains NaN or Inf"):
            net.forward(cupy.asarray(bad))


@pytest.mark.parametrize("layout", ["fortran", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", CUDA_OPS)
def test_fused_cuda_kernels_take_any_memory_layout(
    name: str, dtype: type, layout: str, cuda_backend: Any
) -> None:
    from kernel_cases import relayout

    cupy = cuda_backend.xp
    implementation = getattr(cuda_backend.ops, name)
    rng = np.random.default_rng(5)
    for _label, make in CASES[name]:
        args = make(rng, dtype, 300, False)
        expected = copy.deepcopy(args)
        with np.errstate(all="ignore"):
            OPERATIONS[name].generic(np, *expected)
        on_device = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        on_device = relayout(on_device, layout, cupy)
        implementation(*on_device)
        cuda_backend.synchronize()
        for position, (e, g) in enumerate(zip(expected, on_device, strict=True)):
            if isinstance(e, np.ndarray) and e.dtype.kind == "f":
                rtol, atol = TOLERANCE[e.dtype]
                magnitude = max(1.0, float(np.abs(e[np.isfinite(e)]).max(initial=0.0)))
                np.testing.assert_allclose(cupy.asnumpy(g), e, rtol=rtol * 50, atol=atol * 50 * magnitude,
                                           equal_nan=True, err_msg=f"{name} ({layout}): argument {position}")


@pytest.mark.parametrize("shape", [(2, 7), (1024, 256), (4099, 300)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_batchnorm_kernels_match_the_numpy_path_at_network_sizes(
    shape: tuple[int, int], dtype: type, cuda_backend: Any
) -> None:
    cupy = cuda_backend.xp
    rng = np.random.default_rng(1)
    n, f = shape
    x = (rng.normal(30.0, 2.0, size=shape)).astype(dtype)
    gamma, beta = rng.normal(1, 0.2, f).astype(dtype), rng.normal(0, 0.2, f).astype(dtype)
    forward = [x, gamma, beta, np.zeros(f, dtype), np.ones(f, dtype), 0.1, 1e-5,
               np.empty(shape, dtype), np.empty(shape, dtype), np.empty(f, dtype)]
    forward_expected = copy.deepcopy(forward)
    OPERATIONS["batchnorm_forward_train"].generic(np, *forward_expected)
    xhat, inv_std = forward_expected[8], forward_expected[9]
    backward = [rng.normal(size=shape).astype(dtype), xhat, gamma, inv_std, np.zeros(f, dtype),
                np.zeros(f, dtype), np.empty(shape, dtype), False]
    for name, args in (("batchnorm_forward_train", forward), ("batchnorm_backward", backward)):
        expected = copy.deepcopy(args)
        OPERATIONS[name].generic(np, *expected)
        on_device = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        getattr(cuda_backend.ops, name)(*on_device)
        for position, (e, g) in enumerate(zip(expected, on_device, strict=True)):
            if isinstance(e, np.ndarray):
                rtol, atol = TOLERANCE[e.dtype]
                np.testing.assert_allclose(
                    cupy.asnumpy(g), e, rtol=rtol * 100, atol=atol * 100 * max(1.0, n / 64),
                    err_msg=f"{name} {shape}: argument {position}",
                )


def test_raw_kernels_refuse_other_dtypes_on_the_gpu(cuda_backend: Any) -> None:
    cupy = cuda_backend.xp
    logits = cupy.zeros((4, 3), cupy.float16)
    with pytest.raises(TypeError, match="expected float32 or float64 arrays, got dtype float16"):
        cuda_backend.ops.softmax_cross_entropy_forward(
            logits, logits, logits.copy(), cupy.zeros(4, cupy.float16)
        )


def test_raw_kernel_functions_are_fetched_once_per_dtype_on_the_gpu(cuda_backend: Any) -> None:
    from bpcore.backends.kernels import cuda

    fetched: list[str] = []
    real = cuda.cupy_kernel("raw")

    class Counting:
        def get_function(self, expression: str) -> Any:
            fetched.append(expression)
            return real.get_function(expression)

    implementation = OPERATIONS["softmax_cross_entropy_index_forward"].cuda_wrapper(
        lambda k: Counting() if k == "raw" else cuda.cupy_kernel(k)
    )
    cupy = cuda_backend.xp
    logits = cupy.asarray(np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32))
    labels = cupy.arange(64, dtype=cupy.int64) % 10
    for _ in range(5):
        implementation(logits, labels, cupy.empty_like(logits), cupy.empty(64, cupy.float32))
    assert fetched == ["bp_softmax_cross_entropy_index_forward<float>"]


def test_gradcheck_runs_on_cupy_arrays(cuda_backend: Any) -> None:
    import bpcore
    from bpcore.layers import BatchNorm, Dense, Dropout, Tanh
    from bpcore.losses import MSE, CrossEntropy

    cupy = cuda_backend.xp
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.normal(size=(8, 3)))
    labels = cupy.asarray(rng.integers(0, 2, size=8))
    net = _small_network("cuda:0", "float64", [Dense(3, 5), BatchNorm(5), Tanh(), Dropout(0.3), Dense(5, 2)])
    assert bpcore.gradcheck(net, x, y=labels, loss=CrossEntropy(), seed=0) < 1e-6
    assert bpcore.gradcheck(MSE(), x, y=cupy.asarray(rng.normal(size=(8, 3))), seed=0) < 1e-6


def test_the_dropout_generator_lives_on_the_networks_gpu(cuda_backend: Any) -> None:
    from bpcore.layers import Dense, Dropout

    cupy = cuda_backend.xp
    count = cupy.cuda.runtime.getDeviceCount()
    last = f"cuda:{count - 1}"
    with cupy.cuda.Device(0):
        net = _small_network(last, layers=[Dense(3, 4), Dropout(0.5)])
        assert net._random.bit_generator._current_device_id == count - 1
        net.forward(np.ones((4, 3), np.float32), training=True)  # draws on its own GPU, whatever is current
    net.to("cpu")
    assert isinstance(net._random, np.random.Generator)
    net.to("cuda:0")
    assert net._random.bit_generator._current_device_id == 0
    net.forward(np.ones((4, 3), np.float32), training=True)
