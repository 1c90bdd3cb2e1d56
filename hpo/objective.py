"""The Optuna objective: the only code that touches a Trial (suggest, report, prune, user attrs)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optuna
import torch

from .metrics import EPOCH_METRICS, metric_values
from .subepoch import DEFAULT_VAL_IMAGES, SubEpochReports
from .train import EpochMetrics, NonFiniteLossError, RunInfo, train_model

if TYPE_CHECKING:
    from .space import SearchSpace

__all__ = ["EPOCH_METRICS", "Objective", "library_versions", "metric_values"]

_REASON_CHARS = 300  # fail_reason stays one short line in the dashboard


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on (stored with every trial)."""
    import importlib.metadata

    import timm
    import torchvision

    try:
        own = importlib.metadata.version("vcr-hpo")
    except importlib.metadata.PackageNotFoundError:
        own = "unknown"
    return {
        "vcr_hpo": own,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "optuna": optuna.__version__,
    }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory: lower batch_size or image_size, or use a smaller backbone"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:_REASON_CHARS]


class Objective:
    """Callable for `study.optimize`: suggest -> TrainConfig -> train -> metric(s).

    Single objective: reports the first metric each epoch (step = epoch index; with
    `study.report_every` also within epochs, step = training images seen, `hpo.subepoch`) and
    prunes when the pruner says so;
    a NaN loss prunes the trial. Several objectives: no reports (Optuna cannot prune them); a NaN
    loss returns NaN values, which Optuna records as FAIL. Any other error sets `fail_reason`
    and propagates: run `study.optimize(..., catch=(Exception,))` so the study goes on.

    Args:
        space: the validated search space (metrics and directions come from `space.study`).
        overrides: fields that win over params and fixed values (CLI `--set`, `--data`, `--device`).
        on_epoch: `on_epoch(trial_number, metrics)` after each epoch, for progress display.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        overrides: Mapping[str, Any] | None = None,
        on_epoch: Callable[[int, EpochMetrics], None] | None = None,
    ) -> None:
        self.space = space
        self.overrides = dict(overrides or {})
        self.on_epoch = on_epoch
        self.metrics: tuple[str, ...] = tuple(space.study.metrics)
        primary = self.metrics[0]
        self.monitor = primary if primary in EPOCH_METRICS else "val_acc"

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        single = len(self.metrics) == 1
        history: list[EpochMetrics] = []
        reports = self._sub_epoch_reports(trial) if single else None
        try:
            params = self.space.suggest(trial)
            cfg = self.space.config_for(params, self.overrides)

            def started(info: RunInfo) -> None:
                for key, value in (
                    ("feature_channels", info.feature_channels),
                    ("feature_strides", info.feature_strides),
                    ("num_params", info.num_params),
                    (
                        "device",
                        f"{info.device} ({info.device_name})"
                        if info.device_name != info.device
                        else info.device,
                    ),
                    ("versions", library_versions()),
                ):
                    trial.set_user_attr(key, value)
                if reports is not None:
                    reports.start(info)

            def epoch_done(m: EpochMetrics) -> None:
                history.append(m)
                if self.on_epoch is not None:
                    self.on_epoch(trial.number, m)
                if single and self.metrics[0] in EPOCH_METRICS:
                    step = m.epoch if reports is None else reports.epoch_step(m.epoch)
                    trial.report(getattr(m, self.metrics[0]), step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {m.epoch}")

            result = train_model(
                cfg,
                on_epoch=epoch_done,
                on_start=started,
                monitor=self.monitor,
                measure_latency_ms="latency_ms" in self.metrics,
                on_batch=None if reports is None else reports.on_batch,
            )
        except optuna.TrialPruned:
            raise
        except NonFiniteLossError as exc:
            trial.set_user_attr("fail_reason", _reason(exc))
            if single:
                raise optuna.TrialPruned(str(exc)) from exc
            return tuple(math.nan for _ in self.metrics)  # Optuna records NaN values as FAIL
        except Exception as exc:
            trial.set_user_attr("fail_reason", _reason(exc))
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()  # give the next trial the memory back
            raise
        finally:
            if reports is not None and reports.count:
                trial.set_user_attr("report_seconds", round(reports.seconds, 3))
            if history:
                trial.set_user_attr("epoch_seconds", [round(m.seconds, 3) for m in history])
                trial.set_user_attr("images_per_s", [round(m.images_per_s, 1) for m in history])

        trial.set_user_attr("best_epoch", result.best_epoch)
        best = result.best
        trial.set_user_attr(
            "best_metrics",
            {
                k: round(float(getattr(best, k)), 5)
                for k in (*EPOCH_METRICS, "train_loss")
            },
        )
        values = metric_values(result, self.metrics)
        return values[0] if single else values

    def _sub_epoch_reports(self, trial: optuna.Trial) -> SubEpochReports | None:
        """Reports within an epoch (`study.report_every`): step = training images seen."""
        study = self.space.study
        if study.report_every is None or self.metrics[0] not in EPOCH_METRICS:
            return None

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {step} training images (within an epoch)")

        return SubEpochReports(study.report_every, study.report_val_images or DEFAULT_VAL_IMAGES,
                               self.metrics[0], report)
