"""One network, identical on every rank: gradients averaged, parameters broadcast, architecture checked.

These are the pieces ``fit(..., distributed=True)`` is made of, for custom
training loops (GANs, reinforcement learning) as well::

    bpcore.distributed.init()
    net = bpcore.Network(...)
    bpcore.distributed.broadcast_parameters(net)      # everyone starts from rank 0's weights
    for xb, yb in my_share_of_each_batch:
        loss(net.forward(xb, training=True), yb)
        net.zero_grad(); net.backward(loss.backward())
        bpcore.distributed.all_reduce_gradients(net)  # one all-reduce of the flat gradient buffer
        optimizer.step()
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from ..serialization.registry import describe, walk_with_paths
from .collectives import DistributedError
from .context import context


def all_reduce_gradients(network: Any, *, weight: float | None = None) -> None:
    """Average ``network``'s gradients over all ranks: ONE all-reduce of its flat gradient buffer, in place.

    Each rank's gradient is multiplied by ``weight`` (default ``1/world_size``:
    the plain average) before the ranks' gradients are summed.  When ranks
    hold shares of different sizes of one batch whose loss is a mean, pass
    ``weight=share / batch`` so that the result is the gradient of the whole
    batch's mean loss; for a loss with ``reduction="sum"`` pass ``weight=1``.
    """
    ctx = context()
    factor = 1.0 / ctx.world_size if weight is None else float(weight)
    with network.exclusive():
        grad = network.store.grad
        if factor != 1.0:
            grad *= factor
        ctx.collectives_for(network.backend).all_reduce_sum(grad, network.backend)


def broadcast_parameters(network: Any, *, root: int = 0) -> None:
    """Copy rank ``root``'s parameters and layer buffers (BatchNorm's running statistics) to every rank.

    Checks first that every rank holds the same architecture
    (:func:`check_same_network`).
    """
    check_same_network(network)
    with network.exclusive():
        collectives = context().collectives_for(network.backend)
        collectives.broadcast(network.store.data, network.backend, root)
        broadcast_buffers(network, collectives, root)


def broadcast_buffers(network: Any, collectives: Any, root: int = 0) -> None:
    """Copy rank ``root``'s layer buffers to every rank (the caller holds the network)."""
    for _, layer in walk_with_paths(network.layers):
        for name, value in layer.buffers().items():
            if value.flags.c_contiguous:
                collectives.broadcast(value, network.backend, root)
            else:
                copy = value.copy()
                collectives.broadcast(copy, network.backend, root)
                layer.set_buffer(name, copy)


def network_signature(network: Any) -> dict[str, Any]:
    """What must be equal on every rank: dtype, layers and their settings, parameter and buffer shapes."""
    return {
        "dtype": network.dtype.name,
        "parameters": int(network.store.size),
        "layers": [describe(layer, str(i)) for i, layer in enumerate(network.layers)],
        "buffers": [
            [path, name, list(value.shape), str(value.dtype)]
            for path, layer in walk_with_paths(network.layers)
            for name, value in layer.buffers().items()
        ],
    }


def _summary(signature: dict[str, Any]) -> str:
    kinds = ", ".join(layer["type"] for layer in signature["layers"])
    count, dtype = signature["parameters"], signature["dtype"]
    return f"{len(signature['layers'])} layers ({kinds}) with {count:,} {dtype} parameters"


def check_same_network(network: Any) -> None:
    """Raise DistributedError on every rank unless all ranks hold the same architecture.

    Collective: every rank must call it.  Compares a digest of
    :func:`network_signature` (one small all-gather).
    """
    ctx = context()
    signature = network_signature(network)
    digest = hashlib.sha256(json.dumps(signature, sort_keys=True, default=str).encode()).hexdigest()
    everyone = ctx.comm.allgather((digest, _summary(signature)))
    differ = [r for r, (theirs, _) in enumerate(everyone) if theirs != everyone[0][0]]
    if differ:
        other = differ[0]
        what = everyone[other][1]
        if what == everyone[0][1]:
            what += " (the same layer types, but their settings or buffers differ)"
        raise DistributedError(
            f"the ranks hold different networks: rank 0 has {everyone[0][1]}; rank {other} has {what}"
            f"{f' (and {len(differ) - 1} more ranks differ)' if len(differ) > 1 else ''}. Every rank must "
            "build the same architecture with the same dtype"
        )


def fingerprint(*arrays: Any, rows: int = 64) -> str:
    """A digest of up to ``rows`` evenly spaced rows of each array: do the ranks hold the same data?"""
    digest = hashlib.sha256()
    for array in arrays:
        n = int(array.shape[0])
        index = np.unique(np.linspace(0, max(n - 1, 0), num=min(rows, n), dtype=np.int64))
        sample = array[index]
        host = sample.get() if hasattr(sample, "get") and not isinstance(sample, np.ndarray) else sample
        digest.update(str((array.shape, str(array.dtype))).encode())
        digest.update(np.ascontiguousarray(host).tobytes())
    return digest.hexdigest()[:16]


__all__ = [
    "DistributedError",
    "all_reduce_gradients",
    "broadcast_buffers",
    "broadcast_parameters",
    "check_same_network",
    "fingerprint",
    "network_signature",
]
