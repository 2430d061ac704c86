"""Checkpoints during ``fit`` and resuming from them.

:class:`ModelCheckpoint` is a ``fit`` callback that writes a model file
(:mod:`bpcore.serialization`) every ``every`` epochs and whenever the
monitored value improves.  Each file holds, besides the network and the
optimiser state, the state of the training run itself: the epoch, the
random generators (mini-batch order and dropout masks), the learning-rate
schedule, early stopping's counters and the history so far.  Passing such a
file to ``fit(..., resume_from=path)`` therefore continues training exactly
where it stopped: with the same seed, an interrupted and resumed run gives
bit-identical parameters to an uninterrupted one on the CPU.
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any

import numpy as np

from .serialization import load_checkpoint, write_model
from .serialization.registry import describe, walk_with_paths
from .training.callbacks import Callback
from .training.history import monitor_mode

logger = logging.getLogger("bpcore")

_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.bpcore$")
BEST_FILE = "best.bpcore"


def _generator_state(generator: Any) -> dict[str, Any] | None:
    """A NumPy generator's state as plain data; None for generators that cannot say (CuPy's)."""
    bit_generator = getattr(generator, "bit_generator", None)
    state = getattr(bit_generator, "state", None)
    return state if isinstance(state, dict) and isinstance(generator, np.random.Generator) else None


class TrainingRun:
    """The state of one ``fit`` call beyond the network: what a checkpoint must keep to resume.

    ``fit`` creates one and hands it to callbacks that have an ``attach(run)``
    method before training begins.
    """

    def __init__(
        self,
        network: Any,
        optimizer: Any,
        *,
        loss: Any,
        history: Any,
        batches: Any,
        scheduler: Any = None,
        scheduler_takes_value: bool = False,
        early_stopping: Any = None,
        writes_files: bool = True,
    ) -> None:
        self.network = network
        self.optimizer = optimizer
        self.loss = loss
        self.history = history
        self.batches = batches
        self.scheduler = scheduler
        self.scheduler_takes_value = scheduler_takes_value
        self.early_stopping = early_stopping
        #: Whether checkpoint callbacks write files (False on ranks other than 0 of a distributed fit).
        self.writes_files = bool(writes_files)
        #: The ``training`` section of the file this run resumed from (None for a fresh run).
        self.resumed: dict[str, Any] | None = None

    # --- writing --------------------------------------------------------------------
    def state(self, epoch: int, callbacks: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` (plain data and NumPy arrays)."""
        scheduler = self.scheduler
        scheduler_state = None
        if scheduler is not None:
            scheduler_state = (
                scheduler.state_dict()
                if callable(getattr(scheduler, "state_dict", None))
                else {k: v for k, v in vars(scheduler).items() if k != "optimizer"}
            )
        stopping = self.early_stopping
        return {
            "epoch": int(epoch),
            "shuffle_rng": _generator_state(self.batches._rng),
            "sample_order": np.array(self.batches._order, copy=True),
            "dropout_rng": _generator_state(getattr(self.network, "_random", None)),
            "scheduler": scheduler_state,
            "early_stopping": None
            if stopping is None
            else {"best": stopping.best, "best_epoch": stopping.best_epoch, "wait": stopping.wait},
            "history": {"epochs": list(self.history.epochs), "values": dict(self.history.history)},
            "callbacks": callbacks or {},
        }

    def save(self, path: str | os.PathLike[str], epoch: int, callbacks: dict[str, Any] | None = None) -> None:
        """Write a resumable checkpoint of this run after ``epoch`` (atomically)."""
        write_model(
            path,
            self.network,
            optimizer=self.optimizer,
            loss=self.loss,
            training=self.state(epoch, callbacks),
        )

    # --- reading --------------------------------------------------------------------
    def restore(self, path: str | os.PathLike[str]) -> int:
        """Put the state saved in ``path`` back into this run; returns the next epoch to train.

        Checks that the file's architecture and optimiser match this run's
        before changing anything.
        """
        network = self.network
        saved = load_checkpoint(path, device=network.device)
        training = saved.training
        if not isinstance(training, dict) or "epoch" not in training:
            raise ValueError(
                f"resume_from: {os.fspath(path)!r} is a model file without training state; "
                "resume from a file written by bpcore.checkpoint.ModelCheckpoint"
            )
        mine = [describe(layer, str(i)) for i, layer in enumerate(network.layers)]
        theirs = [describe(layer, str(i)) for i, layer in enumerate(saved.network.layers)]
        if mine != theirs or saved.network.dtype != network.dtype:
            raise ValueError(
                f"resume_from: the checkpoint's network ({saved.network.dtype.name}, {len(theirs)} layers) "
                f"is not this network's architecture ({network.dtype.name}, {len(mine)} layers)"
            )
        if saved.optimizer is None:
            raise ValueError(f"resume_from: {os.fspath(path)!r} holds no optimiser state")
        self.optimizer.load_state_dict(saved.optimizer.state_dict())  # checks the settings first
        network.store.load(saved.network.store.data)
        theirs_layers = dict(walk_with_paths(saved.network.layers))
        for path_key, layer in walk_with_paths(network.layers):
            for name, value in theirs_layers[path_key].buffers().items():
                layer.set_buffer(name, network.backend.asarray(value, dtype=value.dtype))
        if training.get("shuffle_rng") is not None:
            self.batches._rng.bit_generator.state = training["shuffle_rng"]
        order = training.get("sample_order")
        if order is not None and len(order) == len(self.batches._order):
            self.batches._order[...] = order
        dropout = getattr(network, "_random", None)
        if training.get("dropout_rng") is not None and isinstance(dropout, np.random.Generator):
            dropout.bit_generator.state = training["dropout_rng"]
        elif any(type(layer).__name__ == "Dropout" for layer in network.walk()):
            logger.warning(
                "resume_from: the dropout generator's state could not be restored on %s; "
                "dropout masks will differ from an uninterrupted run",
                network.device,
            )
        history = training.get("history") or {}
        self.history.epochs = [int(e) for e in history.get("epochs", [])]
        self.history.history = {
            k: [float(v) for v in values] for k, values in history.get("values", {}).items()
        }
        self._restore_scheduler(training.get("scheduler"))
        self.resumed = training
        epoch = int(training["epoch"])
        logger.info("resumed training from %s after epoch %d", os.fspath(path), epoch)
        return epoch + 1

    def _restore_scheduler(self, state: Any) -> None:
        scheduler = self.scheduler
        if scheduler is None or state is None:
            return
        if callable(getattr(scheduler, "load_state_dict", None)):
            scheduler.load_state_dict(state)
        else:
            scheduler.__dict__.update(state)
        # The checkpoint was written after the epoch and before fit stepped the schedule: step it now.
        values = self.history.history
        if self.scheduler_takes_value:
            scheduler.step(values.get("val_loss", values["loss"])[-1])
        else:
            scheduler.step()

    def restore_early_stopping(self) -> None:
        """Early stopping's counters from the resumed file (called after its ``on_train_begin``)."""
        saved = (self.resumed or {}).get("early_stopping")
        if self.early_stopping is not None and saved:
            self.early_stopping.best = saved["best"]
            self.early_stopping.best_epoch = saved["best_epoch"]
            self.early_stopping.wait = int(saved["wait"])


class ModelCheckpoint(Callback):
    """Write resumable checkpoints into ``directory`` during ``fit``.

    * every ``every`` epochs: ``epoch-NNNN.bpcore`` (None: never); with
      ``keep_last=k`` only the newest ``k`` of these are kept;
    * with ``save_best``: ``best.bpcore`` whenever ``monitor`` (``val_loss``
      by default; ``"loss"`` without validation data) improves on the best so
      far (``mode``: ``"min"``, ``"max"`` or ``"auto"``, as EarlyStopping).

    Every file is a complete model file (load it with :func:`bpcore.load`)
    that ``fit(..., resume_from=path)`` continues from.  Files are written
    atomically: a crash never leaves a truncated checkpoint.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every: int | None = 1,
        save_best: bool = True,
        monitor: str = "val_loss",
        mode: str = "auto",
        keep_last: int | None = None,
    ) -> None:
        for argument, value in (("every", every), ("keep_last", keep_last)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
            ):
                raise ValueError(
                    f"ModelCheckpoint({argument}): expected None or a positive integer, got {value!r}"
                )
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ModelCheckpoint(monitor): expected a name such as 'val_loss', got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint(mode): expected 'auto', 'min' or 'max', got {mode!r}")
        self.directory = os.fspath(directory)
        self.every = None if every is None else int(every)
        self.save_best = bool(save_best)
        self.monitor = monitor
        self.mode = monitor_mode(monitor) if mode == "auto" else mode
        self.keep_last = None if keep_last is None else int(keep_last)
        self.best: float | None = None
        self._run: TrainingRun | None = None

    def __repr__(self) -> str:
        return (
            f"ModelCheckpoint({self.directory!r}, every={self.every}, save_best={self.save_best}, "
            f"monitor={self.monitor!r}, mode={self.mode!r}, keep_last={self.keep_last})"
        )

    def attach(self, run: TrainingRun) -> None:
        """Called by ``fit`` before training: the run whose state the checkpoints hold."""
        self._run = run
        if run.writes_files:
            os.makedirs(self.directory, exist_ok=True)
        resumed = (run.resumed or {}).get("callbacks", {}).get("ModelCheckpoint", {})
        self.best = resumed.get("best") if isinstance(resumed, dict) else None

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        run = self._run
        if run is None:
            raise RuntimeError(
                "ModelCheckpoint: not attached to a training run; pass it to fit(..., callbacks=[...])"
            )
        improved = False
        if self.save_best:
            if self.monitor not in logs:
                raise KeyError(
                    f"ModelCheckpoint: monitor {self.monitor!r} is not among this epoch's values "
                    f"{sorted(logs)}; use monitor='loss' without validation data"
                )
            value = float(logs[self.monitor])
            improved = self._improves(value)
            if improved:
                self.best = value
        state = {"ModelCheckpoint": {"best": self.best}}
        if not run.writes_files:  # a distributed fit: rank 0 writes
            return None
        if self.every is not None and epoch % self.every == 0:
            run.save(os.path.join(self.directory, f"epoch-{epoch:04d}.bpcore"), epoch, state)
            self._prune()
        if improved:
            run.save(os.path.join(self.directory, BEST_FILE), epoch, state)
            logger.debug("epoch %d: %s improved to %.6g; wrote %s", epoch, self.monitor, self.best, BEST_FILE)
        return None

    def on_train_end(self, history: Any) -> None:
        self._run = None

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        for stale in epoch_checkpoints(self.directory)[: -self.keep_last]:
            os.remove(stale)


def epoch_checkpoints(directory: str | os.PathLike[str]) -> list[str]:
    """The ``epoch-NNNN.bpcore`` files in ``directory``, oldest first."""
    found = []
    for name in os.listdir(directory):
        match = _EPOCH_FILE.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(os.fspath(directory), name)))
    return [path for _, path in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike[str]) -> str | None:
    """The newest ``epoch-NNNN.bpcore`` in ``directory``, or None (also when it does not exist)."""
    if not os.path.isdir(directory):
        return None
    files = epoch_checkpoints(directory)
    return files[-1] if files else None


__all__ = ["BEST_FILE", "ModelCheckpoint", "TrainingRun", "epoch_checkpoints", "latest_checkpoint"]
