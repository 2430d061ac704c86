"""Whole networks of the examples on the CUDA code path, without a GPU, against the CPU backend.

The single-layer tests (test_recurrent_launches.py, test_cupy_semantics.py,
test_conv_cuda.py) check each layer's CUDA path alone.  Here the networks of
the examples run end to end on bpcore's CUDA backend over the host stand-ins
of ``launch_counting`` (a CuPy-like array module, every ``bp_*`` kernel
driven through CuPy's own call path and run by its body compiled for the
host; the reductions and the row and column kernels run by their host bodies),
installed as the ``cuda`` device, so that ``Network(device="cuda")``,
``clone()``, ``fit`` and the losses and optimisers take the path they take on
a GPU (the examples' own code where it can be called: ``DoubleDQN``,
``WGAN``, ``digits_cnn``, ``held_out_loss``, ``sample``).  The
same seed on the CPU gives the same weights (and, with the stand-in's
generator, the same dropout masks), so the outputs, the loss, the parameter
gradients and the parameters after optimiser steps must agree: to rounding
in float64, loosely in float32.  What this catches is a GPU-only bug in how
the layers, losses and optimisers are combined (a workspace shared between
layers, a mask or state carried wrongly, a kernel given a view it cannot
take, a loss or an optimiser taking the host path on device arrays).  What it
cannot catch: anything of the device itself (asynchronous streams, memory
limits, NVRTC compilation: test_cuda_codegen.py), cuRAND's numbers (the
stand-in draws NumPy's so that the masks match), code that tells device from
host arrays by ``isinstance(x, numpy.ndarray)`` (the stand-in's arrays are
NumPy subclasses; ``cupy.ndarray`` is not), and CuPy functions NumPy has but
CuPy lacks (the stand-in's module is NumPy's).
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import pickle
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from launch_counting import CountingBackend, DeviceArray, build_full_provider, counting

import bpcore
from bpcore.backends import KERNEL_MODES, Device, device_scope
from bpcore.backends import device as device_module
from bpcore.layers import (
    GELU,
    GRU,
    LSTM,
    BatchNorm,
    Bidirectional,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    ReLU,
    Tanh,
)
from bpcore.losses import MSE, CrossEntropy, Huber
from bpcore.optim import SGD, Adam, AdamW, clip_grad_norm, clip_grad_value

ROOT = Path(__file__).resolve().parent.parent
COMPILER = shutil.which("g++") or shutil.which("c++")
DTYPES = ["float64", "float32"]
TOLERANCES = {"float64": (1e-10, 1e-12), "float32": (2e-4, 2e-5)}  # (rtol, atol)


@pytest.fixture(scope="module")
def counting_backend(tmp_path_factory: pytest.TempPathFactory) -> CountingBackend:
    """bpcore's CUDA backend over the stand-ins, with every CUDA kernel compiled for the host."""
    if COMPILER is None:
        pytest.skip("no host C++ compiler (g++) to build the CUDA kernels for the CPU")
    provider, _recorder = build_full_provider(tmp_path_factory.mktemp("networks"), COMPILER)
    return CountingBackend(provider)


@pytest.fixture
def gpu(counting_backend: CountingBackend, monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingBackend]:
    """The stand-in backend as the machine's one GPU: ``device="cuda"`` resolves to it (any kernel mode)."""
    monkeypatch.setattr(device_module, "probe_cuda", lambda: device_module.CudaProbe(1, "1 CUDA GPU(s)"))
    for mode in KERNEL_MODES:
        monkeypatch.setitem(bpcore.backends._backends, (Device("cuda", 0), mode), counting_backend)
    yield counting_backend


def example(name: str) -> Any:
    """The module of ``examples/<name>.py`` (imported once, as its own script imports its neighbours)."""
    module_name = f"_example_{name}"
    if module_name not in sys.modules:
        folder = str(ROOT / "examples")
        sys.path.insert(0, folder)
        try:
            spec = importlib.util.spec_from_file_location(module_name, ROOT / "examples" / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(folder)
    return sys.modules[module_name]


def host(array: Any) -> Any:
    """A NumPy copy of a device (stand-in) or host array; floats and None as they are."""
    if array is None or isinstance(array, float):
        return array
    return np.array(array.get() if isinstance(array, DeviceArray) else array)


def compare(cpu: list[tuple[str, Any]], cuda: list[tuple[str, Any]], dtype: str) -> None:
    """Every recorded value of the CUDA run equals the CPU run's (tolerance by dtype)."""
    assert [name for name, _ in cuda] == [name for name, _ in cpu]
    for (name, expected), (_, got) in zip(cpu, cuda, strict=True):
        rtol, atol = TOLERANCES[dtype]
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=name)


def both(run: Callable[[str], list[tuple[str, Any]]], dtype: str) -> list[tuple[str, str]]:
    """``run`` on the CPU and on the stand-in GPU, compared; returns the GPU run's launches."""
    cpu = run("cpu")
    with counting(require_scope=True) as launches:  # and every launch with the GPU current
        cuda = run("cuda")
    compare(cpu, cuda, dtype)
    return launches


def assert_launched(launches: list[tuple[str, str]], names: set[str]) -> None:
    """The CUDA path ran: each of ``names`` was launched (a network that fell back to NumPy would not)."""
    launched = {name for kind, name in launches if kind == "kernel"}
    assert names <= launched, sorted(launched)


def steps_seen(network: bpcore.Network, x: Any, y: Any, loss: Any, optimizer: Any, *,
               input_grad: bool = False) -> list[tuple[str, Any]]:
    """Two training steps (forward, loss, backward, optimiser) and what each gave, on the host."""
    seen: list[tuple[str, Any]] = []
    for step in range(2):
        with network.step():
            out = network.forward(x, training=True)
            value = loss(out, y)
            network.zero_grad()
            grad_in = network.backward(loss.backward())
            seen += [(f"out {step}", host(out)), (f"loss {step}", float(value))]
            if input_grad:
                seen.append((f"grad_in {step}", host(grad_in)))
            seen.append((f"grad {step}", host(network.store.grad)))
            optimizer.step()
        seen.append((f"parameters {step}", host(network.store.data)))
    return seen


# --- 1. the text classifier ------------------------------------------------------------------------
def text_classifier(vocabulary: int, classes: int, dtype: str, device: str) -> bpcore.Network:
    """examples/text_classification.py's ``classifier``, smaller and in ``dtype``."""
    e, h = 6, 4
    return bpcore.Network(
        [Embedding(vocabulary, e, padding_idx=0), Dropout(0.3),
         Concatenate([Bidirectional(GRU(e, h, return_sequences=True)), GlobalMaxPool1D()], GlobalAvgPool1D()),
         Dropout(0.3), Dense(2 * h + e, classes)],
        dtype=dtype, seed=2, device=device,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_text_classifier_trains_as_on_the_cpu(dtype: str, gpu: CountingBackend) -> None:
    # CrossEntropy and two AdamW steps on a padded batch whose rows have 6, 1, 3 and 4 words (the
    # padding masked from the embedding through both GRU directions and both poolings).
    vocabulary, classes = 13, 3
    rng = np.random.default_rng(0)
    lengths = [6, 1, 3, 4]
    x = np.zeros((len(lengths), max(lengths)), np.int64)
    for row, length in enumerate(lengths):
        x[row, :length] = rng.integers(2, vocabulary, length)
    y = np.array([0, 2, 1, 2])

    def run(device: str) -> list[tuple[str, Any]]:
        network = text_classifier(vocabulary, classes, dtype, device)
        loss, optimizer = CrossEntropy(), AdamW(network.parameters(), lr=0.01, weight_decay=0.3)
        seen = steps_seen(network, x, y, loss, optimizer)
        seen.append(("predict", host(network.predict(x))))
        # the padding changes nothing: row 1 alone, unpadded, is predicted the same
        seen.append(("one word", host(network.predict(x[1:2, :1]))))
        # and an epoch of fit as the example runs it: shuffled batches staged onto the device, dropout
        # streams seeded per epoch, the validation pass and the metrics
        history = network.fit(x, y, loss=loss, optimizer=optimizer, epochs=1, batch_size=3,
                              metrics=["accuracy"], validation_data=(x, y), seed=7, verbose=0)
        seen += [(key, history[key][-1]) for key in sorted(history.keys())]
        seen.append(("parameters after fit", host(network.store.data)))
        return seen

    launches = both(run, dtype)
    assert_launched(launches, {"bp_gru_cell_forward", "bp_gru_cell_backward", "bp_embedding_backward",
                               "bp_dropout_forward", "bp_softmax_cross_entropy_index_forward",
                               "bp_adam_step"})


# --- 2. the character language model ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_char_lm_trains_by_truncated_bptt_as_on_the_cpu(dtype: str, gpu: CountingBackend) -> None:
    # examples/char_lm.py's model and loop: Embedding -> LSTM(return_sequences=True) -> Dense, the loss
    # at every step, the gradient clipped by norm (a limit the gradient exceeds), Adam, and the LSTM's
    # final state made the next batch's initial state; the state reset at the next epoch; then the
    # example's own held-out loss (the state carried between chunks) and sampling.
    vocabulary, streams, steps = 11, 3, 5
    text = np.random.default_rng(3).integers(0, vocabulary, (streams, 3 * steps + 2))  # 3 batches

    def run(device: str) -> list[tuple[str, Any]]:
        lstm = LSTM(4, 6, return_sequences=True)
        network = bpcore.Network([Embedding(vocabulary, 4), lstm, Dense(6, vocabulary)],
                                 dtype=dtype, seed=5, device=device)
        optimizer, loss = Adam(network.parameters(), lr=0.01), CrossEntropy()
        seen: list[tuple[str, Any]] = []
        for epoch in range(2):
            lstm.reset_state()
            for start in range(0, text.shape[1] - steps - 1, steps):
                x, y = text[:, start : start + steps], text[:, start + 1 : start + steps + 1]
                with network.step():
                    value = loss(network.forward(x, training=True), y)
                    network.zero_grad()
                    network.backward(loss.backward())
                    norm = clip_grad_norm(network.parameters(), 0.1)
                    clipped = np.linalg.norm(host(network.store.grad))
                    assert float(norm) > 0.1 and np.isclose(clipped, 0.1, rtol=1e-5)  # the clip acted
                    seen += [(f"loss {epoch} {start}", float(value)), (f"norm {epoch} {start}", host(norm)),
                             (f"clipped {epoch} {start}", host(network.store.grad))]
                    optimizer.step()
                lstm.initial_state = lstm.state  # truncated BPTT: the next batch continues each stream
                seen += [(f"parameters {epoch} {start}", host(network.store.data)),
                         (f"state {epoch} {start}", np.concatenate([host(p) for p in lstm.state]))]
        char_lm = example("char_lm")
        seen.append(("held-out loss", char_lm.held_out_loss(network, lstm, text, steps)))
        # sampling one character at a time from a one-stream state, as the example ends
        sampled = char_lm.sample(network, lstm, "ab", 6, "abcdefghijk", 0.7, np.random.default_rng(0))
        seen.append(("sampled", np.array([ord(c) for c in sampled])))
        return seen

    launches = both(run, dtype)
    assert_launched(launches, {"bp_lstm_cell_forward", "bp_lstm_cell_backward", "bp_embedding_backward",
                               "bp_softmax_cross_entropy_index_backward", "bp_adam_step"})


# --- 3. the digits CNN -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_digits_cnn_trains_as_on_the_cpu(dtype: str, gpu: CountingBackend) -> None:
    # examples/cnn_digits.py's network (Conv 1->16 + ReLU + MaxPool 2, Conv 16->32 + ReLU, Flatten,
    # Dense 512->10) on 8x8 images: the first conv with its ReLU and pooling fused as on a GPU, the
    # second with its ReLU; CrossEntropy and two AdamW steps, as the example trains it.
    digits_cnn = example("cnn_digits").digits_cnn
    rng = np.random.default_rng(6)
    x = rng.random((5, 1, 8, 8))
    y = np.array([3, 0, 9, 3, 7])

    def run(device: str) -> list[tuple[str, Any]]:
        layers = digits_cnn(seed=1, device="cpu").layers  # the example's layers, built again in dtype
        network = bpcore.Network([type(layer)(**layer.config()) for layer in layers], dtype=dtype, seed=1,
                                 device=device)
        if device == "cuda":
            assert network.layers[0].pool is not None  # the GPU plan: ReLU and MaxPool2D in the conv
        loss, optimizer = CrossEntropy(), AdamW(network.parameters(), lr=0.01, weight_decay=0.01)
        seen = steps_seen(network, x, y, loss, optimizer, input_grad=True)
        seen.append(("predict", host(network.predict(x, batch_size=2))))
        return seen

    launches = both(run, dtype)
    assert_launched(launches, {"bp_im2col", "bp_col2im", "bp_max_pool2d_forward", "bp_max_pool2d_backward",
                               "bp_softmax_cross_entropy_index_forward", "bp_adam_step"})


# --- 4. the custom loops of the reinforcement-learning and GAN examples ----------------------------
def test_the_double_dqn_updates_as_on_the_cpu(gpu: CountingBackend) -> None:
    # examples/dqn_cartpole.py's DoubleDQN (its float32 networks): the target a clone() of the online
    # network, each update the Double-Q target, the Huber loss of the chosen actions (importance-
    # weighted), backward into the parameters only, clipping, Adam and the Polyak copy_from(tau); the
    # batches from a prioritised replay buffer on the device, their priorities set from the TD errors;
    # then the hard update, a clone() kept as the best network, and a frozen clone that takes no step.
    dqn = example("dqn_cartpole")
    rng = np.random.default_rng(8)
    observations, next_observations = rng.standard_normal((2, 24, 4))
    actions, rewards, dones = rng.integers(0, 2, 24), rng.standard_normal(24), rng.random(24) < 0.2

    def run(device: str) -> list[tuple[str, Any]]:
        agent = dqn.DoubleDQN(4, 2, hidden=16, lr=1e-2, tau=0.25, max_grad_norm=0.5, seed=3, device=device)
        buffer = dqn.PrioritizedReplayBuffer(32, (4,), alpha=0.6, beta=0.4, beta_steps=4, device=device,
                                             seed=3)
        buffer.add(observations, actions, rewards, next_observations, dones)
        seen: list[tuple[str, Any]] = [("target at the start", host(agent.target.store.data))]
        for step in range(3):
            batch = buffer.sample(8)
            td_errors = agent.update(batch)
            buffer.update_priorities(batch.indices, td_errors)
            seen += [(f"td errors {step}", host(td_errors)), (f"grad {step}", host(agent.online.store.grad)),
                     (f"online {step}", host(agent.online.store.data)),
                     (f"target {step}", host(agent.target.store.data)),
                     (f"priorities {step}", buffer.tree.get(np.arange(24)))]
        seen.append(("greedy action", float(agent.act(observations[0]))))
        agent.target.copy_from(agent.online)  # the hard update
        seen.append(("hard target", host(agent.target.store.data)))
        best = agent.online.clone()
        assert best.backend is agent.online.backend and type(best.store.data) is type(agent.online.store.data)
        frozen = agent.online.clone().freeze()
        optimizer = dqn.Adam(frozen.parameters(), lr=1.0)
        frozen.forward(frozen.as_input(observations), training=True)
        grad_in = frozen.backward(np.ones((24, 2), np.float32))
        assert not host(frozen.store.grad).any()
        optimizer.step()
        np.testing.assert_array_equal(host(frozen.store.data), host(best.store.data))
        frozen.unfreeze()
        seen += [("frozen input grad", host(grad_in)), ("best", host(best.predict(observations)))]
        return seen

    launches = both(run, "float32")
    assert_launched(launches, {"bp_bias_relu_forward", "bp_polyak_update", "bp_adam_step"})


def mlp(widths: list[int], dtype: str, seed: int, device: str) -> bpcore.Network:
    """examples/gan.py's ``mlp`` (He-uniform Dense layers with ReLU between), in ``dtype``."""
    layers: list[Any] = []
    for position, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        layers.append(Dense(width_in, width_out, init="he_uniform"))
        if position < len(widths) - 2:
            layers.append(ReLU())
    return bpcore.Network(layers, dtype=dtype, seed=seed, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_wgan_iterates_as_on_the_cpu(dtype: str, gpu: CountingBackend) -> None:
    # examples/gan.py's WGAN: critic RMSProp steps on one batch of real and generated samples, the
    # critic's weights clamped after each, then the generator's step through the critic by
    # backward(parameter_grads=False); the noise drawn into a preallocated buffer by the backend's
    # generator.  Then the same generator step through a FROZEN critic: dLoss/dInput only.
    gan = example("gan")
    real = np.random.default_rng(9).standard_normal((8, 2)).astype(dtype)

    def run(device: str) -> list[tuple[str, Any]]:
        g, d = mlp([3, 16, 2], dtype, 0, device), mlp([2, 16, 1], dtype, 1, device)
        wgan = gan.WGAN(g, d, batch_size=8, lr=1e-3, clip=0.05, critic_steps=2, seed=4)
        seen: list[tuple[str, Any]] = []
        for step in range(2):
            wgan.iteration(lambda n: d.backend.asarray(real[:n]))
            seen += [(f"generator {step}", host(g.store.data)), (f"critic {step}", host(d.store.data)),
                     (f"generator grad {step}", host(g.store.grad)), (f"noise {step}", host(wgan.noise))]
            assert np.abs(host(d.store.data)).max() <= 0.05  # clamped
        critic_grad = host(d.store.grad)
        d.freeze()
        fake = g.forward(wgan._draw_noise(), training=True, check=False)
        d.forward(fake, check=False)
        through_critic = d.backward(wgan.generator_grad, check=False)
        g.backward(through_critic, check=False, input_grad=False, accumulate=False)
        wgan.g_optimizer.step()
        d.unfreeze()
        np.testing.assert_array_equal(host(d.store.grad), critic_grad)  # the frozen critic: no gradient
        seen += [("through the frozen critic", host(through_critic)), ("generator", host(g.store.data)),
                 ("samples", wgan.sample(5))]
        return seen

    launches = both(run, dtype)
    assert_launched(launches, {"bp_rmsprop_step", "bp_clamp_inplace", "bp_bias_relu_forward"})


@pytest.mark.parametrize("dtype", DTYPES)
def test_copies_of_a_network_with_buffers_follow_the_cpu(dtype: str, gpu: CountingBackend) -> None:
    # The copies the custom loops make, of a network whose BatchNorm has buffers (the running
    # statistics, which copy_from copies too) and whose Dropout draws: clone(), deepcopy, pickle,
    # copy_from(tau) into a zeroed copy, a moment on the CPU and back; SGD with momentum, Huber
    # and clipping before, and evaluate and fit after.
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 4)).astype(dtype), rng.standard_normal((10, 3)).astype(dtype)

    def run(device: str) -> list[tuple[str, Any]]:
        network = bpcore.Network([Dense(4, 16), ReLU(), BatchNorm(16), Dense(16, 8), Tanh(), Dropout(0.3),
                                  Dense(8, 3)], dtype=dtype, seed=0, device=device)
        optimizer, loss = SGD(network.parameters(), lr=0.1, momentum=0.9), Huber()
        seen: list[tuple[str, Any]] = []
        for step in range(2):
            out = network.forward(x, training=True)
            value = loss(out, y)
            network.zero_grad()
            network.backward(loss.backward())
            clip_grad_norm(network.parameters(), 0.3)
            optimizer.step()
            seen += [(f"out {step}", host(out)), (f"loss {step}", float(value)),
                     (f"parameters {step}", host(network.store.data))]
        soft = network.clone()
        soft.store.load(np.zeros(soft.store.size))
        soft.copy_from(network, tau=0.25)
        seen.append(("copy_from(tau=0.25)", host(soft.store.data)))
        seen += [(f"copied buffer {name}", host(value)) for layer in soft.walk()
                 for name, value in layer.buffers().items()]
        twins = {"deepcopy": copy.deepcopy(network), "pickle": pickle.loads(pickle.dumps(network))}
        for how, twin in twins.items():
            assert twin.backend is network.backend
            seen.append((how, host(twin.predict(x))))
        seen.append(("evaluate", network.evaluate(x, y, loss=MSE())["loss"]))
        history = network.fit(x, y, loss=MSE(), optimizer=Adam(network.parameters()), epochs=2, batch_size=4,
                              seed=3, verbose=0)
        seen += [("fit", history["loss"][-1]), ("after fit", host(network.store.data))]
        network.to("cpu")
        seen.append(("on the cpu", network.predict(x)))
        network.to(device)
        seen.append(("back", host(network.predict(x))))
        return seen

    launches = both(run, dtype)
    assert_launched(launches, {"bp_batchnorm_forward_train_stats", "bp_polyak_update",
                               "bp_sgd_step_momentum"})


# --- 6. GELU in both forms, and BatchNorm on one image ---------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_and_a_one_image_batchnorm_train_as_on_the_cpu(dtype: str, gpu: CountingBackend) -> None:
    # The exact GELU (erf) and the tanh form, each fused into its Dense as on a GPU; then a convolution with
    # a BatchNorm trained one image at a time, which normalises over the image's pixels as PyTorch does.
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((6, 5)) * 2, np.array([0, 2, 1, 1, 0, 2])
    images, labels = rng.standard_normal((1, 2, 4, 4)), np.array([1])

    def run(device: str) -> list[tuple[str, Any]]:
        seen: list[tuple[str, Any]] = []
        for form in ("none", "tanh"):
            network = bpcore.Network([Dense(5, 7), GELU(form), Dense(7, 3), GELU(form), Dense(3, 3)],
                                     dtype=dtype, seed=4, device=device)
            assert network.layers[0].activation is not None  # fused into the Dense
            seen += [(f"{form}: {name}", value) for name, value in steps_seen(
                network, x, y, CrossEntropy(), Adam(network.parameters(), lr=0.05), input_grad=True)]
        network = bpcore.Network([Conv2D(2, 3, 3, padding=1), BatchNorm(3), ReLU(), GlobalAvgPool2D(),
                                  Dense(3, 2)], dtype=dtype, seed=5, device=device)
        seen += [(f"one image: {name}", value) for name, value in steps_seen(
            network, images, labels, CrossEntropy(), SGD(network.parameters(), lr=0.1), input_grad=True)]
        seen += [(f"one image: {name}", host(value)) for name, value in network.layers[1].buffers().items()]
        return seen

    launches = both(run, dtype)
    assert_launched(launches, {"bp_bias_gelu_erf_forward", "bp_gelu_erf_backward", "bp_bias_gelu_forward",
                               "bp_gelu_backward", "bp_batchnorm_forward_train_stats"})


# --- 7. an Embedding called by hand with narrow integer indices -------------------------------------
@pytest.mark.parametrize("index_dtype", ["int32", "uint8"])
def test_an_embedding_called_by_hand_takes_any_integer_indices(index_dtype: str,
                                                                gpu: CountingBackend) -> None:
    # A network converts its input to int64; a layer called by hand gets the caller's dtype, which
    # CuPy's scatter-add kernel (raw int64 index) would refuse with "Type is mismatched".
    rng = np.random.default_rng(10)
    index = rng.integers(0, 9, (4, 6)).astype(index_dtype)
    grad_out = rng.standard_normal((4, 6, 3)).astype(np.float32)

    def run(device: str) -> list[tuple[str, Any]]:
        network = bpcore.Network([Embedding(9, 3, padding_idx=2)], dtype="float32", seed=6, device=device)
        layer, backend = network.layers[0], network.backend
        with device_scope(backend):  # a layer called by hand runs on the GPU its caller makes current
            out = layer.forward(backend.asarray(index), training=True)
            layer.backward(backend.asarray(grad_out))
        return [("out", host(out)), ("weight grad", host(layer.weight.grad))]

    assert_launched(both(run, "float32"), {"bp_embedding_backward"})


# --- 8. a custom loop outside network.step(): every launch with the network's GPU current ----------
def test_the_standalone_callables_launch_with_the_arrays_gpu_current(gpu: CountingBackend) -> None:
    # On a machine of several GPUs a network on cuda:1 and a thread whose current GPU is 0: a loss, a
    # clipping or a Q-learning helper called outside network.step() must still make GPU 1 current for
    # its own launches (the stand-in raises for a launch made while no backend's GPU is current).
    from bpcore.rl import ChosenHuber, DoubleQTarget

    rng = np.random.default_rng(12)
    x, labels, targets = rng.standard_normal((6, 4)), rng.integers(0, 3, 6), rng.standard_normal((6, 3))
    actions, rewards, dones = rng.integers(0, 3, 6), rng.standard_normal(6), (rng.random(6) < 0.3) * 1.0

    def run(device: str) -> list[tuple[str, Any]]:
        network = bpcore.Network([Dense(4, 8), Tanh(), Dense(8, 3)], dtype="float32", seed=7, device=device)
        optimizer = Adam(network.parameters(), lr=0.01)
        backend = network.backend
        seen: list[tuple[str, Any]] = []
        with counting(require_scope=device == "cuda"):
            xb = network.as_input(x)
            # Targets from the host, then on the device (checked there: NaN, label range, ignore_index).
            cases = [(CrossEntropy(), labels), (MSE(), targets), (Huber(), targets),
                     (CrossEntropy(ignore_index=1), backend.asarray(labels)),
                     (MSE(), backend.asarray(targets))]
            for loss, y in cases:
                out = network.forward(xb, training=True)
                value = loss(out, y)
                network.zero_grad()
                network.backward(loss.backward())
                seen += [(f"{loss!r}", float(value)), (f"{loss!r} grad", host(network.store.grad))]
            seen.append(("norm 2", float(clip_grad_norm(network.parameters(), 0.5))))
            seen.append(("norm 1", float(clip_grad_norm(network.parameters(), 0.5, norm_type=1.0))))
            clip_grad_value(network.parameters(), 0.01)
            optimizer.step()
            seen.append(("parameters", host(network.store.data)))
            q = network.forward(xb, training=True)
            next_q = network.predict(x)
            td_target = DoubleQTarget(0.9)(backend.asarray(next_q), backend.asarray(next_q), rewards, dones)
            chosen = ChosenHuber()
            seen += [("double q", host(td_target)), ("chosen huber", float(chosen(q, actions, td_target)))]
            seen += [("chosen grad", host(chosen.backward())), ("td errors", host(chosen.td_errors))]
            optimizer.zero_grad()
            seen.append(("zeroed", host(network.store.grad)))
            checked = bpcore.Network([Dense(4, 3), Tanh()], dtype="float64", seed=8, device=device)
            error = bpcore.gradcheck(checked, x, y=labels, loss=CrossEntropy(), seed=0)
            seen.append(("gradcheck", error < 1e-6))
        return seen

    compare(run("cpu"), run("cuda"), "float32")


# --- 9. a recurrent layer called by hand with a host mask -------------------------------------------
def test_a_recurrent_layer_called_by_hand_takes_a_host_mask(gpu: CountingBackend) -> None:
    # mask_from_lengths gives a NumPy mask for host lengths; CuPy refuses a host array assigned into a
    # device one, so the layer moves the mask to its device itself.
    from bpcore.layers import mask_from_lengths

    rng = np.random.default_rng(13)
    x, grad_out = rng.standard_normal((4, 6, 3)), rng.standard_normal((4, 6, 5))
    mask = mask_from_lengths([6, 2, 4, 1], 6)

    def run(device: str) -> list[tuple[str, Any]]:
        network = bpcore.Network([GRU(3, 5, return_sequences=True)], dtype="float64", seed=9, device=device)
        layer, backend = network.layers[0], network.backend
        with device_scope(backend):
            out = layer.forward(backend.asarray(x), True, mask=mask)
            grad_in = layer.backward(backend.asarray(grad_out))
        return [("out", host(out)), ("grad in", host(grad_in)), ("grad", host(network.store.grad))]

    assert_launched(both(run, "float64"), {"bp_gru_cell_forward", "bp_gru_cell_backward"})


def test_public_helpers_make_the_arrays_gpu_current_before_launching(gpu: CountingBackend) -> None:
    # CuPy launches on the calling thread's current GPU: a cuda:1 network's arrays used from a thread
    # whose current GPU is 0 fail (no peer access) or are computed over the link.  Each public entry
    # point below launches device work, so each must make its arrays' GPU current itself.
    from bpcore.layers import mask_from_lengths
    from bpcore.optim import AdaGrad, regularization_penalty

    network = bpcore.Network([Dense(3, 4), ReLU(), Dense(4, 2)], device="cuda", dtype="float64", seed=0)
    target = gpu.asarray(np.array([[0.5, 1.0], [2.0, -1.0]]))
    with counting(require_scope=True) as launches:
        optimizer = AdaGrad(network.parameters(), lr=0.1, initial_accumulator_value=0.1)
        optimizer.load_state_dict(optimizer.state_dict())
        penalty = regularization_penalty(network.parameters(), l1=0.01, l2=0.1)
        MSE().check_target(target, (2, 2))
        mask = mask_from_lengths(gpu.asarray(np.array([0, 2, 3])), 3)
    assert {"fill"} <= {name for _, name in launches}, launches  # the accumulator's non-zero fill
    weights = [host(p.data) for p in network.parameters() if p.decay]
    expected = sum(0.01 * np.abs(w).sum() + 0.05 * (w * w).sum() for w in weights)
    np.testing.assert_allclose(host(penalty), expected, rtol=1e-12)
    np.testing.assert_array_equal(host(mask), [[False] * 3, [True, True, False], [True] * 3])
    assert host(optimizer.state_dict()["state"]["sum"]).min() == 0.1
