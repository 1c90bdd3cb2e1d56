"""The trainer (imports no Optuna): TrainConfig -> model trained on cached uint8 tensors.

A run is a few named steps, so a caller can stop after any epoch and continue later:
`build_state` (model, loss, optimizer, scheduler, scaler, data on the device) ->
`train_epoch` (one epoch + validation, recorded in the state) ... -> `finish` (TrainResult).
`TrainState.state_dict()` / `load_state_dict()` cover weights, optimizer, scheduler, scaler and
every RNG, so a resumed run ends with the same weights and metrics as an uninterrupted one (on
CPU, exactly). `train_model` composes the steps.

Private modules: `_device` (device, AMP, seeds), `_augment` (normalise, augment), `_evaluate`
(metrics, latency), `_state` (metrics, results, TrainState), `_build`, `_loop`, `_save`. The
parts a config names, by name: `heads`, `losses`, `optim` (optimizers and schedules).
"""

from __future__ import annotations

from ._augment import augment, normalise
from ._build import build_state
from ._device import resolve_device
from ._evaluate import (
    Confusion,
    PerImage,
    evaluate,
    evaluate_counts,
    evaluate_images,
    measure_latency,
)
from ._loop import finish, step_seconds, train_epoch, train_model, validate
from ._save import save_run
from ._state import (
    EpochMetrics,
    NonFiniteLossError,
    RunInfo,
    TrainData,
    TrainResult,
    TrainState,
)

__all__ = [
    "Confusion",
    "EpochMetrics",
    "NonFiniteLossError",
    "PerImage",
    "RunInfo",
    "TrainData",
    "TrainResult",
    "TrainState",
    "augment",
    "build_state",
    "evaluate",
    "evaluate_counts",
    "evaluate_images",
    "finish",
    "measure_latency",
    "normalise",
    "resolve_device",
    "save_run",
    "step_seconds",
    "train_epoch",
    "train_model",
    "validate",
]
