"""Checkpoints during ``fit`` and resuming from them.

:class:`ModelCheckpoint` is a ``fit`` callback that writes a model file
(:mod:`bpcore.serialization`) every ``every`` epochs and whenever the
monitored value improves.  Each file holds, besides the network and the
optimiser state, the state of the training run itself: the epoch, the
random generators (the mini-batch order's state, and the entropy from which
every epoch's dropout generator is derived: :mod:`bpcore.training.dropout_streams`),
the learning-rate schedule, early stopping's counters and the history so far.
Passing such a file to ``fit(..., resume_from=path)`` therefore continues
training exactly where it stopped: with the same seed, an interrupted and
resumed run draws the same mini-batches and dropout masks as an uninterrupted
one (on a GPU too: nothing is needed that CuPy cannot export), and on the CPU
gives bit-identical parameters.
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any

import numpy as np

from . import checks
from .serialization import ModelFileError, load_checkpoint, write_model
from .serialization.registry import describe, walk_with_paths
from .training import dropout_streams
from .training.callbacks import Callback
from .training.history import monitor_mode
from .training.snapshot import Snapshot

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
        #: Each epoch's dropout generator is derived from this (None: no layer draws random numbers).
        self.dropout_entropy = (
            dropout_streams.draw_entropy(network) if dropout_streams.draws_random(network) else None
        )

    # --- each epoch -----------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Bind ``epoch``'s own dropout generator (seeded from the run's entropy and ``epoch``)."""
        if self.dropout_entropy is not None:
            generator = dropout_streams.epoch_generator(self.network.backend, self.dropout_entropy, epoch)
            dropout_streams.bind(self.network, generator)

    def end(self) -> None:
        """Give the layers back the network's own generator (for draws outside ``fit``)."""
        if self.dropout_entropy is not None:
            dropout_streams.bind(self.network, self.network._random)

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
            "dropout_entropy": self.dropout_entropy,
            "scheduler": scheduler_state,
            "early_stopping": None
            if stopping is None
            else {
                "best": stopping.best,
                "best_epoch": stopping.best_epoch,
                "wait": stopping.wait,
                "stopped_epoch": stopping.stopped_epoch,
                # the weights restore_best_weights puts back at the end (None before the first epoch counted)
                "best_state": stopping._snapshot.state() if stopping._snapshot is not None else None,
            },
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
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"resume_from: expected the path of a checkpoint file, got {type(path).__name__} {path!r:.80}"
            )
        try:
            saved = load_checkpoint(path, device=network.device)
        except ModelFileError as exc:
            raise ModelFileError(exc.path, f"resume_from: {exc.problem}") from None
        except OSError as exc:  # missing file, a directory, unreadable
            raise type(exc)(f"resume_from: cannot read the checkpoint {os.fspath(path)!r} ({exc})") from None
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
        try:
            self._check_training(training)
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(
                os.fspath(path), f"resume_from: the training section is damaged ({exc})"
            ) from None
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
            # the network's own stream, for draws outside fit (a GPU generator's state cannot be set)
            dropout.bit_generator.state = training["dropout_rng"]
        if self.dropout_entropy is not None:
            saved_entropy = training.get("dropout_entropy")
            if saved_entropy is not None:
                self.dropout_entropy = saved_entropy
            else:
                logger.warning(
                    "resume_from: %s was written by an older bpcore that did not record the dropout "
                    "entropy; dropout masks will differ from an uninterrupted run", os.fspath(path),
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

    def _check_training(self, training: dict[str, Any]) -> None:
        """Raise unless every part of ``training`` can be restored; changes nothing.

        Called before the network or the optimiser is touched, so that a
        damaged section leaves this run exactly as it was.
        """
        checks.non_negative_int(training["epoch"], "epoch")
        for key, generator in (("shuffle_rng", self.batches._rng), ("dropout_rng", self.network._random)):
            state = training.get(key)
            if state is not None and isinstance(generator, np.random.Generator):
                try:
                    type(generator.bit_generator)().state = state  # a scratch generator
                except (TypeError, ValueError, KeyError) as exc:
                    kind = type(generator.bit_generator).__name__
                    raise ValueError(f"{key}: not a {kind} state ({exc})") from None
        dropout_streams.check_entropy(training.get("dropout_entropy"))
        order = training.get("sample_order")
        if order is not None:
            n = len(order) if isinstance(order, np.ndarray) else -1
            if not (isinstance(order, np.ndarray) and order.dtype.kind in "iu" and order.ndim == 1):
                raise ValueError("sample_order: expected a 1-D array of integers")
            if n == len(self.batches._order) and not np.array_equal(np.sort(order), np.arange(n)):
                raise ValueError(f"sample_order: expected a permutation of 0..{n - 1}")
        history = training.get("history") or {}
        if not isinstance(history, dict):
            raise ValueError("history: expected an object")
        epochs, values = history.get("epochs", []), history.get("values", {})
        if not isinstance(epochs, list) or not all(type(e) is int for e in epochs):
            raise ValueError("history: 'epochs' must be a list of integers")
        if not isinstance(values, dict) or not all(
            isinstance(column, list) and len(column) == len(epochs)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column)
            for column in values.values()
        ):
            raise ValueError("history: 'values' must map names to one number per epoch")
        if self.scheduler is not None and training.get("scheduler") is not None:
            self._check_scheduler_state(training["scheduler"])
        stopping, saved = self.early_stopping, training.get("early_stopping")
        if stopping is not None and saved:
            if not isinstance(saved, dict):
                raise ValueError("early_stopping: expected an object")
            checks.optional(checks.real, saved.get("best"), "early_stopping best", finite=False)
            checks.optional(checks.non_negative_int, saved.get("best_epoch"), "early_stopping best_epoch")
            checks.non_negative_int(saved.get("wait"), "early_stopping wait")
            stopped = saved.get("stopped_epoch")
            checks.optional(checks.non_negative_int, stopped, "early_stopping stopped_epoch")
            if saved.get("best_state") is not None and stopping.restore_best_weights:
                Snapshot(self.network).check_state(saved["best_state"])
        callbacks = training.get("callbacks", {})
        if not isinstance(callbacks, dict):
            raise ValueError("callbacks: expected an object")

    def _check_scheduler_state(self, state: Any) -> None:
        mine = (
            self.scheduler.state_dict()
            if callable(getattr(self.scheduler, "state_dict", None))
            else {k: v for k, v in vars(self.scheduler).items() if k != "optimizer"}
        )
        if not isinstance(state, dict) or set(state) != set(mine):
            raise ValueError(f"scheduler: expected the keys {sorted(mine)}")
        for key, value in state.items():
            current = mine[key]
            numbers = (int, float)
            same = (
                isinstance(value, bool) == isinstance(current, bool)
                and (
                    (isinstance(value, numbers) and isinstance(current, numbers))
                    or value is None or current is None or type(value) is type(current)
                )
            )
            if not same:
                raise ValueError(f"scheduler: {key} must be like {current!r:.40}, got {value!r:.40}")

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

    def restore_early_stopping(self) -> bool:
        """Early stopping's counters from the resumed file (called after its ``on_train_begin``).

        Returns whether early stopping had already ended the run at the saved epoch.
        """
        saved = (self.resumed or {}).get("early_stopping")
        stopping = self.early_stopping
        if stopping is not None and saved:
            stopping.best = saved["best"]
            stopping.best_epoch = saved["best_epoch"]
            stopping.wait = int(saved["wait"])
            stopping._last_epoch = int(self.resumed["epoch"])  # type: ignore[index]
            best_state = saved.get("best_state")
            if best_state is not None and stopping._snapshot is not None:
                stopping._snapshot.load_state(best_state)
            if "stopped_epoch" not in saved:  # written before the field existed: the rule of that time
                return stopping.wait >= max(stopping.patience, 1)
            stopping.stopped_epoch = saved["stopped_epoch"]
            return stopping.stopped_epoch is not None
        return False


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
        every = checks.optional(checks.integer, every, "ModelCheckpoint(every)", minimum=1,
                                expected="None or a positive integer")
        keep_last = checks.optional(checks.integer, keep_last, "ModelCheckpoint(keep_last)", minimum=1,
                                    expected="None or a positive integer")
        save_best = checks.flag(save_best, "ModelCheckpoint(save_best)")
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ModelCheckpoint(monitor): expected a name such as 'val_loss', got {monitor!r}")
        mode = checks.choice(mode, "ModelCheckpoint(mode)", ("auto", "min", "max"))
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
