"""Embedding: PyTorch's semantics, gradients, the index check, the mask, saving, its scatter-add wrappers."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
from kernel_cases import CASES, cuda_wrapper

import bpcore
from bpcore.backends.ops import OPERATIONS
from bpcore.layers import Dense, Embedding, Tanh
from bpcore.losses import CrossEntropy

DTYPES = ["float32", "float64"]


def network(*layers: Any, dtype: str = "float64", device: str = "cpu") -> bpcore.Network:
    return bpcore.Network(list(layers), dtype=dtype, seed=0, device=device)


# --- construction and PyTorch's rules ------------------------------------------------------------
def test_weight_is_standard_normal_with_the_padding_row_zero() -> None:
    layer = Embedding(400, 50, padding_idx=7)
    network(layer)
    weight = layer.weight.data
    assert weight.shape == (400, 50)
    np.testing.assert_array_equal(weight[7], 0.0)
    others = np.delete(weight, 7, axis=0)
    assert abs(others.mean()) < 0.02 and abs(others.std() - 1.0) < 0.02


@pytest.mark.parametrize(("given", "stored"), [(None, None), (0, 0), (4, 4), (-1, 9), (-10, 0)])
def test_negative_padding_idx_counts_from_the_end(given: int | None, stored: int | None) -> None:
    layer = Embedding(10, 3, padding_idx=given)
    assert layer.padding_idx == stored
    assert layer.config() == {"num_embeddings": 10, "embedding_dim": 3, "padding_idx": stored}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_embeddings": 0, "embedding_dim": 3}, ValueError, "num_embeddings"),
        ({"num_embeddings": 5, "embedding_dim": 2.5}, TypeError, "embedding_dim"),
        ({"num_embeddings": 5, "embedding_dim": 3, "padding_idx": 5}, ValueError, "padding_idx"),
        ({"num_embeddings": 5, "embedding_dim": 3, "padding_idx": -6}, ValueError, "padding_idx"),
        ({"num_embeddings": 5, "embedding_dim": 3, "padding_idx": True}, TypeError, "padding_idx"),
        ({"num_embeddings": 5, "embedding_dim": 3, "padding_idx": 1.0}, TypeError, "padding_idx"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Embedding(**kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 1), (4, 9), (3, 5, 2)])
def test_forward_looks_rows_up_for_indices_of_any_shape(dtype: str, shape: tuple[int, ...]) -> None:
    layer = Embedding(11, 4)
    net = network(layer, dtype=dtype)
    x = np.random.default_rng(1).integers(0, 11, size=shape)
    out = net.forward(x)
    assert out.shape == (*shape, 4) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, layer.weight.data[x])
    expected = "(N, " + ", ".join(str(size) for size in (*shape[1:], 4)) + ")"
    assert expected in net.summary(shape[1:])


def test_a_standalone_layer_takes_one_dimensional_indices() -> None:
    layer = Embedding(5, 3)
    network(layer)
    x = np.array([4, 0, 4, 2])
    np.testing.assert_array_equal(layer.forward(x, False), layer.weight.data[x])
    layer.backward(np.ones((4, 3)), accumulate=False)
    np.testing.assert_array_equal(layer.weight.grad[:, 0], [1, 0, 1, 0, 2])


# --- gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_finite_differences(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=(int(rng.integers(1, 5)), int(rng.integers(1, 6))))
    assert bpcore.gradcheck(Embedding(6, 3), x, seed=seed) < 1e-6
    net = network(Embedding(6, 3, padding_idx=5), Dense(3, 4), Tanh())
    # The padding row gets no gradient by definition (not the derivative), so it is kept out of x here.
    assert bpcore.gradcheck(net, np.minimum(x, 4), seed=seed) < 1e-6
    labels = rng.integers(0, 4, size=x.shape)
    assert bpcore.gradcheck(net, np.minimum(x, 4), y=labels, loss=CrossEntropy(), seed=seed) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_repeated_indices_add_up_and_the_padding_row_gets_nothing(dtype: str) -> None:
    rng = np.random.default_rng(3)
    layer = Embedding(8, 5, padding_idx=2)
    net = network(layer, dtype=dtype)
    x = rng.integers(0, 8, size=(16, 12))
    x[:, -3:] = 2
    grad_out = rng.normal(size=(16, 12, 5)).astype(dtype)
    net.forward(x, training=True)
    net.zero_grad()
    assert net.backward(grad_out) is None  # indices have no gradient
    expected = np.zeros((8, 5))
    np.add.at(expected, x.reshape(-1), grad_out.reshape(-1, 5))
    expected[2] = 0.0
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(layer.weight.grad, expected, rtol=rtol, atol=rtol)
    net.backward(grad_out)  # adds, as PyTorch does
    np.testing.assert_allclose(layer.weight.grad, 2 * expected, rtol=rtol, atol=rtol)
    layer.backward(grad_out, accumulate=False)
    np.testing.assert_allclose(layer.weight.grad, expected, rtol=rtol, atol=rtol)


def test_a_frozen_embedding_writes_no_gradient() -> None:
    layer = Embedding(4, 2)
    net = network(layer, Dense(2, 1))
    layer.weight.requires_grad = False
    net.forward(np.array([[0, 1, 3]]), training=True)
    net.zero_grad()
    net.backward(np.ones((1, 3, 1)))
    np.testing.assert_array_equal(layer.weight.grad, 0.0)


def test_training_moves_only_the_rows_that_were_used_and_never_the_padding_row() -> None:
    layer = Embedding(10, 4, padding_idx=0)
    net = network(layer, Dense(4, 3), dtype="float32")
    before = layer.weight.data.copy()
    x = np.array([[1, 2, 0, 0], [2, 3, 3, 0]])
    y = np.array([[0, 1, 2, 2], [1, 1, 0, 2]])
    net.fit(x, y, loss=CrossEntropy(), optimizer=bpcore.optim.SGD(net.parameters(), lr=0.5), epochs=3,
            batch_size=2, verbose=0)
    moved = np.any(layer.weight.data != before, axis=1)
    np.testing.assert_array_equal(moved, [False, True, True, True] + [False] * 6)
    np.testing.assert_array_equal(layer.weight.data[0], 0.0)


# --- the input check -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.array([[1, 10]]), ValueError, r"takes indices in \[0, 10\), got 10"),
        (np.array([[-1, 3]]), ValueError, r"got -1"),
        (np.array([[1.0, 2.0]]), TypeError, "integer indices.*float64"),
        (np.array([[True, False]]), TypeError, "integer indices.*bool"),
    ],
)
def test_bad_indices_are_one_clear_error_naming_the_layer_and_change_nothing(
    x: np.ndarray, error: type, message: str
) -> None:
    net = network(Embedding(10, 3), Dense(3, 2))
    data, grad = net.store.data.copy(), net.store.grad.copy()
    with pytest.raises(error, match=message) as caught:
        net.forward(x)
    assert "Embedding(num_embeddings=10" in str(caught.value)
    with pytest.raises(error, match=message):
        net.fit(np.concatenate([np.zeros((3, 2), int), x.astype(x.dtype)]) if x.dtype.kind in "iu" else x,
                np.zeros((4 if x.dtype.kind in "iu" else 1, 2), int), loss=CrossEntropy(),
                optimizer=bpcore.optim.SGD(net.parameters(), lr=0.1), epochs=1, verbose=0)
    np.testing.assert_array_equal(net.store.data, data)
    np.testing.assert_array_equal(net.store.grad, grad)


# --- the mask protocol ------------------------------------------------------------------------------
def test_the_mask_marks_the_real_steps() -> None:
    assert not Embedding(5, 2).produces_mask
    layer = Embedding(5, 2, padding_idx=-1)
    assert layer.produces_mask
    x = np.array([[1, 2, 4, 4], [0, 4, 3, 4]])
    np.testing.assert_array_equal(layer.compute_mask(x, None), x != 4)
    assert layer.compute_mask(x, None).dtype == np.bool_
    assert layer.compute_mask(x[:, :, None], None) is None
    given = np.ones((2, 4), bool)
    assert Embedding(5, 2).compute_mask(x, given) is given


# --- saving, devices, summary ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_save_and_load_round_trip(tmp_path: Any, dtype: str) -> None:
    net = network(Embedding(9, 4, padding_idx=-2), Dense(4, 2), dtype=dtype)
    path = tmp_path / "embedding.bpcore"
    bpcore.save(net, path)
    loaded = bpcore.load(path)
    (first, _) = loaded.layers
    assert isinstance(first, Embedding) and first.padding_idx == 7
    x = np.random.default_rng(0).integers(0, 9, (3, 5))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    text = loaded.summary((5,))
    assert "Embedding(num_embeddings=9, embedding_dim=4, padding_idx=7)" in text and "(N, 5, 4)" in text
    assert "36" in text


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_gpu_gives_the_cpu_result(dtype: str) -> None:
    import cupy

    rng = np.random.default_rng(5)
    cpu = network(Embedding(50, 8, padding_idx=0), Dense(8, 3), dtype=dtype)
    gpu = cpu.clone().to("cuda")
    x = rng.integers(0, 50, (32, 20))
    x[:, 15:] = 0
    g = rng.normal(size=(32, 20, 3)).astype(dtype)
    for net in (cpu, gpu):
        net.forward(x, training=True)
        net.zero_grad()
        net.backward(g)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(cupy.asnumpy(gpu.store.grad), cpu.store.grad, rtol=rtol, atol=rtol)
    with pytest.raises(ValueError, match="got 50"):
        gpu.forward(cupy.asarray(np.full((1, 2), 50)))


# --- PyTorch -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_idx", [None, 3, -1])
def test_matches_torch_nn_embedding(padding_idx: int | None) -> None:
    torch = pytest.importorskip("torch")
    layer = Embedding(12, 5, padding_idx=padding_idx)
    network(layer)
    reference = torch.nn.Embedding(12, 5, padding_idx=padding_idx).double()
    assert reference.padding_idx == layer.padding_idx
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.weight.data))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, (7, 9))
    grad_out = rng.normal(size=(7, 9, 5))
    out = reference(torch.from_numpy(x))
    out.backward(torch.from_numpy(grad_out))
    np.testing.assert_allclose(layer.forward(x, True), out.detach().numpy(), rtol=0, atol=0)
    layer.weight.grad[...] = 0
    layer.backward(grad_out)
    np.testing.assert_allclose(layer.weight.grad, reference.weight.grad.numpy(), rtol=1e-12, atol=1e-12)


# --- the kernels ---------------------------------------------------------------------------------------
OPERATION = "embedding_backward"


def test_the_generic_version_matches_add_at() -> None:
    rng = np.random.default_rng(8)
    gy, index = rng.normal(size=(300, 6)), rng.integers(0, 40, 300)
    expected = rng.normal(size=(40, 6))
    grad = expected.copy()
    np.add.at(expected, index, gy)
    OPERATIONS[OPERATION].generic(np, gy, index, -1, grad)
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12)
    untouched = grad.copy()
    OPERATIONS[OPERATION].generic(np, gy[:0], index[:0], -1, grad)
    np.testing.assert_array_equal(grad, untouched)


def _prefix_sum_reduceat(array: Any, indices: Any, axis: int = 0, dtype: Any = None) -> Any:
    """``add.reduceat`` as CuPy computes it (``_add_reduceat``, cupy/_core/_routines_indexing.pyx):
    the differences of one running sum over the whole array, in ``dtype`` (the array's if None)."""
    acc = np.cumsum(array, axis=axis, dtype=dtype)
    acc = np.concatenate((np.zeros((1, *acc.shape[1:]), acc.dtype), acc))
    bounds = np.append(indices, array.shape[axis])
    return acc[bounds[1:]] - acc[bounds[:-1]]


def test_the_generic_version_keeps_float32_sums_exact_under_cupys_reduceat() -> None:
    # 200,000 rows in 50,000 groups of about 4, every value near 3: a float32 running sum reaches 2.4e6,
    # where its rounding (0.25) is as large as a group's sum is precise.  Summed in float64, each group
    # is within float32 rounding of the exact sum.
    rng = np.random.default_rng(12)
    gy = (3.0 + rng.random((200_000, 2))).astype(np.float32)
    index = rng.integers(0, 50_000, 200_000)
    cupy_like = types.SimpleNamespace(
        argsort=np.argsort, flatnonzero=np.flatnonzero, concatenate=np.concatenate, zeros=np.zeros,
        float64=np.float64, add=types.SimpleNamespace(reduceat=_prefix_sum_reduceat),
    )
    expected = np.zeros((50_000, 2))
    np.add.at(expected, index, gy.astype(np.float64))
    grad = np.zeros((50_000, 2), np.float32)
    OPERATIONS[OPERATION].generic(cupy_like, gy, index, -1, grad)
    np.testing.assert_allclose(grad, expected, rtol=2e-7)


# The Numba and CUDA kernels go through the registry's checks (tests/kernel_cases.py): Numba against the
# generic version, the CUDA body compiled on the host, CuPy's generated source compiled by NVRTC.
def test_the_cuda_wrapper_keeps_the_flat_arguments_flat() -> None:
    launched: list[tuple[Any, ...]] = []

    def kernel(gy, index, width, padding_idx, grad):  # type: ignore[no-untyped-def]
        # A stand-in for the kernel, which reads index and grad as flat C-order memory.
        assert index.flags.c_contiguous and grad.flags.c_contiguous and width == gy.shape[1]
        launched.append((index, grad))
        OPERATIONS[OPERATION].generic(np, gy, index, padding_idx, grad)

    implementation = cuda_wrapper(OPERATION, lambda name: kernel)
    gy, index, padding_idx, before = CASES[OPERATION][1][1](np.random.default_rng(9), np.float64, 12, False)
    expected = before.copy()
    OPERATIONS[OPERATION].generic(np, gy, index, padding_idx, expected)

    grad, strided = before.copy(), np.repeat(index, 2)[::2]
    assert implementation(gy, strided, padding_idx, grad) is grad
    (launch,) = launched  # a strided index is copied; grad is written in place
    assert launch[0] is not strided and launch[1] is grad
    np.testing.assert_allclose(grad, expected, rtol=1e-12)

    launched.clear()
    f_grad = np.asfortranarray(before)  # not C-ordered: the generic version, no launch
    assert implementation(gy, index, padding_idx, f_grad) is f_grad and launched == []
    np.testing.assert_allclose(f_grad, expected, rtol=1e-12)
    implementation(gy[:0], index[:0], padding_idx, grad)  # no rows: nothing to launch
    assert launched == []


# --- end to end with the recurrent layers ------------------------------------------------------------
@pytest.mark.parametrize("recurrent", ["LSTM", "GRU"])
def test_padding_idx_masks_the_recurrent_layer_after_it(recurrent: str) -> None:
    from bpcore import layers

    rng = np.random.default_rng(11)
    lengths = np.array([8, 5, 3, 1, 7, 2])
    x = rng.integers(1, 10, (6, 8))
    x[np.arange(8)[None, :] >= lengths[:, None]] = 0
    net = network(Embedding(10, 4, padding_idx=0), getattr(layers, recurrent)(4, 5), Dense(5, 3))
    out = net.forward(x)
    for row, length in enumerate(lengths):  # each padded sequence reads as the same sequence unpadded
        np.testing.assert_allclose(net.forward(x[row : row + 1, :length]), out[row : row + 1], rtol=1e-12)
    labels = rng.integers(0, 3, 6)
    assert bpcore.gradcheck(net, x, y=labels, loss=CrossEntropy(), seed=1) < 1e-5  # float64 noise ~1e-6


def test_an_embedding_anywhere_but_first_is_refused_when_the_network_is_built() -> None:
    from bpcore.layers import Residual

    with pytest.raises(ValueError, match=r"layers\[1\]: Embedding\(.*must be the network's first layer"):
        bpcore.Network([Dense(3, 4), Embedding(4, 2)])
    with pytest.raises(ValueError, match=r"Residual layers\[0\]: Embedding"):
        bpcore.Network([Residual(Embedding(4, 4))])
