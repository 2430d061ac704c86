"""Optimisers against hand-derived float64 updates, the flat and per-parameter paths, state and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bpcore import Network
from bpcore.backends import get_backend
from bpcore.layers import Dense
from bpcore.optim import (
    SGD,
    AdaGrad,
    Adam,
    AdamW,
    Regularizer,
    RMSProp,
    add_regularization_grad,
    from_config,
    regularization_penalty,
    serialize,
)

START = [0.5, -1.0, 2.0]  # Dense(2, 1): weight (2, 1) then bias (1,)
GRADS = [[0.1, -0.2, 0.3], [-0.4, 0.25, 0.05], [0.3, 0.3, -0.6], [0.0, -0.1, 0.2], [0.7, -0.05, -0.3]]


@pytest.fixture(params=["fused", "generic"])
def kernels(request, monkeypatch):
    """Run a test with the compiled kernels (where present) and with the generic reference code."""
    monkeypatch.setenv("BPCORE_KERNELS", request.param)
    return request.param


def tiny_network(dtype: str = "float64") -> Network:
    network = Network([Dense(2, 1)], dtype=dtype, seed=0)
    network.store.load(np.array(START))
    return network


def run(network: Network, optimizer, steps: int = len(GRADS)) -> np.ndarray:
    for grad in GRADS[:steps]:
        network.store.grad[...] = np.array(grad)
        optimizer.step()
    return np.array(network.store.data, dtype=np.float64)


# --- independent scalar references, written from torch.optim's documented rules ---------
def reference(name: str, steps: int = len(GRADS), **kw) -> list[float]:
    out = []
    for i, p in enumerate(START):
        state: dict[str, float] = {}
        for t, grads in enumerate(GRADS[:steps], start=1):
            g = grads[i]
            p = globals()[f"_ref_{name}"](p, g, t, state, **kw)
        out.append(p)
    return out


def _ref_sgd(p, g, t, s, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    g = g + weight_decay * p
    if momentum:
        s["b"] = g if t == 1 else momentum * s["b"] + (1 - dampening) * g
        g = g + momentum * s["b"] if nesterov else s["b"]
    return p - lr * g


def _ref_adagrad(p, g, t, s, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    g = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    s["sum"] = s.get("sum", initial_accumulator_value) + g * g
    return p - clr * g / (math.sqrt(s["sum"]) + eps)


def _ref_rmsprop(p, g, t, s, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    g = g + weight_decay * p
    s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
    if centered:
        s["ga"] = alpha * s.get("ga", 0.0) + (1 - alpha) * g
        avg = math.sqrt(s["v"] - s["ga"] ** 2) + eps
    else:
        avg = math.sqrt(s["v"]) + eps
    if momentum > 0:
        s["b"] = momentum * s.get("b", 0.0) + g / avg
        return p - lr * s["b"]
    return p - lr * g / avg


def _ref_adam(p, g, t, s, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    v = s["v"]
    if amsgrad:
        s["vmax"] = max(s.get("vmax", 0.0), v)
        v = s["vmax"]
    m_hat, denom = s["m"] / (1 - b1**t), math.sqrt(v) / math.sqrt(1 - b2**t) + eps
    return p - lr * m_hat / denom


CASES = [
    (SGD, "sgd", {"lr": 0.1}),
    (SGD, "sgd", {"lr": 0.1, "weight_decay": 0.2}),
    (SGD, "sgd", {"lr": 0.1, "momentum": 0.9}),
    (SGD, "sgd", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1}),
    (SGD, "sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (AdaGrad, "adagrad", {"lr": 0.1}),
    (AdaGrad, "adagrad", {"lr": 0.1, "lr_decay": 0.2, "weight_decay": 0.1, "initial_accumulator_value": 0.3}),
    (RMSProp, "rmsprop", {"lr": 0.01}),
    (RMSProp, "rmsprop", {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.1, "momentum": 0.5}),
    (RMSProp, "rmsprop", {"lr": 0.01, "alpha": 0.8, "centered": True}),
    (RMSProp, "rmsprop", {"lr": 0.02, "centered": True, "momentum": 0.9, "eps": 1e-3}),
    (Adam, "adam", {"lr": 0.01}),
    (Adam, "adam", {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1}),
    (Adam, "adam", {"lr": 0.01, "amsgrad": True}),
    (AdamW, "adam", {"lr": 0.01}),
    (AdamW, "adam", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True, "eps": 1e-4}),
]


def _kwargs_for_reference(cls, kwargs):
    if cls is AdamW:
        return {"weight_decay": 0.01, **kwargs, "decoupled": True}
    return kwargs


@pytest.mark.parametrize(("cls", "name", "kwargs"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-parameter"])
def test_update_matches_scalar_reference_for_several_steps(cls, name, kwargs, flat, kernels):
    network = tiny_network()
    params = network.parameters() if flat else list(reversed(network.parameters()))
    optimizer = cls(params, **kwargs)
    assert optimizer.parameters.flat is flat
    got = run(network, optimizer)
    expected = reference(name, **_kwargs_for_reference(cls, kwargs))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert optimizer.step_count == len(GRADS)


@pytest.mark.parametrize(("cls", "name", "kwargs"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_float32_follows_the_same_trajectory(cls, name, kwargs, kernels):
    network = tiny_network("float32")
    got = run(network, cls(network.parameters(), **kwargs))
    assert network.store.data.dtype == np.float32
    expected = reference(name, **_kwargs_for_reference(cls, kwargs))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


def test_hand_derived_numbers():
    # SGD, lr 0.1, momentum 0.9, constant gradient 1: buffers 1, 1.9, 2.71 -> p = 0.9, 0.71, 0.439
    network = Network([Dense(1, 1, bias=False)], dtype="float64", seed=0)
    network.store.load(np.array([1.0]))
    optimizer = SGD(network.parameters(), lr=0.1, momentum=0.9)
    seen = []
    for _ in range(3):
        network.store.grad[...] = 1.0
        optimizer.step()
        seen.append(float(network.store.data[0]))
    np.testing.assert_allclose(seen, [0.9, 0.71, 0.439], rtol=1e-15)
    # Nesterov: g + 0.9 * buf = 1.9, 2.71, 3.439 -> 0.81, 0.539, 0.1951
    network.store.load(np.array([1.0]))
    optimizer = SGD(network.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    seen = []
    for _ in range(3):
        network.store.grad[...] = 1.0
        optimizer.step()
        seen.append(float(network.store.data[0]))
    np.testing.assert_allclose(seen, [0.81, 0.539, 0.1951], rtol=1e-14)
    # Adam's first step moves by lr * g / (|g| + eps'), eps' = eps / sqrt(1 - b2) after bias correction
    network.store.load(np.array([1.0]))
    optimizer = Adam(network.parameters(), lr=0.1)
    network.store.grad[...] = 4.0
    optimizer.step()
    np.testing.assert_allclose(network.store.data[0], 1.0 - 0.1 * 4.0 / (4.0 + 1e-8), rtol=1e-15)
    # AdamW with weight decay 0.5 first shrinks p by (1 - 0.1 * 0.5)
    network.store.load(np.array([1.0]))
    optimizer = AdamW(network.parameters(), lr=0.1, weight_decay=0.5)
    network.store.grad[...] = 4.0
    optimizer.step()
    np.testing.assert_allclose(network.store.data[0], 0.95 - 0.1 * 4.0 / (4.0 + 1e-8), rtol=1e-15)
    # AdaGrad: sum = 0.1 + 4, p = 1 - 0.1 * 2 / (sqrt(4.1) + 1e-10)
    network.store.load(np.array([1.0]))
    optimizer = AdaGrad(network.parameters(), lr=0.1, initial_accumulator_value=0.1)
    network.store.grad[...] = 2.0
    optimizer.step()
    np.testing.assert_allclose(network.store.data[0], 1.0 - 0.2 / (math.sqrt(4.1) + 1e-10), rtol=1e-15)
    # RMSProp: v = 0.01 * 4 = 0.04, p = 1 - 0.01 * 2 / (0.2 + 1e-8)
    network.store.load(np.array([1.0]))
    optimizer = RMSProp(network.parameters())
    network.store.grad[...] = 2.0
    optimizer.step()
    np.testing.assert_allclose(network.store.data[0], 1.0 - 0.02 / (0.2 + 1e-8), rtol=1e-14)


def test_flat_step_is_one_operation_over_the_whole_buffer(monkeypatch):
    network = Network([Dense(3, 4), Dense(4, 2)], dtype="float64", seed=0)
    optimizer = Adam(network.parameters())
    calls = []
    real = network.backend.ops.adam_step

    def spy(param, grad, *rest):
        calls.append(param.shape)
        return real(param, grad, *rest)

    monkeypatch.setattr(network.backend.ops, "adam_step", spy)
    optimizer.step()
    assert calls == [(network.store.size,)]


def test_flat_and_per_parameter_paths_agree_on_a_real_network():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=3 * 4 + 4 + 4 * 3 + 3) for _ in range(4)]
    results = []
    for flat in (True, False):
        network = Network([Dense(3, 4), Dense(4, 3)], dtype="float64", seed=1)
        params = network.parameters() if flat else network.parameters()[::-1]
        optimizer = RMSProp(params, lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)
        for grad in grads:
            network.store.grad[...] = grad
            optimizer.step()
        results.append(network.store.data.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-14)


def test_subset_of_parameters_updates_only_those():
    network = tiny_network()
    weight, _bias = network.parameters()
    optimizer = SGD([weight], lr=0.1)
    network.store.grad[...] = 1.0
    optimizer.step()
    np.testing.assert_allclose(network.store.data, [0.4, -1.1, 2.0])
    optimizer.zero_grad()
    np.testing.assert_array_equal(network.store.grad, [0.0, 0.0, 1.0])


def test_zero_grad_and_network_objects_as_params():
    network = tiny_network()
    optimizer = SGD(network, lr=0.1)
    assert optimizer.parameters.flat
    network.store.grad[...] = 3.0
    optimizer.zero_grad()
    assert not network.store.grad.any()


def test_lr_is_readable_and_settable():
    network = tiny_network()
    optimizer = SGD(network.parameters(), lr=0.1)
    assert optimizer.lr == 0.1
    optimizer.lr = 0.5
    network.store.grad[...] = 1.0
    optimizer.step()
    np.testing.assert_allclose(network.store.data, np.array(START) - 0.5)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optimizer.lr = -1
    with pytest.raises(TypeError, match=r"lr: expected a finite number >= 0, got '0\.1'"):
        optimizer.lr = "0.1"
    assert optimizer.lr == 0.5


def test_defaults_follow_torch():
    params = tiny_network().parameters()
    assert SGD(params).config() == {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                                    "weight_decay": 0.0}
    assert AdaGrad(params).config() == {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0,
                                        "initial_accumulator_value": 0.0, "eps": 1e-10}
    assert RMSProp(params).config() == {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                                        "momentum": 0.0, "centered": False}
    assert Adam(params).config() == {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                                     "amsgrad": False}
    assert AdamW(params).config()["weight_decay"] == 0.01


# --- device moves, saving and resuming ----------------------------------------------
def test_state_follows_the_parameters_to_another_backend():
    reference_net, moved_net = tiny_network(), tiny_network()
    reference_opt = Adam(reference_net.parameters(), lr=0.01, amsgrad=True)
    moved_opt = Adam(moved_net.parameters(), lr=0.01, amsgrad=True)
    run(reference_net, reference_opt, 2)
    run(moved_net, moved_opt, 2)
    other = get_backend("cpu", kernels="generic" if moved_net.backend.kernels == "fused" else "fused")
    moved_net.store.to(other)
    moved_net.backend = other
    for opt, net in ((reference_opt, reference_net), (moved_opt, moved_net)):
        for grad in GRADS[2:]:
            net.store.grad[...] = np.array(grad)
            opt.step()
    assert moved_opt._backends == [other]
    np.testing.assert_allclose(moved_net.store.data, reference_net.store.data, rtol=1e-12)


@pytest.mark.parametrize(("cls", "name", "kwargs"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-parameter"])
def test_state_dict_resumes_the_same_trajectory(cls, name, kwargs, flat):
    network = tiny_network()
    optimizer = cls(network.parameters() if flat else network.parameters()[::-1], **kwargs)
    run(network, optimizer, 3)
    saved = optimizer.state_dict()
    assert all(isinstance(array, np.ndarray) for array in saved["state"].values())
    json.dumps({key: value for key, value in saved.items() if key != "state"})  # the rest is JSON
    resumed_net = tiny_network()
    resumed_net.store.load(network.store.data.copy())
    description = json.loads(json.dumps(serialize(optimizer)))
    resumed = from_config(resumed_net.parameters() if flat else resumed_net.parameters()[::-1], description)
    resumed.load_state_dict(saved)
    assert resumed.step_count == 3
    for net, opt in ((network, optimizer), (resumed_net, resumed)):
        for grad in GRADS[3:]:
            net.store.grad[...] = np.array(grad)
            opt.step()
    np.testing.assert_allclose(resumed_net.store.data, network.store.data, rtol=1e-14)
    np.testing.assert_allclose(resumed_net.store.data, reference(name, **_kwargs_for_reference(cls, kwargs)),
                               rtol=1e-12)


def test_load_state_dict_rejects_mismatches_without_changing_anything():
    network = tiny_network()
    optimizer = Adam(network.parameters(), lr=0.01)
    run(network, optimizer, 2)
    before = optimizer.state_dict()
    other = Network([Dense(3, 1)], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="parameters of sizes"):
        optimizer.load_state_dict(Adam(other.parameters(), lr=0.01).state_dict())
    with pytest.raises(ValueError, match="from a 'SGD' optimiser"):
        optimizer.load_state_dict(SGD(tiny_network().parameters()).state_dict())
    with pytest.raises(ValueError, match=r"settings differ in \['amsgrad'\]"):
        optimizer.load_state_dict(Adam(tiny_network().parameters(), amsgrad=True).state_dict())
    with pytest.raises(TypeError, match="expected a dict from state_dict"):
        optimizer.load_state_dict([1, 2])
    after = optimizer.state_dict()
    assert after["step"] == before["step"] == 2
    for key in before["state"]:
        np.testing.assert_array_equal(after["state"][key], before["state"][key])


# --- regularisation ---------------------------------------------------------------------
def test_l1_l2_options_regularise_weights_but_not_biases(kernels):
    network = tiny_network()
    optimizer = SGD(network.parameters(), lr=0.1, l1=0.01, l2=0.2)
    network.store.grad[...] = [0.1, -0.2, 0.3]
    optimizer.step()
    w = np.array([0.5, -1.0])
    expected_w = w - 0.1 * (np.array([0.1, -0.2]) + 0.01 * np.sign(w) + 0.2 * w)
    np.testing.assert_allclose(network.store.data, [*expected_w, 2.0 - 0.1 * 0.3], rtol=1e-15)
    assert optimizer.config()["l1"] == 0.01 and optimizer.l2 == 0.2


def test_l2_option_equals_torch_weight_decay_on_weights_only():
    with_l2, with_decay = tiny_network(), tiny_network()
    run(with_l2, Adam([with_l2.parameters()[0]], lr=0.01, l2=0.1))
    run(with_decay, Adam([with_decay.parameters()[0]], lr=0.01, weight_decay=0.1))
    np.testing.assert_allclose(with_l2.store.data, with_decay.store.data, rtol=1e-14)


def test_regularizer_penalty_and_standalone_gradient(kernels):
    network = tiny_network()
    penalty = regularization_penalty(network.parameters(), l1=0.5, l2=0.2)
    np.testing.assert_allclose(penalty, 0.5 * 1.5 + 0.1 * (0.25 + 1.0), rtol=1e-15)
    network.store.grad[...] = 0.0
    add_regularization_grad(network.parameters(), l1=0.5, l2=0.2)
    np.testing.assert_allclose(network.store.grad, [0.5 + 0.1, -0.5 - 0.2, 0.0], rtol=1e-15)
    regularizer = Regularizer(network.parameters()[::-1], l1=1.0)
    network.store.grad[...] = 0.0
    regularizer.add_grad()
    np.testing.assert_allclose(network.store.grad, [1.0, -1.0, 0.0])


# --- errors ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: SGD(p, lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
        (lambda p: SGD(p, lr=0.1, momentum=-1), ValueError, "Invalid momentum value: -1"),
        (lambda p: SGD(p, lr=0.1, weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires a momentum"),
        (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "zero dampening"),
        (lambda p: AdaGrad(p, lr_decay=-1), ValueError, "Invalid lr_decay value: -1"),
        (lambda p: AdaGrad(p, initial_accumulator_value=-1), ValueError, "Invalid initial_accumulator_value"),
        (lambda p: AdaGrad(p, eps=-1), ValueError, "Invalid epsilon value: -1"),
        (lambda p: RMSProp(p, alpha=-0.5), ValueError, "Invalid alpha value: -0.5"),
        (lambda p: RMSProp(p, momentum=-0.5), ValueError, "Invalid momentum value"),
        (lambda p: Adam(p, betas=(1.0, 0.999)), ValueError, "Invalid beta parameter at index 0: 1.0"),
        (lambda p: Adam(p, betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1: -0.1"),
        (lambda p: Adam(p, betas=0.9), TypeError, r"betas: expected a pair"),
        (lambda p: AdamW(p, eps=-1e-8), ValueError, "Invalid epsilon value"),
        (lambda p: AdamW(p, weight_decay=-1), ValueError, "Invalid weight_decay value"),
        (lambda p: Adam(p, lr="fast"), TypeError, "lr: expected a finite number >= 0, got 'fast'"),
        (lambda p: Adam(p, l1=-1), ValueError, "l1: expected a finite number >= 0"),
        (lambda p: SGD([], lr=0.1), ValueError, "params: expected at least one Parameter"),
        (lambda p: SGD([*p, p[0]], lr=0.1), ValueError, r"params\[2\]: parameter 'weight' appears more"),
        (lambda p: SGD([np.zeros(3)], lr=0.1), TypeError, r"params\[0\]: expected a bpcore Parameter"),
        (lambda p: SGD(3, lr=0.1), TypeError, "params: expected an iterable of bpcore Parameters"),
        (lambda p: from_config(p, {"class": "LBFGS"}), ValueError, "unknown optimiser 'LBFGS'"),
    ],
)
def test_bad_arguments_raise_one_clear_error(make, error, match):
    with pytest.raises(error, match=match):
        make(tiny_network().parameters())


def test_unbuilt_parameters_are_rejected():
    with pytest.raises(ValueError, match=r"params\[0\]: parameter 'weight' has no data yet"):
        SGD(Dense(2, 2).parameters(), lr=0.1)


# --- optional cross-check with PyTorch ------------------------------------------------------
@pytest.mark.parametrize(("cls", "name", "kwargs"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_matches_torch_when_available(cls, name, kwargs):
    torch = pytest.importorskip("torch")
    torch_cls = {"SGD": torch.optim.SGD, "AdaGrad": torch.optim.Adagrad, "RMSProp": torch.optim.RMSprop,
                 "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[cls.__name__]
    network = tiny_network()
    got = run(network, cls(network.parameters(), **kwargs))
    tensor = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    torch_opt = torch_cls([tensor], **kwargs)
    for grad in GRADS:
        tensor.grad = torch.tensor(grad, dtype=torch.float64)
        torch_opt.step()
    np.testing.assert_allclose(got, tensor.detach().numpy(), rtol=1e-13, atol=1e-15)
