"""Studies: storage backends by URL scheme, locks and claims, resume, status queries, the trial
loop, and the storage proxy (`_proxy`, `vcr-hpo storage-proxy`).

A package of private modules by concern (as Optuna's `storages/_rdb/`); this module re-exports
the names other modules and the tests import, and nothing else. Optuna's private names are used
only in `_optuna.py`.
"""

from __future__ import annotations

from ._backends import (
    STORAGE_BACKENDS,
    artifacts_home,
    build_storage,
    check_storage_url,
    claim_lock,
    default_storage_url,
    sqlite_path,
    storage_backend,
)
from ._claims import claim_trial, requeue_interrupted
from ._errors import DatabaseLockedError, translate_storage_errors
from ._loop import (
    FixedInputError,
    RunOutcome,
    TooManyFailuresError,
    distinct_points,
    run_one_trial,
    run_trials,
)
from ._optuna import study_id
from ._queries import (
    count_states,
    finished_count,
    get_study_id,
    rdb_storage,
    stale_running,
    study_status,
    top_trial_ids,
    top_trials,
)
from ._resume import (
    SpaceChangedError,
    open_study,
    package_version,
    resume_view,
    sampler_seed,
    space_diff,
)
from ._signals import RunInterrupted, interrupt_on_signals
from ._storage import GRACE_PERIOD
from ._threads import busy_cores, cpu_threads

__all__ = [
    "GRACE_PERIOD",
    "STORAGE_BACKENDS",
    "DatabaseLockedError",
    "FixedInputError",
    "RunInterrupted",
    "RunOutcome",
    "SpaceChangedError",
    "TooManyFailuresError",
    "artifacts_home",
    "build_storage",
    "busy_cores",
    "check_storage_url",
    "claim_lock",
    "claim_trial",
    "count_states",
    "cpu_threads",
    "default_storage_url",
    "distinct_points",
    "finished_count",
    "get_study_id",
    "interrupt_on_signals",
    "open_study",
    "package_version",
    "rdb_storage",
    "requeue_interrupted",
    "resume_view",
    "run_one_trial",
    "run_trials",
    "sampler_seed",
    "space_diff",
    "sqlite_path",
    "stale_running",
    "storage_backend",
    "study_id",
    "study_status",
    "top_trial_ids",
    "top_trials",
    "translate_storage_errors",
]
