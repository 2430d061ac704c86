"""The optimiser step over the flat parameter buffer, through the public API, on every device.

One ``optimizer.step()`` over all parameters of the MNIST-shaped MLP (235,146)
and of the wide one (20.1 million, slow), fused kernels against the generic
path, beside PyTorch's fused Adam over the same number of parameters where
PyTorch is installed.  Gradients are random and non-zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import estimate, iterations_for, run_timed, synchronizer

from bpcore.bench.contenders import kernel_mode
from bpcore.bench.models import get_model

MODELS = ["mnist", pytest.param("wide", marks=pytest.mark.slow)]
OPTIMIZERS = {
    "Adam": lambda optim, params: optim.Adam(params, lr=1e-3),
    "AdamW": lambda optim, params: optim.AdamW(params, lr=1e-3, weight_decay=1e-2),
    "SGD-momentum": lambda optim, params: optim.SGD(params, lr=1e-2, momentum=0.9),
    "RMSProp": lambda optim, params: optim.RMSProp(params, lr=1e-3),
}


@pytest.mark.parametrize("mode", ["fused", "generic"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("model", MODELS)
def test_optimizer_step(benchmark: Any, device: str, model: str, name: str, mode: str) -> None:
    from bpcore import optim
    from bpcore.network import Network

    spec = get_model(model)
    with kernel_mode(mode):
        network = Network(spec.layers(), dtype="float32", seed=0, device=device)
    rng = np.random.default_rng(0)
    network.store.grad[...] = network.backend.asarray(
        rng.normal(0.0, 1e-2, network.store.size).astype(np.float32), dtype=np.float32)
    optimizer = OPTIMIZERS[name](optim, network.parameters())
    synchronize = synchronizer(device)
    seconds = estimate(optimizer.step, synchronize)
    benchmark.group = f"optimizer {device} {model} ({network.store.size:,} parameters)"
    run_timed(benchmark, optimizer.step, synchronize, rounds=10, iterations=iterations_for(seconds),
              settle_seconds=0.05)
    benchmark.extra_info.update(parameters=network.store.size, kernels=mode)


@pytest.mark.parametrize("model", MODELS)
def test_torch_fused_adam(benchmark: Any, device: str, model: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: no baseline")
    torch_device = torch.device("cpu") if device == "cpu" else torch.device("cuda", int(device.split(":")[1]))
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("this PyTorch build has no CUDA support")
    size = get_model(model).parameter_count
    parameter = torch.nn.Parameter(torch.randn(size, device=torch_device) * 0.1)
    parameter.grad = torch.randn(size, device=torch_device) * 1e-2
    optimizer = torch.optim.Adam([parameter], lr=1e-3, fused=True)
    def synchronize() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)

    seconds = estimate(optimizer.step, synchronize)
    benchmark.group = f"optimizer {device} {model} ({size:,} parameters)"
    run_timed(benchmark, optimizer.step, synchronize, rounds=10, iterations=iterations_for(seconds),
              settle_seconds=0.05)
    benchmark.extra_info.update(parameters=size, implementation=f"torch {torch.__version__} Adam(fused=True)")
