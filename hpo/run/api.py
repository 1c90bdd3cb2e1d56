"""The Python API of a study run: `load_space`, `plan_run`, `run_study` and its `StudyResult`.

`vcr-hpo run` parses its arguments, calls `plan_run` once, prints the plan's notes and hands the
plan to `run_study`; the benches call them too. Everything that needs no storage (the space,
overrides, this machine's devices and the workers' placements on them, data, drivers and weight
files) is checked in `plan_run`, so bad input raises ConfigError with nothing written. The
`RunPlan` it returns is the one description of the run: `run_study` and every worker process run
it as it is, without planning again.

    import hpo

    space = hpo.load_space("search_spaces/hyperparameters.yaml")
    result = hpo.run_study(space, storage="sqlite:///studies/demo.db", n_trials=4,
                           overrides={"epochs": 1, "image_size": 32})
    print(result.reason, result.counts, result.best.params if result.best else None)

    plan = hpo.plan_run(space, n_trials=4, workers=2)  # or plan first, look, then run it
    result = hpo.run_study(plan)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .parallel import bar_best, run_workers, start_workers, worker_command, workers_outcome

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from ..config import TrainConfig
    from ..space import SearchSpace
    from .devices import WorkerPlacement, Workers
    from .isolation import IsolatedObjective
    from .warm_start import WarmStart

__all__ = [
    "RunPlan",
    "StudyResult",
    "grid_points",
    "load_space",
    "plan_run",
    "run_study",
    "set_cpu_threads",
    "start_workers",
    "worker_command",
]

#: Heartbeat settings come from the environment so tests (and impatient users) can shorten them.
HEARTBEAT_ENV, GRACE_ENV = "VCR_HPO_HEARTBEAT", "VCR_HPO_GRACE"


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space YAML file (`hpo.space.load_search_space`).

    Raises:
        SearchSpaceError: every problem of the file, one line each.
    """
    from ..space import load_search_space

    return load_search_space(path)


def env_seconds(name: str, default: int) -> int:
    """A whole number of seconds >= 1 from the environment, else `default`."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"${name}: must be a whole number of seconds >= 1, got {raw!r}. "
                          f"Unset it (default {default}) or give e.g. {default}")
    return int(raw)


def grid_points(space: SearchSpace) -> int | None:
    """Points of a Grid or BruteForce space (the most trials it can run); None for others.

    Grid: the product of every parameter's values (Optuna's grid ignores `when:`).
    BruteForce: the distinct parameter sets, with conditional parameters counted where enabled.
    """
    from ..algorithms import FINITE_SPACE_SAMPLERS

    kind = space.study.sampler.type
    if kind not in FINITE_SPACE_SAMPLERS:
        return None
    params = list(space.params)
    if kind == "Grid" or not any(p.when for p in params):
        return math.prod(p.grid_size() for p in params)

    def count(i: int, values: dict[str, Any]) -> int:
        if i == len(params):
            return 1
        p = params[i]
        if not p.enabled(values):
            return count(i + 1, values)
        return sum(count(i + 1, {**values, p.name: v}) for v in p.grid_values())

    return count(0, {})


def grid_note(space: SearchSpace, n_trials: int | None) -> str | None:
    """A line saying that `n_trials` exceeds a finite grid, else None."""
    points = grid_points(space)
    if points is None or not n_trials or n_trials <= points:
        return None
    return (f"note: n_trials {n_trials} exceeds the {space.study.sampler.type} grid of {points} "
            f"points: the run ends when the grid is exhausted")


@dataclass(frozen=True)
class RunPlan:
    """A study run after every check that needs no storage: what `run_study` runs as it is."""

    space: SearchSpace
    overrides: Mapping[str, Any]
    cfg: TrainConfig  # the baseline TrainConfig (proves the combination is valid)
    study_name: str
    url: str
    n_trials: int
    timeout: float | None
    heartbeat: int
    grace: int
    grid_points: int | None
    placements: tuple[WorkerPlacement, ...]  # one per worker process (`hpo.run.devices.device_plan`)
    isolation: str  # "process" or "none" (`hpo.run.isolation`)
    threads: int  # torch CPU threads per worker
    default_storage: bool = False  # the URL is the default SQLite file: its folder is created
    artifacts: str | None = None  # --artifacts as checked; None: the study's recorded or default
    warm_start: WarmStart | None = None  # configurations to enqueue once (`--warm-start`)
    portfolio: WarmStart | None = None  # `study.portfolio` entries projected, enqueued once
    neighbours: WarmStart | None = None  # `study.neighbours` of trial 0, enqueued once

    @property
    def workers(self) -> int:
        """Worker processes (1: the trials run in the calling process)."""
        return len(self.placements)

    def for_worker(self, index: int) -> RunPlan:
        """The plan worker process `index` runs: its placement alone, nothing to enqueue (the
        parent did), and `cuda:N` as `cuda` (the worker's CUDA_VISIBLE_DEVICES holds that GPU)."""
        placement = self.placements[index]
        overrides, cfg = dict(self.overrides), self.cfg
        if placement.gpu is not None and cfg.device.startswith("cuda:"):
            overrides["device"] = "cuda"
            cfg = cfg.replace(device="cuda")
        return dataclasses.replace(self, placements=(placement,), overrides=overrides, cfg=cfg,
                                   warm_start=None, portfolio=None, neighbours=None)


@dataclass(frozen=True)
class StudyResult:
    """What `run_study` leaves: the study, its trial counts by state, the best trial, and why
    the run ended ("target reached", "timeout", "grid exhausted", "stopped")."""

    study: optuna.Study
    storage: str
    counts: Mapping[str, int]
    best: FrozenTrial | None
    reason: str
    detail: str
    ran: int
    plan: RunPlan = field(repr=False)

    @property
    def finished(self) -> int:
        """COMPLETE + PRUNED trials: what `n_trials` counts."""
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


def _check_overrides(overrides: Mapping[str, Any] | None,
                     flags: Mapping[str, str] | None) -> dict[str, Any]:
    """The one check of run overrides (`check_field`), each named as the flag that gave it."""
    from ..config import check_field

    flags = flags or {}
    return {k: check_field(k, v, where=flags.get(k, f"--set {k}"))
            for k, v in dict(overrides or {}).items()}


def _searched_override(space: SearchSpace, overrides: Mapping[str, Any]) -> None:
    searched = sorted({p.name for p in space.params} & set(overrides))
    if searched:
        key = searched[0]
        raise ConfigError(f"--set {key}: is searched by the space, got {overrides[key]!r}. "
                          f"Narrow its choices in {space.source} instead, or move it to fixed:")


def plan_run(
    space: SearchSpace | str | os.PathLike,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    override_flags: Mapping[str, str] | None = None,
    artifacts: str | None = None,
    warm_start: str | None = None,
    workers: Workers = 1,
    gpus: Sequence[str] | str | None = None,
    workers_per_gpu: int | None = None,
    trial_isolation: str | None = None,
    threads: int | None = None,
    preflight: bool = True,
) -> RunPlan:
    """Check everything a run needs before touching storage, once; `run_study(plan)` runs it.

    Args:
        space: a parsed SearchSpace or the path of its YAML file.
        storage: an Optuna RDB URL; default `sqlite:///studies/<study name>.db` (the folder is
            created when the run starts).
        study_name: default the space's `study.name`.
        n_trials: finished trials (COMPLETE + PRUNED) the study should hold; default the space's.
        timeout: seconds after which no new trial starts; default the space's.
        overrides: TrainConfig fields that win over params and fixed values for every trial
            (`--set`, `--data`, `--device`); checked here and nowhere else.
        override_flags: the flag each override came from, for messages (the CLI gives
            {"data": "--data"} for `--data`); default `--set KEY`.
        artifacts: where trial files go (a folder, s3://bucket/prefix, gs://bucket/prefix);
            default: the location recorded in the study, else `studies/<study>-artifacts`.
        warm_start: `SOURCE[:k]` (`hpo.run.warm_start`): the source is read and its top-k fitted
            to the space here, so a bad or missing source writes nothing.
        workers: processes on one storage; above 1 `run_study` starts and watches them.
            "auto": one per visible GPU (`gpus`), else one per idle CPU core.
        gpus: physical GPU ids ("0,1,3" or a sequence) the workers go round-robin over; each
            worker process gets its own `CUDA_VISIBLE_DEVICES` (`hpo.run.devices.device_plan`).
        workers_per_gpu: workers sharing one GPU.
        trial_isolation: "process" runs each trial in a forked child (`hpo.run.isolation`), "none"
            in the worker itself; default the space's `study.trial_isolation`.
        threads: torch CPU threads per worker; default the idle cores split between workers.
        preflight: check this machine (device, data, storage driver, weight files).

    Returns:
        The RunPlan: the baseline config, storage URL, one placement per worker, isolation
        mode, threads, and the warm-start and portfolio configurations to enqueue.

    Raises:
        ConfigError: bad input, one line (SearchSpaceError: every problem of the file).
    """
    from ..study import check_storage_url, default_storage_url
    from ..trial.artifacts import check_location

    checked = _check_overrides(overrides, override_flags)
    if isinstance(space, (str, os.PathLike)):
        space = load_space(space)
    _searched_override(space, checked)
    cfg = space.config_for(space.baseline(), checked)
    name = study_name or space.study.name
    url = check_storage_url(storage) if storage else default_storage_url(name)
    if artifacts is not None:
        artifacts = check_location(artifacts)
    target = n_trials or space.study.n_trials
    if not target:
        raise ConfigError(f"{space.source}: study.n_trials: needed to know when to stop, got null. "
                          "Set it in the space or pass --n-trials N")
    heartbeat = env_seconds(HEARTBEAT_ENV, 10)
    grace = env_seconds(GRACE_ENV, 30)
    if grace <= heartbeat:
        raise ConfigError(f"${GRACE_ENV}: must exceed the heartbeat interval ({heartbeat} s), got "
                          f"{grace}. Give a grace period of at least twice the interval")
    warm = None
    if warm_start is not None:
        from .warm_start import load_warm_start

        warm = load_warm_start(warm_start, space, storage=storage, run_url=url, run_study=name)
    portfolio = None
    if space.study.portfolio:
        from .portfolio import plan_portfolio

        portfolio = plan_portfolio(space)
    neighbours = None
    if space.study.neighbours:
        from .portfolio import plan_neighbours

        neighbours = plan_neighbours(space)
    if preflight:
        from .preflight import check_run_locations
        from .preflight import preflight as check_machine

        check_run_locations(url, name, artifacts)
        check_machine(cfg, space=space, overrides=checked, storage=url, where=str(space.source))
    placements = _plan_devices(cfg.device, workers, gpus, workers_per_gpu)
    isolation = _isolation(space, trial_isolation)
    if threads is None:
        from ..study import cpu_threads

        threads = cpu_threads(len(placements))
    return RunPlan(space=space, overrides=checked, cfg=cfg, study_name=name, url=url,
                   n_trials=int(target),
                   timeout=timeout if timeout is not None else space.study.timeout,
                   heartbeat=heartbeat, grace=grace, grid_points=grid_points(space),
                   placements=tuple(placements), isolation=isolation, threads=threads,
                   default_storage=not storage, artifacts=artifacts, warm_start=warm,
                   portfolio=portfolio, neighbours=neighbours)


def set_cpu_threads(device: str, requested: int | None, workers: int) -> int:
    """Torch threads per worker (`requested`, else the idle-core rule `hpo.study.cpu_threads`);
    set in this process when it trains on the CPU. Returns the number."""
    import torch

    from ..study import cpu_threads
    from .devices import cuda_present

    threads = requested or cpu_threads(workers)
    # cuda_present asks NVML, not the CUDA runtime: a parent that forks trial children must
    # not initialise CUDA (torch.cuda.is_available() would poison fork).
    if device == "cpu" or (device == "auto" and not cuda_present()):
        torch.set_num_threads(threads)
    return threads


def _plan_devices(device: str, workers: Workers, gpus: Sequence[str] | str | None,
                  workers_per_gpu: int | None) -> list[WorkerPlacement]:
    """`hpo.run.devices.device_plan` for a run: one `WorkerPlacement` per worker process."""
    from ..study import cpu_threads
    from .devices import device_plan, parse_gpus

    if isinstance(gpus, str):
        gpus = parse_gpus(gpus)
    cpu_workers = cpu_threads(1) if workers == "auto" else 1  # one 1-thread worker per idle core
    return device_plan(workers, tuple(gpus) if gpus is not None else None, workers_per_gpu,
                       device, cpu_workers=cpu_workers)


def _place_here(placement) -> None:
    """Give this process the placement's GPU (single-process runs and each worker)."""
    if placement.gpu is None:
        return
    import torch

    env = placement.env()
    if (os.environ.get("CUDA_VISIBLE_DEVICES") != env["CUDA_VISIBLE_DEVICES"]
            and torch.cuda.is_initialized()):
        raise ConfigError(f"--gpus: CUDA is initialised in this process already, got GPU "
                          f"{placement.gpu}. Call run_study before any CUDA work, or set "
                          "CUDA_VISIBLE_DEVICES yourself")
    os.environ.update(env)


def _result(study: optuna.Study, plan: RunPlan, reason: str, detail: str, ran: int) -> StudyResult:
    from ..study import count_states, study_id, top_trials

    counts = count_states(study, study_id(study))
    best = top_trials(study, 1)
    return StudyResult(study=study, storage=plan.url, counts={s.name: n for s, n in counts.items()},
                       best=best[0] if best else None, reason=reason, detail=detail, ran=ran,
                       plan=plan)


def run_study(
    space_or_plan: RunPlan | SearchSpace | str | os.PathLike,
    *,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    allow_space_change: bool = False,
    progress: bool = False,
    worker_index: int = 0,
    **planning: Any,
) -> StudyResult:
    """Run or resume a study until it holds `n_trials` finished trials (COMPLETE + PRUNED).

    `run_study(plan)` runs a `plan_run` result as it is; `run_study(space, **planning)` is
    `run_study(plan_run(space, **planning))`. The same call again resumes: finished trials are
    kept, interrupted or orphaned ones are retried with the same params, a seeded sampler does
    not replay earlier draws. Trials checkpoint in the artifact store after each epoch, a retried
    trial resumes from its origin's checkpoint, and the best trials' final weights are kept there.

    Args:
        space_or_plan: a `RunPlan`, or a parsed SearchSpace or the path of its YAML file.
        callbacks: `callback(study, frozen_trial)` after each trial (single worker only); one
            may call `study.stop()`.
        allow_space_change: resume although the space or overrides changed.
        progress: show a progress bar on stderr.
        worker_index: this process's worker number (the worker processes give theirs).
        **planning: the keywords of `plan_run` (`storage`, `study_name`, `n_trials`, `timeout`,
            `overrides`, `artifacts`, `warm_start`, `workers`, `gpus`, `workers_per_gpu`,
            `trial_isolation`, `threads`), with a space only: a plan has them already.

    Returns:
        The study, its counts by state, its best trial (None before any COMPLETE one) and why
        the run ended.

    Raises:
        TypeError: planning keywords given with a plan.
        ConfigError: bad input (nothing written), a changed space, or trials that failed with
            the same configuration error whatever their params (FixedInputError).
        RunInterrupted: SIGINT/SIGTERM; the running trials are marked and retried on resume.
        VcrHpoError: storage faults, workers that failed, too many failures in a row.
    """
    import optuna

    from .. import study as S
    from .console import Progress

    if isinstance(space_or_plan, RunPlan):
        if planning:
            raise TypeError(f"run_study(plan): the plan holds {', '.join(sorted(planning))} "
                            "already. Give them to plan_run, or pass the space instead of a plan")
        plan = space_or_plan
    else:
        plan = plan_run(space_or_plan, **planning)
    if callbacks and plan.workers > 1:
        raise ConfigError(f"callbacks: run in the worker processes' parent, got {len(callbacks)} "
                          f"with workers={plan.workers}. Use workers=1 with callbacks")
    space, url = plan.space, plan.url
    path = S.sqlite_path(url)
    if plan.default_storage and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    set_cpu_threads(plan.cfg.device, plan.threads, plan.workers)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says it better
    db = S.build_storage(url, heartbeat_interval=plan.heartbeat, grace_period=plan.grace)
    with S.translate_storage_errors(url):
        study = S.open_study(space, db, study_name=plan.study_name, overrides=plan.overrides,
                             allow_space_change=allow_space_change, worker_index=worker_index,
                             n_trials=plan.n_trials)
        store = _open_artifacts(study, plan)
        from .warm_start import enqueue_warm_start

        # once per study each, after trial 0 (`open_study`): the earlier study's best, then the
        # shipped portfolio, then trial 0's one-change neighbours
        for start in (plan.warm_start, plan.portfolio, plan.neighbours):
            if start is not None and start.configs:
                enqueue_warm_start(study, start)
        counts = S.count_states(db, S.study_id(study))
        bar = Progress(target=plan.n_trials, metric=space.study.metrics[0],
                       maximize=space.study.directions[0] == "maximize",
                       finished=S.finished_count(counts), best=bar_best(study),
                       epochs=plan.cfg.epochs, enabled=progress)
        try:
            if plan.workers > 1:
                run_workers(study, plan, bar, allow_space_change)
                outcome = workers_outcome(study, plan)
            else:
                _place_here(plan.placements[0])
                outcome = _run_here(study, plan, bar, callbacks, worker_index, store)
        finally:
            bar.close()
        return _result(study, plan, outcome.reason, outcome.detail, outcome.ran)


def _open_artifacts(study, plan: RunPlan):
    """The study's artifact store; the location is recorded in the study for later commands,
    with the study's scope (its checkpoints' own folder) on a first run."""
    from ..trial.artifacts import artifact_store, record_location, study_location

    location = study_location(study, plan.url, plan.artifacts)
    scope = record_location(study, location)
    return artifact_store(plan.url, plan.study_name, location, scope=scope)


def _isolation(space: SearchSpace, requested: str | None) -> str:
    from .isolation import ISOLATION_MODES

    mode = requested if requested is not None else space.study.trial_isolation
    if mode not in ISOLATION_MODES:
        raise ConfigError(f"--trial-isolation: must be one of {', '.join(ISOLATION_MODES)}, got "
                          f"{mode!r}. Give --trial-isolation process or none")
    return mode


def _run_here(study, plan: RunPlan, bar, callbacks, worker_index: int, store=None):
    from .. import study as S
    from ..algorithms import build_sampler
    from ..trial.checkpoint import keep_best_weights
    from ..trial.objective import Objective

    space = plan.space
    objective: Objective | IsolatedObjective = Objective(
        space, overrides=plan.overrides, on_epoch=bar.epoch, artifacts=store)
    if store is not None:
        top, per_backbone = space.study.keep_weights
        callbacks = [*callbacks, keep_best_weights(store, top=top, per_backbone=per_backbone)]
    if plan.isolation == "process":
        from .isolation import IsolatedObjective

        objective = IsolatedObjective(objective, stall_timeout=space.study.trial_stall_timeout)
    seed = space.study.sampler.args.get("seed")
    if space.study.report_every is not None:  # pruner steps: epochs in the YAML, images here
        from ..algorithms import build_pruner
        from ..trial.subepoch import epoch_images, scale_pruner

        study.pruner = build_pruner(scale_pruner(space.study.pruner, epoch_images(plan.cfg)))
    if store is not None:  # a Paired pruner reads every trial's validation records there
        from ..trial.record_store import attach_records

        attach_records(study.pruner, store)

    def reseed(n_existing: int):
        return build_sampler(space, seed=S.sampler_seed(seed, n_existing, worker_index))

    with S.interrupt_on_signals():
        return S.run_trials(study, objective, n_trials=plan.n_trials, timeout=plan.timeout,
                            on_trial=bar.trial, callbacks=callbacks, reseed=reseed,
                            grid_points=plan.grid_points)
