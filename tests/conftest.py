"""Shared test set-up: GPU skipping and a clean default device around every test."""

from __future__ import annotations

import os

import pytest

from bpcore.backends import ENV_VAR, probe_cuda, reset_default_device


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` with the probe's reason when no CUDA GPU is usable."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    probe = probe_cuda()
    if probe.count > 0:
        return
    skip = pytest.mark.skip(reason=f"needs a usable CUDA GPU: {probe.reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device_name(request: pytest.FixtureRequest) -> str:
    """Run a test once on the CPU and once on the first GPU (skipped without one)."""
    return request.param


@pytest.fixture(autouse=True)
def reset_device():
    """Restore ``BPCORE_DEVICE`` and the default device after every test."""
    saved = os.environ.get(ENV_VAR)
    yield
    if saved is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = saved
    reset_default_device()
