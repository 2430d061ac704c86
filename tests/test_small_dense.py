"""A Dense layer's one-pass forward at inner sizes 2-4 (small_dense_forward): the values of the BLAS path."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore
from bpcore.layers import Dense, ReLU, Tanh

pytest.importorskip("numba", reason="Numba is not installed: the CPU runs the generic versions")


def twins(layers_of, dtype, monkeypatch):
    """The same network on the compiled kernels and (BPCORE_KERNELS=generic) on the BLAS path."""
    fused = bpcore.Network(layers_of(), dtype=dtype, seed=3)
    monkeypatch.setenv("BPCORE_KERNELS", "generic")
    generic = bpcore.Network(layers_of(), dtype=dtype, seed=3)
    monkeypatch.delenv("BPCORE_KERNELS")
    return fused, generic


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("inner", [2, 3, 4])
@pytest.mark.parametrize("activation", [ReLU, None])
def test_small_inner_forward_and_backward_match_the_blas_path(inner, activation, dtype, monkeypatch):
    def layers():
        first = [Dense(inner, 32)] + ([activation()] if activation else [])
        return [*first, Dense(32, 3)]

    fused, generic = twins(layers, dtype, monkeypatch)
    x = np.random.default_rng(inner).normal(size=(37, inner)).astype(dtype)
    x[0, 0] = np.nan  # NaN stays NaN through the ReLU
    out = fused.forward(x, training=True, check=False)
    assert fused.layers[0]._small_inner
    assert not generic.layers[0]._small_inner
    expected = generic.forward(x, training=True, check=False)
    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol)
    g = np.random.default_rng(9).normal(size=out.shape).astype(dtype)
    fused.backward(g, check=False, accumulate=False)
    generic.backward(g, check=False, accumulate=False)
    finite = np.isfinite(generic.store.grad)
    np.testing.assert_allclose(
        fused.store.grad[finite], generic.store.grad[finite], rtol=rtol * 10, atol=rtol
    )


def test_other_activations_and_inner_sizes_take_the_blas_path():
    cases = ([Dense(3, 8), Tanh()], [Dense(5, 8), ReLU()], [Dense(1, 8), ReLU()], [Dense(2, 8, bias=False)])
    for layers in cases:
        network = bpcore.Network(layers, seed=0)
        network.forward(np.ones((4, layers[0].in_features), np.float32), check=False)
        assert not network.layers[0]._small_inner


def test_the_compiled_product_has_the_bits_of_numpy_float32_matmul_on_this_machine_or_is_close():
    # The kernel accumulates as OpenBLAS does here (fused multiply-adds from the first product),
    # so seeded runs keep their values; elsewhere the rounding may differ in the last bit.
    rng = np.random.default_rng(0)
    ops = bpcore.get_backend("cpu").ops
    for rows, inner in ((64, 4), (512, 2), (7, 3)):
        x = rng.normal(size=(rows, inner)).astype(np.float32)
        w, b = rng.normal(size=(inner, 128)).astype(np.float32), rng.normal(size=128).astype(np.float32)
        out = np.empty((rows, 128), np.float32)
        ops.small_dense_forward(x, w, b, out, True)
        np.testing.assert_allclose(out, np.maximum(x @ w + b, 0), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("frozen_bias", [False, True])
def test_relu_and_bias_gradient_in_one_pass_give_the_bits_of_two_operations(dtype, accumulate, frozen_bias):
    """Dense + ReLU backward through relu_bias_backward: the gradients of relu_backward + column_sums."""

    def make():
        net = bpcore.Network([Dense(5, 64), ReLU(), Dense(64, 48), ReLU(), Dense(48, 3)], dtype=dtype, seed=1)
        if frozen_bias:
            net.layers[2].bias.requires_grad = False
        return net

    one_pass, two_passes = make(), make()
    for layer in two_passes.layers:
        if isinstance(layer, Dense):
            layer._relu_bias = False  # the separate operations, chosen as on a GPU
    rng = np.random.default_rng(0)
    x = rng.standard_normal((70, 5)).astype(dtype)
    grad = rng.standard_normal((70, 3)).astype(dtype)
    results = []
    for net in (one_pass, two_passes):
        net.store.grad[...] = 0.5
        net.forward(x, training=True)
        grad_in = net.backward(grad, accumulate=accumulate)
        results.append((grad_in, net.store.grad.copy()))
    assert any(isinstance(layer, Dense) and layer._relu_bias for layer in one_pass.layers)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    if frozen_bias:
        assert np.all(one_pass.layers[2].bias.grad == 0.5)
