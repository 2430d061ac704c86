"""What users would pick instead, each in its strongest plain form.

* ``numpy-naive``: a ReLU MLP the way the classic tutorials write it:
  float64, a new temporary array for every operation, one Adam update per
  parameter array.
* ``torch-adam-fused`` / ``torch-adam-default``: PyTorch eager with
  ``nn.Sequential``, ``F.cross_entropy`` and index slicing (not a DataLoader,
  which is slower), with ``Adam(fused=True)`` (its fastest CPU setting) and
  with Adam's default implementation.
* ``sklearn``: scikit-learn's ``MLPClassifier`` (Adam, no L2 penalty, no
  shuffling), trained by ``partial_fit`` on the same batches, whole passes
  over the synthetic set per call (as ``fit`` does per epoch); it trains in
  float32 when given float32.

Every baseline uses Adam with lr=1e-3 and the same layer sizes, and is
optional: :func:`availability` says which are installed.
"""

from __future__ import annotations

import importlib.util
import itertools
from typing import Any

import numpy as np

from .contenders import LEARNING_RATE, BatchCycle, Contender
from .models import AnyModel, ModelSpec, SyntheticData
from .timing import HostClock

BASELINES = ("numpy-naive", "torch-adam-fused", "torch-adam-default", "sklearn")
CPU_ONLY = ("numpy-naive", "sklearn")


def availability() -> dict[str, str | None]:
    """For each baseline, ``None`` if it can run here, else why not."""
    torch = None if importlib.util.find_spec("torch") else "PyTorch is not installed (pip install torch)"
    sklearn = None if importlib.util.find_spec("sklearn") else (
        "scikit-learn is not installed (pip install scikit-learn)"
    )
    return {"numpy-naive": None, "torch-adam-fused": torch, "torch-adam-default": torch, "sklearn": sklearn}


def runs_on(name: str, device: str) -> bool:
    """Whether baseline ``name`` has a version for ``device``."""
    return device == "cpu" or name not in CPU_ONLY


def build(name: str, spec: AnyModel, data: SyntheticData, device: str, dtype: str) -> Contender:
    """Baseline ``name`` for one model, batch size, device and dtype."""
    if name in ("torch-adam-fused", "torch-adam-default"):
        return torch_step(spec, data, device, dtype, fused=name == "torch-adam-fused")
    if name in ("numpy-naive", "sklearn") and not isinstance(spec, ModelSpec):
        raise ValueError(f"{name} has no convolutional network; it runs the MLPs only")
    if name == "numpy-naive" and isinstance(spec, ModelSpec):
        return numpy_naive(spec, data)
    if name == "sklearn" and isinstance(spec, ModelSpec):
        return sklearn_step(spec, data, dtype)
    raise ValueError(f"baselines: expected names from {BASELINES}, got {name!r}")


# --- the tutorial NumPy network ------------------------------------------------
class NaiveMLP:
    """A ReLU MLP with softmax cross-entropy and Adam, in tutorial style (float64)."""

    def __init__(self, sizes: tuple[int, ...], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        shapes = list(itertools.pairwise(sizes))
        self.weights = [rng.uniform(-1, 1, shape) * np.sqrt(6.0 / sum(shape)) for shape in shapes]
        self.biases = [np.zeros(o) for o in sizes[1:]]
        self.m = [np.zeros_like(p) for p in self.weights + self.biases]
        self.v = [np.zeros_like(p) for p in self.weights + self.biases]
        self.t = 0
        self.classes = sizes[-1]

    def step(self, x: np.ndarray, labels: np.ndarray, lr: float = LEARNING_RATE) -> float:
        # forward
        activations = [x]
        pre_activations = []
        a = x
        for layer in range(len(self.weights)):
            z = np.dot(a, self.weights[layer]) + self.biases[layer]
            pre_activations.append(z)
            a = np.maximum(z, 0) if layer < len(self.weights) - 1 else z
            activations.append(a)
        shifted = a - np.max(a, axis=1, keepdims=True)
        exp = np.exp(shifted)
        probs = exp / np.sum(exp, axis=1, keepdims=True)
        one_hot = np.eye(self.classes)[labels]
        n = x.shape[0]
        loss = -np.sum(one_hot * np.log(probs + 1e-12)) / n
        # backward
        delta = (probs - one_hot) / n
        grad_w: list[np.ndarray] = [np.empty(0)] * len(self.weights)
        grad_b: list[np.ndarray] = [np.empty(0)] * len(self.weights)
        for layer in reversed(range(len(self.weights))):
            grad_w[layer] = np.dot(activations[layer].T, delta)
            grad_b[layer] = np.sum(delta, axis=0)
            if layer > 0:
                delta = np.dot(delta, self.weights[layer].T) * (pre_activations[layer - 1] > 0)
        # Adam
        self.t += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        params = self.weights + self.biases
        grads = grad_w + grad_b
        for k in range(len(params)):
            self.m[k] = beta1 * self.m[k] + (1 - beta1) * grads[k]
            self.v[k] = beta2 * self.v[k] + (1 - beta2) * grads[k] ** 2
            m_hat = self.m[k] / (1 - beta1**self.t)
            v_hat = self.v[k] / (1 - beta2**self.t)
            params[k] -= lr * m_hat / (np.sqrt(v_hat) + eps)
        return float(loss)


def numpy_naive(spec: ModelSpec, data: SyntheticData) -> Contender:
    model = NaiveMLP(spec.sizes)
    batches = BatchCycle(data.x.astype(np.float64), data.labels, data.batch)

    def run(steps: int) -> None:
        for _ in range(steps):
            model.step(*batches.next())

    return Contender("numpy-naive", "NumPy, tutorial style (float64, a temporary per operation), Adam",
                     "baseline", "cpu", "float64", run, HostClock())


# --- PyTorch -------------------------------------------------------------------------
def torch_step(spec: AnyModel, data: SyntheticData, device: str, dtype: str, *, fused: bool) -> Contender:
    import torch
    import torch.nn.functional as functional

    torch_device = torch.device("cpu") if device == "cpu" else torch.device("cuda", int(device.split(":")[1]))
    torch_dtype = getattr(torch, str(np.dtype(dtype)))
    torch.manual_seed(0)
    model = torch.nn.Sequential(*spec.torch_layers(torch)).to(device=torch_device, dtype=torch_dtype)
    optimizer = (torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True) if fused
                 else torch.optim.Adam(model.parameters(), lr=LEARNING_RATE))
    x = torch.from_numpy(np.ascontiguousarray(data.x)).to(device=torch_device, dtype=torch_dtype)
    labels = torch.from_numpy(data.labels).to(torch_device)
    batches = BatchCycle(x, labels, data.batch)

    def run(steps: int) -> None:
        for _ in range(steps):
            xb, yb = batches.next()
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()

    if torch_device.type == "cuda":
        from .timing import TorchEventClock

        clock: Any = TorchEventClock(torch, torch_device)
        default = "foreach"
    else:
        clock = HostClock()
        default = "for-loop"
    setting = "Adam(fused=True)" if fused else f"Adam() default ({default})"
    threads = f", {torch.get_num_threads()} threads" if torch_device.type == "cpu" else ""
    return Contender(
        "torch-adam-fused" if fused else "torch-adam-default",
        f"PyTorch {torch.__version__} eager, index slicing, {setting}{threads}",
        "baseline", device, str(np.dtype(dtype)), run, clock,
    )


# --- scikit-learn ----------------------------------------------------------------------
def sklearn_step(spec: ModelSpec, data: SyntheticData, dtype: str) -> Contender:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=spec.hidden, activation="relu", solver="adam", alpha=0.0,
        batch_size=data.batch, learning_rate_init=LEARNING_RATE, shuffle=False, random_state=0,
    )
    x = np.ascontiguousarray(data.x, dtype=dtype)
    labels = data.labels
    classes = np.arange(spec.classes)
    rows = x.shape[0]
    state = {"position": 0, "started": False}

    def run(steps: int) -> None:
        # partial_fit trains one pass over the rows it is given, in batches of batch_size;
        # give it as many contiguous batches as are left before wrapping around.
        while steps > 0:
            start = state["position"] * data.batch
            take = min(steps, (rows - start) // data.batch)
            stop = start + take * data.batch
            if state["started"]:
                model.partial_fit(x[start:stop], labels[start:stop])
            else:
                model.partial_fit(x[start:stop], labels[start:stop], classes=classes)
                state["started"] = True
            state["position"] = (state["position"] + take) % (rows // data.batch)
            steps -= take

    import sklearn

    output = "one logistic output unit for 2 classes" if spec.classes == 2 else "softmax output"
    return Contender(
        "sklearn", f"scikit-learn {sklearn.__version__} MLPClassifier, Adam, partial_fit over the batches",
        "baseline", "cpu", str(np.dtype(dtype)), run, HostClock(), notes=output,
        # partial_fit's per-call checks are paid once per pass over the data, as fit pays them per epoch
        min_steps=data.batches,
    )
