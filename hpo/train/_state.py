"""What a run is made of: per-epoch metrics, run facts, results, and the checkpointable state."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError, VcrHpoError
from ._evaluate import Confusion, PerImage
from .losses import EpochAware

__all__ = [
    "STATE_FORMAT",
    "EpochMetrics",
    "NonFiniteLossError",
    "RunInfo",
    "TrainData",
    "TrainResult",
    "TrainState",
]

#: Version of `TrainState.state_dict()`'s layout; a checkpoint of another version is refused.
STATE_FORMAT = 1


class NonFiniteLossError(VcrHpoError):
    """The training loss became NaN or infinite (learning rate too high, bad combination)."""


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics after one epoch. `epoch` is 0-based: the step reported to a pruner.

    `seconds` covers training and validation; `images_per_s` training only; `lr` is the rate of
    the epoch's last step. `confusion` counts the val split (rows true, columns predicted).
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    val_macro_f1: float
    seconds: float
    images_per_s: float
    lr: float
    confusion: Confusion | None = None

    def __post_init__(self) -> None:  # lists from JSON or a checkpoint -> hashable tuples
        if self.confusion is not None and not isinstance(self.confusion, tuple):
            object.__setattr__(self, "confusion", tuple(tuple(int(v) for v in r)
                                                        for r in self.confusion))


@dataclass(frozen=True)
class RunInfo:
    """What is known once the model is built, before the first step."""

    backbone: str
    feature_channels: dict[str, int]
    feature_strides: dict[str, int]
    num_params: int
    params_m: float
    device: str
    device_name: str
    amp: str | None
    channels_last: bool
    class_names: tuple[str, ...]
    num_train: int
    num_val: int


@dataclass
class TrainResult:
    """A finished run. `model` holds the final epoch's weights; `best` is the best epoch."""

    model: nn.Module
    info: RunInfo
    history: list[EpochMetrics]
    best_epoch: int
    best: EpochMetrics
    latency_ms: float | None = None
    monitor: str = "val_acc"

    @property
    def num_params(self) -> int:
        return self.info.num_params

    @property
    def params_m(self) -> float:
        return self.info.params_m

    @property
    def feature_channels(self) -> dict[str, int]:
        return self.info.feature_channels

    @property
    def feature_strides(self) -> dict[str, int]:
        return self.info.feature_strides

    @property
    def device(self) -> str:
        return self.info.device

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def confusion(self) -> Confusion | None:
        """The best epoch's val confusion counts (the epoch the trial's value comes from)."""
        return self.best.confusion


@dataclass(frozen=True)
class TrainData:
    """The splits placed for training: on the device when they fit, else pinned host memory.

    `steps` batches of `batch` images make an epoch (a ragged last batch is dropped).
    `sample_weights` (on the order generator's device) draws classes evenly when set.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    steps: int
    batch: int
    sample_weights: torch.Tensor | None


def is_better(a: EpochMetrics, b: EpochMetrics, monitor: str) -> bool:
    """Whether epoch `a` beats `b` on `monitor` (val_loss is minimised, the others maximised)."""
    if monitor == "val_loss":
        return a.val_loss < b.val_loss
    return getattr(a, monitor) > getattr(b, monitor)


@dataclass(eq=False)
class TrainState:
    """Everything a run holds between two epochs; `state_dict()` is what resuming needs.

    `epoch` counts finished epochs: the next epoch to train. Built by `build_state`; the
    fields above `monitor` are fixed by the config, the ones below change every epoch.
    """

    cfg: TrainConfig
    info: RunInfo
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    data: TrainData
    model: nn.Module
    criterion: EpochAware
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    order_gen: torch.Generator  # which images, in which order, each epoch
    augment_gen: torch.Generator  # flips, shifts, brightness and contrast
    monitor: str = "val_acc"
    epoch: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    best: EpochMetrics | None = None
    #: Per-image results of the latest evaluation (epoch end or mid-epoch); not checkpointed.
    last_eval: PerImage | None = None

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs

    @property
    def validated(self) -> bool:
        """Whether epochs are scored on held-out images (not when all the data trains)."""
        return len(self.data.val_y) > 0

    def record(self, m: EpochMetrics) -> None:
        """Append epoch `m`'s metrics, update the best epoch and advance `epoch`.

        Without validation the latest epoch is the "best": there is no score to pick by.
        """
        self.history.append(m)
        if self.best is None or not self.validated or is_better(m, self.best, self.monitor):
            self.best = m
        self.epoch = m.epoch + 1

    def set_monitor(self, monitor: str) -> None:
        """Pick the best epoch of the history again by `monitor`."""
        self.monitor, self.best = monitor, None
        for m in self.history:
            if self.best is None or not self.validated or is_better(m, self.best, monitor):
                self.best = m

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs: weights, optimizer, scheduler, scaler, loss, every RNG, history.

        Like `nn.Module.state_dict()` the tensors are the live ones: save (`torch.save`) before
        the next epoch. Only tensors and plain Python values, so `torch.load(weights_only=True)`
        reads it back.
        """
        return {
            "format": STATE_FORMAT,
            "config": self.cfg.to_dict(),
            "device_type": self.device.type,
            "epoch": self.epoch,
            "monitor": self.monitor,
            "history": [asdict(m) for m in self.history],
            "model": self.model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(self),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state` (a `state_dict()` of a run of the same config on this device type).

        Raises:
            ConfigError: another format, another config (the message names the fields that
                differ), another device type, or more epochs than the config trains.
        """
        where = "checkpoint"
        if state.get("format") != STATE_FORMAT:
            raise ConfigError(f"{where}: format must be {STATE_FORMAT}, got "
                              f"{state.get('format')!r}. Start the run afresh")
        own = self.cfg.to_dict()
        theirs = dict(state.get("config") or {})
        differ = sorted(k for k in own.keys() | theirs.keys() if own.get(k) != theirs.get(k))
        if differ:
            shown = ", ".join(f"{k}={theirs.get(k)!r} (now {own.get(k)!r})" for k in differ[:5])
            raise ConfigError(f"{where}: must come from the same config, got {shown}. "
                              "Start the run afresh")
        if state["device_type"] != self.device.type:
            raise ConfigError(f"{where}: must be resumed on the device type it was trained on, "
                              f"got {state['device_type']!r} (now {self.device.type!r}). "
                              f"Use device: {state['device_type']} or start afresh")
        if not 0 <= state["epoch"] <= self.cfg.epochs:
            raise ConfigError(f"{where}: epoch must lie in [0, {self.cfg.epochs}], got "
                              f"{state['epoch']!r}. Start the run afresh")
        self.model.load_state_dict(state["model"])
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.history = [EpochMetrics(**m) for m in state["history"]]
        self.set_monitor(state["monitor"])
        _set_rng_state(self, state["rng"])


def _rng_state(s: TrainState) -> dict[str, Any]:
    """Every generator a run draws from: torch (CPU and the CUDA device), numpy, python, ours."""
    state = np.random.get_state(legacy=True)
    if not isinstance(state, tuple):  # legacy=True promises the tuple form
        raise TypeError(f"numpy's legacy RNG state is not a tuple, got {type(state).__name__}")
    _, keys, pos, has_gauss, cached = state
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(s.device) if s.device.type == "cuda" else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "order": s.order_gen.get_state(),
        "augment": s.augment_gen.get_state(),
    }


def _set_rng_state(s: TrainState, rng: Mapping[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"], s.device)
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    s.order_gen.set_state(rng["order"])
    s.augment_gen.set_state(rng["augment"])
