"""``fit``: the training loop.

One step is forward (training mode), loss, backward (gradients written, not
added, so no ``zero_grad`` is needed) and one optimiser step over the flat
parameter buffer.  Nothing in a step checks, allocates a batch or reads
the device: the data was checked once up front, batches go into buffers
allocated once, and each step's loss (and metric sums) are written into a
device array that is read once per epoch, together with a finiteness check
of the parameters and the validation results.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import checks
from ..layers.fusion import batch_statistics_count
from . import kernel_choice
from .batches import Batches
from .callbacks import EarlyStopping, as_callbacks
from .data import (
    Dataset,
    counted_labels,
    ignored_label,
    prepare,
    split_validation,
    takes_logits,
    target_sizes,
)
from .errors import TrainingDivergedError
from .history import History
from .inference import (
    DEFAULT_BATCH_SIZE,
    check_batch_size,
    evaluation_sums,
    loss_weights,
    resolve_loss,
    summarise,
    unchecked,
)
from .metrics import BoundMetric, bind_metrics, check_metrics
from .progress import Progress
from .snapshot import Snapshot

logger = logging.getLogger("bpcore")


# --- argument checks (all before anything is changed) ------------------------
def _check_optimizer(optimizer: Any, network: Any) -> None:
    if optimizer is None or not callable(getattr(optimizer, "step", None)):
        raise TypeError(
            "optimizer: expected an optimiser such as bpcore.optim.SGD(network.parameters(), lr=0.1), "
            f"got {type(optimizer).__name__}"
        )
    group = getattr(optimizer, "parameters", None)  # bpcore optimisers keep a ParameterSet here
    params = getattr(group, "params", group)
    if isinstance(params, (list, tuple)) and params:
        mine = {id(p) for p in network.parameters()}
        if not any(id(p) in mine for p in params):
            raise ValueError(
                "optimizer: its parameters are not this network's; create it with network.parameters()"
            )


def _check_scheduler(scheduler: Any) -> bool:
    """Whether ``scheduler.step`` takes the monitored value (ReduceLROnPlateau does)."""
    if scheduler is None:
        return False
    step = getattr(scheduler, "step", None)
    if not callable(step):
        raise TypeError(f"scheduler: expected a schedule with step(), got {type(scheduler).__name__}")
    try:
        signature = inspect.signature(step)
    except (TypeError, ValueError):
        return False
    return any(
        p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in signature.parameters.values()
    )


def _validation_set(
    network: Any, data: Dataset, validation_data: Any, validation_split: float, loss: Any
) -> tuple[Dataset, Dataset | None]:
    if validation_data is not None:
        if validation_split:
            raise ValueError(
                "validation_data and validation_split: give one or the other, not both "
                f"(got validation_split={validation_split})"
            )
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError(
                "validation_data: expected a pair (x_val, y_val) or, for padded sequences, (x_val, y_val, "
                f"mask_val), got {type(validation_data).__name__}"
                + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else "")
            )
        x_val, y_val = validation_data[:2]
        mask_val = validation_data[2] if len(validation_data) == 3 else None
        if data.mask is not None and mask_val is None:
            raise ValueError(
                "validation_data: fit has a mask for x, so the validation sequences need theirs: pass "
                "(x_val, y_val, mask_val), with mask_val all True if they have no padding"
            )
        return data, prepare(
            network, x_val, y_val, loss=loss, x_argument="validation_data[0]",
            y_argument="validation_data[1]", mask=mask_val, mask_argument="validation_data[2]",
        )
    if validation_split:
        return split_validation(data, validation_split)
    return data, None


def _outputs(data: Dataset, network: Any) -> int:
    return target_sizes(data, network)[0]


# --- the loop ---------------------------------------------------------------
def fit(
    network: Any,
    x: Any,
    y: Any,
    *,
    loss: Any,
    optimizer: Any,
    epochs: int,
    batch_size: int | None = 32,
    shuffle: bool = True,
    validation_data: tuple[Any, ...] | None = None,
    validation_split: float = 0.0,
    mask: Any = None,
    lengths: Any = None,
    early_stopping: EarlyStopping | None = None,
    callbacks: Sequence[Any] = (),
    metrics: Sequence[str] = (),
    scheduler: Any = None,
    verbose: bool | int | None = None,
    seed: int | None = None,
    resume_from: Any = None,
    distributed: bool = False,
) -> History:
    """Train ``network`` on ``(x, y)`` by backpropagation and return its :class:`History`.

    * ``loss``: a loss object (``bpcore.losses.MSE()``, ...) or its name (``"mse"``,
      ``"cross_entropy"``); ``optimizer``: a ``bpcore.optim`` optimiser of this
      network's parameters.
    * ``batch_size``: ``None`` (or at least the number of samples) is full-batch
      gradient descent, ``1`` is single-sample SGD, anything between is
      mini-batch training.  A last, smaller batch is kept (with batch
      normalisation a last batch of one sample joins the one before).
    * ``shuffle`` draws a new sample order every epoch from ``seed`` (the same
      seed gives bit-identical training); a full batch is never shuffled.
    * ``validation_data=(x_val, y_val)`` or ``validation_split`` (the *last*
      fraction of the samples, taken before shuffling) adds ``val_loss`` and
      ``val_<metric>`` per epoch, measured in evaluation mode.
    * ``mask`` (boolean (n, T), True at real steps) or ``lengths`` (n,): padded
      sequences, as in :meth:`bpcore.Network.forward`; the mask goes with its
      samples into every batch (and into the split-off validation samples);
      ``validation_data`` then takes a third element, the validation mask.
    * ``metrics``: any of ``"accuracy"``, ``"mse"``, ``"mae"``.
    * ``early_stopping``: an :class:`EarlyStopping` (one given in
      ``callbacks``, as in Keras, is taken as this when it is None: its
      monitor is checked before training and its counters go into
      checkpoints); ``callbacks``: objects with ``on_epoch_end(epoch, logs)``
      (or functions), returning True to stop.
    * ``scheduler``: stepped once after every epoch; a scheduler whose
      ``step`` takes a value (ReduceLROnPlateau) gets ``val_loss``, or ``loss``
      without validation data.
    * ``resume_from``: a checkpoint written by
      :class:`bpcore.checkpoint.ModelCheckpoint`; training continues after its
      epoch up to ``epochs`` (the total), with its parameters, optimiser state,
      random generators, schedule and history, so that with the same ``seed``
      the result equals an uninterrupted run.  Callbacks with an
      ``attach(run)`` method receive the :class:`bpcore.checkpoint.TrainingRun`.
    * ``distributed``: data-parallel training over the ranks of an MPI job
      (``mpiexec -n P python train.py``; see :mod:`bpcore.distributed.data_parallel`):
      every rank passes the whole data set and takes its share of every batch;
      the result equals one process's training on the same batches.  Logs,
      the progress bar and checkpoint files come from rank 0 only.
    * ``verbose``: as in Keras, 0 or False is silent, 1 or True draws a
      progress bar on stderr, 2 writes one line per epoch to stderr; None
      (default) draws the bar only when stderr is a terminal.  Epochs are always logged
      under the ``bpcore`` logger (DEBUG per epoch, INFO at start and end).

    Every argument and the data are checked before anything changes: bad
    input raises one exception and leaves the network as it was.  If the
    loss or a parameter becomes NaN or Inf, the parameters, layer buffers and
    optimiser state are restored to the start of that epoch and
    :class:`TrainingDivergedError` is raised.  NumPy's floating-point warnings
    are silenced inside the loop, since divergence is reported this way.
    """
    # 1. Check everything.
    loss = resolve_loss(loss)
    _check_optimizer(optimizer, network)
    epochs = checks.positive_int(epochs, "epochs")
    batch_size = check_batch_size(batch_size, allow_none=True)
    shuffle = checks.flag(shuffle, "shuffle")
    verbose = checks.optional(checks.verbosity, verbose, "verbose")
    seed = checks.optional(checks.integer, seed, "seed", minimum=0, expected="None or a non-negative integer")
    validation_split = checks.real(validation_split, "validation_split", minimum=0.0, below=1.0,
                                   expected="a fraction in [0, 1)")
    metric_names = check_metrics(metrics)
    user_callbacks = as_callbacks(callbacks)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            f"early_stopping: expected None or an EarlyStopping(...), got {type(early_stopping).__name__}"
        )
    if early_stopping is None:  # Keras's way, callbacks=[EarlyStopping(...)], is early_stopping= here
        early_stopping = next((c for c in user_callbacks if isinstance(c, EarlyStopping)), None)
        user_callbacks = [c for c in user_callbacks if c is not early_stopping]
    scheduler_takes_value = _check_scheduler(scheduler)
    distributed = checks.flag(distributed, "distributed")

    with network.exclusive(), contextlib.ExitStack() as scope:
        data = prepare(network, x, y, loss=loss, mask=mask, lengths=lengths)
        data, validation = _validation_set(network, data, validation_data, validation_split, loss)
        # BPCORE_KERNELS=auto: fused or generic kernels for the whole fit, from its planned size alone.
        choice = kernel_choice.for_fit(
            network, tuple(data.x.shape[1:]), samples=len(data), batch_size=batch_size, epochs=epochs,
            validation_samples=0 if validation is None else len(validation),
            validation_batch=DEFAULT_BATCH_SIZE,
        )
        logger.info(choice.reason)
        scope.enter_context(kernel_choice.bound(network, choice, loss))
        xp = network.backend.xp
        logits = takes_logits(loss)
        train_metrics = bind_metrics(metric_names, xp=xp, kind=data.kind, outputs=_outputs(data, network),
                                     logits=logits, labels=target_sizes(data, network)[1],
                                     ignore_index=ignored_label(loss), counted=counted_labels(data, loss))
        val_metrics: list[BoundMetric] = []
        if validation is not None:
            val_metrics = bind_metrics(metric_names, xp=xp, kind=validation.kind,
                                       outputs=_outputs(validation, network), logits=logits,
                                       labels=target_sizes(validation, network)[1],
                                       ignore_index=ignored_label(loss),
                                       counted=counted_labels(validation, loss))
        keys = ["loss", *metric_names]
        if validation is not None:
            keys += ["val_loss", *(f"val_{name}" for name in metric_names)]
        stoppers = [c for c in [early_stopping, *user_callbacks] if isinstance(c, EarlyStopping)]
        for stopper in stoppers:  # checked before anything trains, wherever it was passed
            if stopper.monitor not in keys:
                hint = " (it needs validation_data or validation_split)" if stopper.monitor.startswith(
                    "val_") else ""
                raise ValueError(
                    f"early_stopping: monitor {stopper.monitor!r} is not recorded{hint}; fit records {keys}"
                )
        # Batch statistics need more than one value per channel: a BatchNorm over (N, C) needs two
        # samples a batch (a single one left at the end joins the batch before), over (N, C, H, W) one.
        per_sample = (batch_statistics_count(network.layers, tuple(data.x.shape[1:]))
                      if getattr(network, "_needs_batch", False) else None)
        needs_batch = per_sample is not None and per_sample < 2
        if needs_batch and batch_size == 1 and len(data) > 1:
            raise ValueError(
                "batch_size: BatchNorm needs at least 2 samples per batch in training (one value per "
                "channel each), got batch_size=1"
            )
        if needs_batch and len(data) < 2:
            raise ValueError(f"x: BatchNorm needs at least 2 training samples, got {len(data)}")

        sync = None
        if distributed:  # data parallelism over MPI: bpcore.distributed.data_parallel
            from ..distributed.data_parallel import DataParallel

            sync = DataParallel.start(network)
            seed = sync.agree_on_seed(seed)
            sync.check(network, data, validation, {"epochs": epochs, "batch_size": batch_size,
                                                   "shuffle": shuffle, "seed": seed, "resume": resume_from})
            verbose = verbose if sync.is_root else 0

        # 2. Train.
        monitor = early_stopping.monitor if early_stopping is not None else (
            "val_loss" if validation is not None else "loss")
        history = History(monitor=monitor)
        if sync is None:
            batches = Batches(data, network.backend, batch_size=batch_size, shuffle=shuffle,
                              rng=np.random.default_rng(seed), merge_single=needs_batch)
        else:
            batches = sync.batches(data, network.backend, batch_size=batch_size, shuffle=shuffle,
                                   rng=np.random.default_rng(seed), merge_single=needs_batch, loss=loss)
        # Early stopping first, so that a checkpoint written after an epoch holds that epoch's counters.
        all_callbacks = [*([early_stopping] if early_stopping is not None else []), *user_callbacks]
        trainer = _Trainer(network, loss, optimizer, batches, train_metrics, validation, val_metrics, sync)
        progress = Progress(
            epochs=epochs, verbose=verbose,
            description=(
                f"{epochs} epoch(s) of {batches.steps} step(s) on {len(data)} samples "
                f"(batch size {batches.sizes()[0]}), {len(validation) if validation is not None else 0} "
                f"validation samples, device {network.device}"
            ),
        )
        from ..checkpoint import TrainingRun

        run = TrainingRun(
            network, optimizer, loss=loss, history=history, batches=batches, scheduler=scheduler,
            scheduler_takes_value=scheduler_takes_value, early_stopping=early_stopping,
            writes_files=sync is None or sync.is_root,
        )
        first_epoch = 1 if resume_from is None else run.restore(resume_from)
        trainer.batches = progress.follow(trainer.batches, first_epoch)  # a bar advances by batch
        if sync is not None:
            sync.begin(network)
        started = time.perf_counter()
        try:
            for callback in all_callbacks:
                attach = getattr(callback, "attach", None)
                if attach is not None:
                    attach(run)
                hook = getattr(callback, "on_train_begin", None)
                if hook is not None:
                    hook(network)
            if run.restore_early_stopping() and first_epoch <= epochs:
                # the checkpoint was written after the epoch at which early stopping ended the run
                history.stop(f"stopped after epoch {first_epoch - 1} by EarlyStopping")
                first_epoch = epochs + 1
            for epoch in range(first_epoch, epochs + 1):
                tick = time.perf_counter()
                run.begin_epoch(epoch)  # this epoch's dropout generator, derived from the run's seed
                lr = getattr(optimizer, "lr", None)
                logs = trainer.epoch(epoch)
                if lr is not None:
                    logs["lr"] = float(lr)
                history.append(epoch, logs)
                progress.epoch_end(epoch, logs, time.perf_counter() - tick)
                stop = [type(callback).__name__ for callback in all_callbacks
                        if callback.on_epoch_end(epoch, dict(logs))]
                if sync is not None:
                    stop = sync.agree_to_stop(stop)
                if stop:
                    if epoch < epochs:
                        history.stop(f"stopped after epoch {epoch} by {stop[0]}")
                    break
                if scheduler is not None:
                    if scheduler_takes_value:
                        scheduler.step(logs.get("val_loss", logs["loss"]))
                    else:
                        scheduler.step()
            if early_stopping is not None:  # its best epoch, by its rules, is the one whose weights it keeps
                history.decided_best_epoch = early_stopping.best_epoch
            for callback in all_callbacks:
                hook = getattr(callback, "on_train_end", None)
                if hook is not None:
                    hook(history)
        finally:
            run.end()
            progress.close(
                f"{len(history)} epoch(s) in {time.perf_counter() - started:.3f}s; "
                f"best epoch {history.best_epoch} ({monitor})"
            )
        return history


class _Trainer:
    """The per-epoch work of one ``fit``, with everything it needs allocated once."""

    def __init__(
        self,
        network: Any,
        loss: Any,
        optimizer: Any,
        batches: Batches,
        metrics: list[BoundMetric],
        validation: Dataset | None,
        val_metrics: list[BoundMetric],
        sync: Any = None,
    ) -> None:
        self.network, self.loss, self.optimizer, self.batches = network, loss, optimizer, batches
        self.sync = sync  # a bpcore.distributed DataParallel, or None
        self.validation_sums = evaluation_sums if sync is None else sync.evaluation_sums
        self.metrics, self.validation, self.val_metrics = metrics, validation, val_metrics
        backend = network.backend
        xp = backend.xp
        steps = batches.steps
        self.samples = len(batches.data)
        self.step_losses = xp.zeros(steps, dtype=np.float64)
        self.step_metrics = xp.zeros((max(len(metrics), 1), steps), dtype=np.float64)
        self.weights = backend.asarray(loss_weights(loss, batches.sizes(), self.samples))
        width = 2 + len(metrics) + (1 + len(val_metrics) if validation is not None else 0)
        self.summary = xp.zeros(width, dtype=np.float64)
        self.snapshot = Snapshot(network, optimizer)

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch and return its logs; raise TrainingDivergedError if it diverged."""
        network, optimizer, metrics = self.network, self.optimizer, self.metrics
        xp = network.backend.xp
        self.snapshot.take()
        loss = unchecked(self.loss)
        backward = self.loss.backward
        forward, backpropagate, step = network._forward, network._backward, optimizer.step
        losses, metric_sums = self.step_losses, self.step_metrics
        sync = self.sync
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for index, (xb, yb, mb) in enumerate(self.batches.epoch()):
                if sync is not None and index in sync.empty_steps:  # this rank's share is empty
                    sync.empty_step(index, losses, metric_sums)
                    step()
                    continue
                out = forward(xb, True, mb)
                losses[index] = loss(out, yb)
                for row, metric in enumerate(metrics):
                    metric_sums[row, index] = metric(out, yb)
                backpropagate(backward(), accumulate=False, need_input_grad=False)
                if sync is not None:
                    sync.reduce_gradients(index)
                step()
            if sync is not None:
                sync.end_of_steps()
            summary = self.summary
            summary[0] = xp.dot(losses, self.weights)
            summary[1] = xp.isfinite(network.store.data).all()
            if metrics:
                summary[2 : 2 + len(metrics)] = metric_sums[: len(metrics)].sum(axis=1)
            if self.validation is not None:
                summary[2 + len(metrics) :] = self.validation_sums(
                    network, self.validation, self.loss, self.val_metrics, DEFAULT_BATCH_SIZE
                )
            host = network.backend.to_numpy(summary)  # the one read of the device per epoch
            if sync is not None:
                host = sync.reduce_summary(host)
        self._check_finite(epoch, host)
        logs = summarise(np.concatenate([host[:1], host[2 : 2 + len(metrics)]]), metrics, self.samples)
        if self.validation is not None:
            logs.update(summarise(host[2 + len(metrics) :], self.val_metrics, len(self.validation), "val_"))
        return logs

    def _check_finite(self, epoch: int, host: np.ndarray) -> None:
        loss_value, parameters_ok = float(host[0]), bool(host[1])
        val_value = float(host[2 + len(self.metrics)]) if self.validation is not None else 0.0
        if math.isfinite(loss_value) and parameters_ok and math.isfinite(val_value):
            return
        self.snapshot.restore()
        lr = getattr(self.optimizer, "lr", None)
        at_lr = f" with learning rate {float(lr):g}" if lr is not None else ""
        step: int | None = None
        if not math.isfinite(loss_value):
            per_step = self.network.backend.to_numpy(self.step_losses)
            if self.sync is not None:
                per_step = self.sync.sum(per_step)
            step = int(np.flatnonzero(~np.isfinite(per_step))[0]) + 1
            what = f"the training loss became {per_step[step - 1]} at step {step} of {len(per_step)}"
        elif not parameters_ok:
            what = "a parameter became NaN or Inf (the loss was still finite)"
        else:
            what = f"the validation loss became {val_value}"
        message = (
            f"fit: training diverged in epoch {epoch}{at_lr}: {what}. The parameters, layer buffers and "
            f"optimiser state were restored to their values at the start of epoch {epoch}. "
            "Lower the learning rate, clip gradients (bpcore.optim.clip_grad_norm), or standardise the data."
        )
        if type(self.loss).__name__ == "BinaryCrossEntropy" and not getattr(self.loss, "from_logits", True):
            message += (
                " BinaryCrossEntropy() takes probabilities in [0, 1]: end the network with Sigmoid(), "
                "or pass logits with BinaryCrossEntropy(from_logits=True)."
            )
        logger.info(message)
        raise TrainingDivergedError(message, epoch=epoch, step=step)
