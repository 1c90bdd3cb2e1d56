"""Every use of Optuna's private names, in one place (tests/hpo/study/test_optuna_private.py pins them).

When an Optuna upgrade renames one of these, that test fails first and names the attribute;
nothing else in vcr-hpo reaches behind Optuna's public API.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeGuard

import optuna

if TYPE_CHECKING:
    from optuna.storages._heartbeat import BaseHeartbeat

__all__ = [
    "ARTIFACT_ATTR_PREFIX",
    "PRIVATE_ATTRIBUTES",
    "PRIVATE_NAMES",
    "base_heartbeat",
    "grid_size",
    "grpc_proxy_server",
    "heartbeat_enabled",
    "models",
    "set_constraints",
    "stop_requested",
    "storage_of",
    "study_id",
    "trial_id",
    "trial_started_column",
    "unwrap_storage",
]

#: The Optuna private names this module reads, "module:attribute" as a fresh import resolves
#: them (tests/hpo/study/test_optuna_private_names.py resolves each and checks this list is complete).
PRIVATE_NAMES = (
    "optuna.storages._heartbeat:is_heartbeat_enabled",
    "optuna.storages._heartbeat:BaseHeartbeat",
    "optuna.storages._rdb.models:TrialModel._datetime_start_utc",
    "optuna.storages._rdb.models:TrialValueModel",
    "optuna.storages._rdb.models:TrialHeartbeatModel",
    "optuna.storages._rdb.models:TrialUserAttributeModel",
    "optuna.study._constrained_optimization:_CONSTRAINTS_KEY",
    "optuna.artifacts._upload:ARTIFACTS_ATTR_PREFIX",  # its value, spelled out below
    "optuna.storages._grpc.server:make_server",
)

#: Private attributes an object gets in `__init__`, "Class.attribute" (checked on live objects).
PRIVATE_ATTRIBUTES = (
    "Study._study_id",
    "Study._storage",
    "Study._thread_local",
    "Study._stop_flag",
    "Trial._trial_id",
    "FrozenTrial._trial_id",
    "_CachedStorage._backend",
    "GridSampler._all_grids",
)

#: Prefix of the system attrs where `optuna.artifacts.upload_artifact` keeps each artifact's
#: metadata (JSON); optuna-dashboard deletes an artifact by setting it to null.
ARTIFACT_ATTR_PREFIX = "artifacts:"


def study_id(study: optuna.Study) -> int:
    """The study's row id in its storage (Optuna keeps it private)."""
    return study._study_id


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study talks to (Optuna's cache wrapper around an RDB storage)."""
    return study._storage


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The trial's row id (not its number)."""
    return trial._trial_id


def unwrap_storage(storage: Any) -> Any:
    """A Study or a storage -> the storage under Optuna's `_CachedStorage` wrapper."""
    storage = getattr(storage, "_storage", storage)  # a Study
    return getattr(storage, "_backend", storage)  # its _CachedStorage


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> TypeGuard[BaseHeartbeat]:
    """Whether the storage records heartbeats (a BaseHeartbeat with an interval set)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def base_heartbeat() -> type:
    """Optuna's heartbeat interface: a storage implementing it gets `fail_stale_trials`."""
    from optuna.storages._heartbeat import BaseHeartbeat

    return BaseHeartbeat


def grpc_proxy_server(storage: optuna.storages.BaseStorage, host: str, port: int, pool: Any):
    """Optuna's gRPC proxy server, bound but not started: `run_grpc_proxy_server` without its
    blocking wait, so that the caller starts it, handles signals and stops it cleanly."""
    from optuna.storages._grpc.server import make_server

    return make_server(storage, host, port, pool)


def models():
    """Optuna's SQLAlchemy models: status counts and ranks run as SQL on 10,000-trial studies."""
    from optuna.storages._rdb import models as m

    return m


def trial_started_column():
    """The column holding a trial's start time (UTC, naive)."""
    return models().TrialModel._datetime_start_utc


@contextmanager
def stop_requested(study: optuna.Study) -> Iterator[list[bool]]:
    """Let `study.stop()` be called outside `optimize` and report whether it was.

    Optuna's Grid and BruteForce samplers call `study.stop()` from `after_trial` (inside
    `study.tell`) once every point ran; outside `optimize` that raises RuntimeError. Inside this
    block the call only sets the flag; the yielded list holds one bool after the block: stopped.
    """
    local = study._thread_local
    was, flag = getattr(local, "in_optimize_loop", False), study._stop_flag
    local.in_optimize_loop = True
    study._stop_flag = False
    out: list[bool] = []
    try:
        yield out
    finally:
        out.append(bool(study._stop_flag))
        local.in_optimize_loop = was
        study._stop_flag = flag


def grid_size(sampler: optuna.samplers.BaseSampler) -> int | None:
    """Points of a GridSampler's grid; None for other samplers."""
    if isinstance(sampler, optuna.samplers.GridSampler):
        return len(sampler._all_grids)
    return None


def constraints_key() -> str:
    """The system attr that holds a trial's constraint list (what `constraints_func` writes and
    optuna-dashboard reads; Optuna 5's `FrozenTrial.constraints` reads it too)."""
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    return _CONSTRAINTS_KEY


def set_constraints(trial: optuna.Trial, values: list[float]) -> None:
    """Store a running trial's constraint values (feasible when all are <= 0)."""
    storage_of(trial.study).set_trial_system_attr(trial_id(trial), constraints_key(),
                                                  [float(v) for v in values])
