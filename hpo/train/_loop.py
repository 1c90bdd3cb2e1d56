"""The steps of a run after building: one epoch, validation, the result; `train_model` composes them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from ..config import TrainConfig
from ..data import DatasetSplits
from ..errors import ConfigError
from ._augment import prepare_batch
from ._build import build_state
from ._evaluate import evaluate_images, measure_latency
from ._state import EpochMetrics, NonFiniteLossError, RunInfo, TrainResult, TrainState

__all__ = ["TrainBatches", "finish", "step_seconds", "train_epoch", "train_model", "validate"]

Monitor = Literal["val_acc", "val_macro_f1", "val_loss"]
_CUDA_CHECK_EVERY = 8  # steps between loss checks on CUDA (each check waits for the GPU)


def epoch_order(
    n: int, count: int, weights: torch.Tensor | None, gen: torch.Generator
) -> torch.Tensor:
    """Indices for one epoch: a permutation, or `count` weighted draws with replacement."""
    if weights is not None:
        return torch.multinomial(weights, count, replacement=True, generator=gen)
    return torch.randperm(n, generator=gen, device=gen.device)


class HostBatches:
    """Training batches gathered from host memory into two reusable buffers.

    On CUDA the buffers are pinned and copied with `non_blocking=True`; an event per buffer
    makes the gather into a buffer wait until its previous copy has left it. This replaces
    pinning the whole training set (a private copy of the shared cache in every worker).
    """

    def __init__(self, source: torch.Tensor, batch: int, device: torch.device) -> None:
        self.source, self.device = source, device
        pin = device.type == "cuda"
        shape = (batch, *source.shape[1:])
        self.buffers = [torch.empty(shape, dtype=source.dtype, pin_memory=pin) for _ in range(2)]
        self.events: list = [None, None]
        self.turn = 0

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """`source[idx]` in the next host buffer (free once its last copy has left it)."""
        k = self.turn
        if self.events[k] is not None:
            self.events[k].synchronize()
        buf = self.buffers[k][: len(idx)]
        # NumPy's take copies whole rows; torch.index_select on uint8 goes element by element
        np.take(self.source.numpy(), idx.numpy(), axis=0, out=buf.numpy())
        return buf

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """`source[idx]` on the device."""
        buf = self.gather(idx)
        k, self.turn = self.turn, self.turn ^ 1
        if self.device.type != "cuda":
            return buf.to(self.device, copy=True)  # the buffer is refilled two batches later
        x = buf.to(self.device, non_blocking=True)
        self.events[k] = torch.cuda.Event()
        self.events[k].record()
        return x


class TrainBatches:
    """The batches a training step reads: gathered, augmented (when asked) and normalised.

    On the CPU each image goes from the (mapped) cache straight into one of two reused float
    buffers (`prepare_batch`); with host data on CUDA the uint8 rows are gathered into pinned
    buffers (`HostBatches`), copied, and augmented and normalised on the device, channels-last
    when the model is. A batch stays intact until two more have been taken.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch: int,
        device: torch.device,
        *,
        augment_gen: torch.Generator | None,
        channels_last: bool = False,
    ) -> None:
        self.images, self.labels, self.device = images, labels, device
        self.gen, self.channels_last = augment_gen, channels_last
        self.cpu = device.type == "cpu" and images.device.type == "cpu"
        self.host = (HostBatches(images, batch, device)
                     if device.type == "cuda" and images.device.type == "cpu" else None)
        shape = (batch, *images.shape[1:])
        self.buffers = [torch.empty(shape) for _ in range(2)] if self.cpu else []
        self.turn = 0

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(float images, labels) of the rows `idx`, on the device; augmented when a generator
        was given."""
        y = self.labels[idx.to(self.labels.device)]
        augment = self.gen is not None
        if self.cpu:
            out, self.turn = self.buffers[self.turn][: len(idx)], self.turn ^ 1
            return prepare_batch(self.images, idx, self.gen, augment=augment, out=out), y
        if self.host is not None:
            x = self.host.take(idx)
        else:
            x = self.images[idx.to(self.images.device)].to(self.device, non_blocking=True)
        return prepare_batch(x, None, self.gen, augment=augment,
                             channels_last=self.channels_last), y


def _fit_epoch(
    s: TrainState, epoch: int, on_batch: Callable[[TrainState, int], None] | None = None
) -> tuple[float, float]:
    """Train `epoch` once over the training split; (mean train loss, lr of the last step).

    `on_batch(s, batches_done)` runs after each batch but the last (mid-epoch reports).
    """
    cfg, d, device = s.cfg, s.data, s.device
    check_every = 1 if device.type == "cpu" else _CUDA_CHECK_EVERY
    s.criterion.set_epoch(epoch, cfg.epochs)
    s.model.train()
    order = epoch_order(len(d.train_y), d.steps * d.batch, d.sample_weights, s.order_gen)
    running = torch.zeros((), device=device, dtype=torch.float64)
    last_lr = s.optimizer.param_groups[0]["lr"]
    batches = TrainBatches(d.train_x, d.train_y, d.batch, device,
                           augment_gen=s.augment_gen if cfg.augment else None,
                           channels_last=s.channels_last)
    for step in range(d.steps):
        x, y = batches.take(order[step * d.batch : (step + 1) * d.batch])
        with torch.autocast(
            device.type, dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None
        ):
            loss = s.criterion(s.model(x), y)
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        last_lr = s.optimizer.param_groups[0]["lr"]  # the rate this step used
        s.scheduler.step()
        running += loss.detach().double()
        checking = (step + 1) % check_every == 0 or step == d.steps - 1
        if checking and not math.isfinite(float(running)):
            raise NonFiniteLossError(
                f"loss became {float(loss.detach())} at epoch {epoch} step {step} "
                f"(lr={cfg.lr:g}, optimizer={cfg.optimizer}, loss_fn={cfg.loss_fn}). "
                "Lower lr or add warmup"
            )
        if on_batch is not None and step + 1 < d.steps:
            on_batch(s, step + 1)
    return float(running) / d.steps, last_lr


def validate(s: TrainState, *, images: int | None = None) -> tuple[float, float, float]:
    """(val_loss, val_acc, val_macro_f1) of the state's model now (see `evaluate`); with
    `images`, on the first that many validation images only (the same subset every time).

    What each image got is left in `s.last_eval` (`PerImage`, in validation-split order).
    """
    return _validate_counts(s, images=images)[:3]


def _validate_counts(s: TrainState, *, images: int | None = None):
    """`validate` plus the confusion counts of the same pass; sets `s.last_eval`."""
    end = None if images is None else max(1, images)
    *metrics, per_image = evaluate_images(
        s.model,
        s.data.val_x[:end],
        s.data.val_y[:end],
        s.data.num_classes,
        device=s.device,
        batch_size=max(256, s.cfg.batch_size),
        amp_dtype=s.amp_dtype,
        channels_last=s.channels_last,
    )
    s.last_eval = per_image
    return tuple(metrics)


def train_epoch(
    s: TrainState, *, on_batch: Callable[[TrainState, int], None] | None = None
) -> EpochMetrics:
    """Train epoch `s.epoch`, validate, record the metrics in `s` and advance it by one epoch.

    What each validation image got is left in `s.last_eval` (see `validate`). A state without
    validation images (all data trains) records NaN validation metrics.

    `on_batch(s, batches_done)` runs after every batch but the last (see `train_model`).

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the message names epoch and step.
        ValueError: the state has trained all its epochs already.
    """
    if s.done:
        raise ValueError(f"train_epoch: the state has trained its {s.cfg.epochs} epochs, "
                         f"got epoch {s.epoch}. Build a new state")
    epoch = s.epoch
    t0 = time.perf_counter()
    train_loss, last_lr = _fit_epoch(s, epoch, on_batch)
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)
    train_seconds = time.perf_counter() - t0
    if s.validated:
        val_loss, val_acc, val_f1, confusion = _validate_counts(s)
    else:  # every image trains (`load_dataset(all_data=True)`): nothing is held out to score
        val_loss = val_acc = val_f1 = math.nan
        confusion = None
    images = s.data.steps * s.data.batch
    m = EpochMetrics(
        epoch=epoch,
        train_loss=train_loss,
        val_loss=val_loss,
        val_acc=val_acc,
        val_macro_f1=val_f1,
        seconds=time.perf_counter() - t0,
        images_per_s=images / train_seconds if train_seconds > 0 else float("inf"),
        lr=last_lr,
        confusion=confusion,
    )
    s.record(m)
    return m


def step_seconds(cfg: TrainConfig, *, data: DatasetSplits | None = None, warmup: int = 1,
                 timed: int = 3) -> float:
    """Seconds per training image of one training step of `cfg` (forward, backward, optimizer
    step on its training batches, as `train_epoch` runs it): the fastest of `timed` steps after
    `warmup`. On CUDA wall seconds (synchronised); on a CPU the process's CPU seconds, which other
    jobs on the machine do not inflate. The state it builds is thrown away."""
    import dataclasses

    s = build_state(cfg.replace(epochs=1), data=data)
    s.data = dataclasses.replace(s.data, steps=1)
    cuda = s.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    best = math.inf
    for i in range(warmup + timed):
        if cuda:
            torch.cuda.synchronize(s.device)
        t0 = clock()
        _fit_epoch(s, 0)
        if cuda:
            torch.cuda.synchronize(s.device)
        if i >= warmup:
            best = min(best, clock() - t0)
    return best / s.data.batch


def finish(s: TrainState, *, measure_latency_ms: bool = False) -> TrainResult:
    """The result of a state that has trained at least one epoch (optionally timing inference)."""
    if s.best is None:
        raise ValueError("finish: the state has trained no epoch, got epoch 0. Train one first")
    latency = None
    if measure_latency_ms:
        latency = measure_latency(
            s.model, s.cfg.image_size, s.device, channels_last=s.channels_last,
            amp_dtype=s.amp_dtype,
        )
    return TrainResult(
        model=s.model,
        info=s.info,
        history=list(s.history),
        best_epoch=s.best.epoch,
        best=s.best,
        latency_ms=latency,
        monitor=s.monitor,
    )


def train_model(
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_start: Callable[[RunInfo], None] | None = None,
    monitor: Monitor = "val_acc",
    measure_latency_ms: bool = False,
    data: DatasetSplits | None = None,
    start: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    on_batch: Callable[[TrainState, int], None] | None = None,
) -> TrainResult:
    """Train `cfg.backbone` + `cfg.fusion` head for `cfg.epochs` epochs on `cfg.data`.

    `build_state`, then `train_epoch` until done, then `finish`.

    Args:
        on_epoch: called after every epoch; an exception it raises stops training and propagates
            (the objective raises optuna.TrialPruned from it).
        on_start: called once the model is built, before the first step.
        monitor: the metric that picks `best_epoch` (val_loss is minimised, the others maximised).
        measure_latency_ms: also time a batch-1 forward pass after training.
        data: already loaded splits (default: `load_dataset(cfg)`, cached).
        start: continue this state (a `build_state(cfg)` given a checkpoint's
            `load_state_dict`) instead of building one; its earlier epochs are not passed to
            `on_epoch` again.
        on_state: called with the state after each epoch, after `on_epoch` (so a pruned epoch
            leaves no checkpoint): the place to save `state.state_dict()`.
        on_batch: `on_batch(state, batches_done)` after each batch but an epoch's last, in
            training mode; it may evaluate (and must put the model back with `.train()`) or
            raise to stop (reports within an epoch, `hpo.trial.subepoch`).

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the message names epoch and step.
        ConfigError: bad data, device or weights; a `start` state of another config.
    """
    if start is not None:
        if start.cfg != cfg:
            raise ConfigError("start: must be a state of the same config, got one of "
                              f"backbone={start.cfg.backbone!r}, seed={start.cfg.seed}. "
                              "Build it with build_state(cfg)")
        state = start
        if state.monitor != monitor:
            state.set_monitor(monitor)
    else:
        state = build_state(cfg, data=data, monitor=monitor)
    if on_start is not None:
        on_start(state.info)
    while not state.done:
        m = train_epoch(state, on_batch=on_batch)
        if on_epoch is not None:
            on_epoch(m)
        if on_state is not None:
            on_state(state)
    return finish(state, measure_latency_ms=measure_latency_ms)
