"""The Optuna objective: the only code that touches a Trial (suggest, report, prune, user attrs)."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import optuna
import torch

from ..attrs import (
    ARTIFACT_ERROR,
    BEST_EPOCH,
    BEST_METRICS,
    CHECKPOINT_ERROR,
    CHECKPOINT_IDENTITY,
    CONFUSION,
    DEVICE,
    EPOCH_SECONDS,
    FAIL_REASON,
    FEATURE_CHANNELS,
    FEATURE_STRIDES,
    GPU,
    GPU_ENV,
    IMAGES_PER_S,
    MEMORY_PREFLIGHT,
    NUM_PARAMS,
    PER_CLASS_RECALL,
    REPORT_SECONDS,
    RESUME_NOTE,
    RESUMED_FROM_EPOCH,
    RESUMED_FROM_TRIAL,
    STEP_COST,
    TRIAL_EPOCHS,
    VERSIONS,
)
from ..constraints import (
    INFEASIBLE_ATTR,
    OUT_OF_MEMORY,
    constraint_values,
    infeasible_values,
    is_out_of_memory,
)
from ..metrics import EPOCH_METRICS, metric_values, per_class_recall
from ..records import VALUE_STEP_ATTR
from ..train import EpochMetrics, NonFiniteLossError, RunInfo, build_state, train_model
from .equal_compute import equal_compute_epochs, step_costs
from .fidelity import GridReports, grid_reports, train_seconds
from .memory import memory_preflight
from .record_store import RecordWriter
from .subepoch import DEFAULT_VAL_IMAGES, SubEpochReports

if TYPE_CHECKING:
    from ..space import SearchSpace
    from ..train._loop import Monitor

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
    if isinstance(exc, MemoryError) and not str(exc).strip():
        return "MemoryError: the allocator refused (out of memory)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:_REASON_CHARS]


def record_feasibility(trial: Any, reason: str | None) -> None:
    """Write the constraint of a trial about to be told COMPLETE: infeasible when `reason`.

    An isolated trial's child passes its proxy, whose `record_constraints` sends the values to
    the parent (`hpo.run.isolation`); a real trial writes them through `hpo.study._optuna`.
    """
    from ..study._optuna import set_constraints

    if reason:
        trial.set_user_attr(INFEASIBLE_ATTR, reason)
    forward = getattr(trial, "record_constraints", None)
    if forward is not None:
        forward(constraint_values(reason))
    else:
        set_constraints(trial, constraint_values(reason))


class Objective:
    """Callable for `study.optimize`: suggest -> TrainConfig -> train -> metric(s).

    Single objective: reports the first metric each epoch (step = epoch index; with
    `study.report_every` also within epochs, step = training images seen, `hpo.trial.subepoch`;
    with `study.fidelity: seconds` at each grid point of training seconds passed,
    `hpo.trial.fidelity`) and prunes when the pruner says so;
    a NaN loss prunes the trial. Several objectives: no reports (Optuna cannot prune them); a NaN
    loss returns NaN values, which Optuna records as FAIL. Any other error sets `fail_reason`
    and propagates: run `study.optimize(..., catch=(Exception,))` so the study goes on.

    Args:
        space: the validated search space (metrics and directions come from `space.study`).
        overrides: fields that win over params and fixed values (CLI `--set`, `--data`, `--device`).
        on_epoch: `on_epoch(trial_number, metrics)` after each epoch, for progress display.
        artifacts: the study's artifact store (`hpo.trial.artifacts.artifact_store`). With it each
            epoch replaces the trial's checkpoint, and a retried trial resumes from its
            origin's (`hpo.trial.checkpoint`): user attr `resumed_from_epoch`, or `resume_note`.
            Finished and pruned trials upload their confusion matrix (PNG, JSON) and learning
            curves there (`hpo.trial.figures`); the counts are kept as user attr `confusion`
            either way.
            Every reported evaluation also leaves its per-image record there (`hpo.records`,
            keyed by the reported step); user attr `value_step` names the best epoch's step.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        overrides: Mapping[str, Any] | None = None,
        on_epoch: Callable[[int, EpochMetrics], None] | None = None,
        artifacts: Any = None,
    ) -> None:
        self.space = space
        self.artifacts = artifacts
        self.overrides = dict(overrides or {})
        self.on_epoch = on_epoch
        self.metrics: tuple[str, ...] = tuple(space.study.metrics)
        primary = self.metrics[0]
        # EPOCH_METRICS are the Monitor names
        self.monitor: Monitor = cast("Monitor", primary) if primary in EPOCH_METRICS else "val_acc"

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        writers: list[Any] = []  # the trial's checkpoint writer: told only once it has written
        try:
            return self._trial(trial, writers)
        finally:
            for writer in writers:
                self._close_writer(trial, writer)

    def _trial(self, trial: optuna.Trial, writers: list[Any]) -> float | tuple[float, ...]:
        single = len(self.metrics) == 1
        history: list[EpochMetrics] = []
        run: list[RunInfo] = []
        start = None
        recorder = RecordWriter(trial, self.artifacts) if self.artifacts is not None else None
        reports = self._sub_epoch_reports(trial, recorder) if single else None
        clock: GridReports | None = None

        def step_of(epoch: int) -> int:  # the step an epoch's end is reported (and recorded) at
            return epoch if reports is None else reports.epoch_step(epoch)
        try:
            params = self.space.suggest(trial)
            cfg = self.space.config_for(params, self.overrides)
            ratio = None
            if "compute" in (self.space.study.trial_length, self.space.study.fidelity):
                default = self.space.config_for(self.space.baseline(), self.overrides)
                cost, cost_default = step_costs(trial.study, cfg, default)
                ratio = cost / cost_default
                trial.set_user_attr(STEP_COST, cost)  # study.choose: cheapest_within_1se
                if self.space.study.trial_length == "compute":
                    epochs = equal_compute_epochs(default.epochs, cost_default, cost,
                                                  warmup_epochs=cfg.warmup_epochs)
                    cfg = cfg.replace(epochs=epochs)
                    trial.set_user_attr(TRIAL_EPOCHS, epochs)
            clock = grid_reports(self.space.study, ratio) if single else None
            start, on_state = None, None
            if self.artifacts is not None:
                start, on_state = self._checkpointing(trial, params, cfg, reports, clock,
                                                      writers)

            def started(info: RunInfo) -> None:
                run.append(info)
                for key, value in (
                    (FEATURE_CHANNELS, info.feature_channels),
                    (FEATURE_STRIDES, info.feature_strides),
                    (NUM_PARAMS, info.num_params),
                    (
                        DEVICE,
                        f"{info.device} ({info.device_name})"
                        if info.device_name != info.device
                        else info.device,
                    ),
                    (VERSIONS, library_versions()),
                ):
                    trial.set_user_attr(key, value)
                if info.device.startswith("cuda") and os.environ.get(GPU_ENV):
                    trial.set_user_attr(GPU, os.environ[GPU_ENV])  # physical id (hpo.run.devices)
                if reports is not None:
                    reports.start(info)

            def epoch_done(m: EpochMetrics) -> None:
                history.append(m)
                if self.on_epoch is not None:
                    self.on_epoch(trial.number, m)
                step = step_of(m.epoch)
                if recorder is not None:
                    recorder.write(step)  # before the report: the pruner may read it
                if single and self.metrics[0] in EPOCH_METRICS:
                    value = getattr(m, self.metrics[0])
                    if clock is not None:  # steps are grid points: each one passed, in order
                        for grid_step, known in clock.epoch_end(m.seconds, value):
                            trial.report(known, grid_step)
                            if trial.should_prune():
                                unit = ("s of training" if clock.per_epoch is None
                                        else "default epochs of compute")
                                raise optuna.TrialPruned(
                                    f"pruned at {grid_step} {unit} (epoch {m.epoch})")
                        return
                    trial.report(value, step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {m.epoch}")

            state = start if start is not None else build_state(cfg, monitor=self.monitor)
            if recorder is not None:
                recorder.watch(state)
            measured = memory_preflight(state)  # an infeasible config fails in seconds
            if measured:
                trial.set_user_attr(MEMORY_PREFLIGHT, measured)
            result = train_model(
                cfg,
                start=state,
                on_epoch=epoch_done,
                on_start=started,
                monitor=self.monitor,
                measure_latency_ms="latency_ms" in self.metrics,
                on_state=on_state,
                on_batch=None if reports is None else reports.on_batch,
            )
        except optuna.TrialPruned:
            if history and run:  # what the trial looked like at the epoch it stopped
                full = start.history if start is not None else history  # a resumed one's too
                self._explain(trial, full, history[-1], run[0])
            raise
        except NonFiniteLossError as exc:
            trial.set_user_attr(FAIL_REASON, _reason(exc))
            if single:
                raise optuna.TrialPruned(str(exc)) from exc
            return tuple(math.nan for _ in self.metrics)  # Optuna records NaN values as FAIL
        except Exception as exc:
            trial.set_user_attr(FAIL_REASON, _reason(exc))
            if not is_out_of_memory(exc):
                raise
            # Infeasible, not failed: told COMPLETE with the worst values and a violated
            # constraint, so the sampler learns the region (hpo.constraints says why).
            state = None  # (result was never bound: train_model raised)
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()  # give the next trial the memory back
            record_feasibility(trial, OUT_OF_MEMORY)
            values = infeasible_values(self.space.study.directions)
            return values[0] if single else values
        finally:
            if reports is not None and reports.count:
                trial.set_user_attr(REPORT_SECONDS, round(reports.seconds, 3))
            if history:
                trial.set_user_attr(EPOCH_SECONDS, [round(m.seconds, 3) for m in history])
                every = start.history if start is not None else history  # origin's epochs too
                for key, value in train_seconds([m.seconds for m in every]).items():
                    trial.set_user_attr(key, value)
                trial.set_user_attr(IMAGES_PER_S, [round(m.images_per_s, 1) for m in history])

        trial.set_user_attr(BEST_EPOCH, result.best_epoch)
        if recorder is not None:
            trial.set_user_attr(VALUE_STEP_ATTR, step_of(result.best_epoch))
        best = result.best
        trial.set_user_attr(
            BEST_METRICS,
            {
                k: round(float(getattr(best, k)), 5)
                for k in (*EPOCH_METRICS, "train_loss")
            },
        )
        self._explain(trial, result.history, result.best, result.info)
        values = metric_values(result, self.metrics)
        record_feasibility(trial, None)
        return values[0] if single else values

    def _explain(
        self,
        trial: optuna.Trial,
        history: list[EpochMetrics],
        epoch: EpochMetrics,
        info: RunInfo,
    ) -> None:
        """User attrs `confusion` and `per_class_recall` of `epoch`; its figures uploaded as artifacts when a store is set.

        Drawing or uploading never fails the trial: the error becomes user attr `artifact_error`.
        """
        if epoch.confusion is None:
            return
        class_names = info.class_names
        trial.set_user_attr(CONFUSION, {"epoch": epoch.epoch, "class_names": list(class_names),
                                          "matrix": [list(r) for r in epoch.confusion]})
        recall = per_class_recall(epoch.confusion, class_names)  # what accuracy hides on a tail
        trial.set_user_attr(PER_CLASS_RECALL,
                            {k: None if v is None else round(v, 4) for k, v in recall.items()})
        if self.artifacts is None:
            return
        import tempfile
        from pathlib import Path

        from .artifacts import upload
        from .figures import write_trial_figures

        try:
            with tempfile.TemporaryDirectory(prefix="vcr-hpo-figures-") as tmp:
                title = f"trial {trial.number}: {info.backbone}"
                for path in write_trial_figures(Path(tmp), history, class_names, epoch=epoch,
                                                title=title):
                    if hasattr(trial, "upload_file"):  # in a trial process: the parent uploads
                        trial.upload_file(path)
                    else:
                        upload(trial, self.artifacts, path)
        except Exception as exc:  # noqa: BLE001 - figures explain a trial, they never fail it
            trial.set_user_attr(ARTIFACT_ERROR, _reason(exc))

    def _checkpointing(self, trial: optuna.Trial, params: Mapping[str, Any], cfg: Any,
                       reports: SubEpochReports | None = None,
                       clock: GridReports | None = None, writers: list[Any] | None = None):
        """(state to resume or None, on_state saver) for a trial with an artifact store.

        The saver hands states to a `CheckpointWriter` (appended to `writers`; the caller
        closes it before the trial is told), which writes off the training thread and skips
        epochs whose checkpoint would cost more than it protects (`hpo.trial.checkpoint`)."""
        from ..study import _optuna
        from ..train import build_state
        from .checkpoint import (
            CheckpointWriter,
            checkpoint_identity,
            drop_checkpoints,
            find_checkpoint,
            retry_origins,
        )

        identity = checkpoint_identity(self.space, self.overrides, params, cfg)
        trial.set_user_attr(CHECKPOINT_IDENTITY, identity)  # kept weights: only its own
        system = getattr(trial, "system_attrs", None)  # a child trial (hpo.run.isolation) has them
        if system is None:
            system = _optuna.storage_of(trial.study).get_trial_system_attrs(
                _optuna.trial_id(trial))
        origins = retry_origins(system)
        start = None
        if origins:
            found = find_checkpoint(self.artifacts, origins, identity)
            note = found.note
            if found.state is not None:
                try:
                    start = build_state(cfg, monitor=self.monitor)
                    start.load_state_dict(found.state)
                except Exception as exc:  # noqa: BLE001 (any mismatch: start afresh, say why)
                    start = None
                    note = (f"checkpoint of trial {found.origin} does not load "
                            f"({_reason(exc)}); trained from epoch 0")
            if start is None:
                if note:
                    trial.set_user_attr(RESUME_NOTE, note[:_REASON_CHARS])
            else:
                metric = self.metrics[0]
                if len(self.metrics) == 1 and metric in EPOCH_METRICS:
                    if reports is not None:
                        reports.n_train = len(start.data.train_y)  # its steps count images
                    for m in start.history:  # the pruner sees the origin's curve, then ours
                        if clock is not None:  # the origin's epochs: its steps, its clock
                            for step, known in clock.epoch_end(m.seconds, getattr(m, metric)):
                                trial.report(known, step)
                            continue
                        step = m.epoch if reports is None else reports.epoch_step(m.epoch)
                        trial.report(getattr(m, metric), step)
                trial.set_user_attr(RESUMED_FROM_EPOCH, start.epoch)
                trial.set_user_attr(RESUMED_FROM_TRIAL, found.origin)
        superseded = list(origins)

        def dropped() -> None:  # on the writer thread, after a write
            if superseded:  # ours is newer: the origins' checkpoints are no longer needed
                drop_checkpoints(self.artifacts, superseded)
                superseded.clear()

        writer = CheckpointWriter(self.artifacts, trial.number, identity, after_write=dropped)
        if writers is not None:
            writers.append(writer)

        def on_state(state: Any) -> None:
            if writer.error is not None:
                return  # this trial's checkpoints could not be written: it trains on without
            if writer.due(state.history[-1].seconds, last=state.done):
                writer.submit(state.state_dict(), state.epoch)

        return start, on_state

    @staticmethod
    def _close_writer(trial: optuna.Trial, writer: Any) -> None:
        """Wait for the trial's last checkpoint; record a write error."""
        error = writer.close()
        if error is not None:  # a full or read-only disk costs the resume, not the trial
            trial.set_user_attr(CHECKPOINT_ERROR, _reason(error))

    def _sub_epoch_reports(self, trial: optuna.Trial,
                           recorder: RecordWriter | None = None) -> SubEpochReports | None:
        """Reports within an epoch (`study.report_every`): step = training images seen."""
        study = self.space.study
        if study.report_every is None or self.metrics[0] not in EPOCH_METRICS:
            return None

        def report(step: int, value: float) -> None:
            if recorder is not None:
                recorder.write(step)  # the subset just scored (state.last_eval)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {step} training images (within an epoch)")

        return SubEpochReports(study.report_every, study.report_val_images or DEFAULT_VAL_IMAGES,
                               self.metrics[0], report)
