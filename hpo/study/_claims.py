"""Claiming the next trial under the claim lock: stale and interrupted trials queued again."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from ..attrs import ATTR_REQUEUED, FAIL_REASON, RETRY_OF
from . import _optuna
from ._backends import claim_lock, has_claim_lock
from ._queries import count_states, finished_count, interrupted_numbers, rdb_storage
from ._storage import HEARTBEAT_INTERVAL


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue again (WAITING, same params) every interrupted trial not queued yet.

    Call under `claim_lock`. Returns the numbers of the trials queued now.
    """
    storage = rdb_storage(study)
    done = set(storage.get_study_user_attrs(_optuna.study_id(study)).get(ATTR_REQUEUED, []))
    todo = [n for n in interrupted_numbers(storage, _optuna.study_id(study)) if n not in done]
    for number in todo:
        old = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(_optuna.study_id(study), number))
        history = [*old.system_attrs.get("retry_history", []), old.number]
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=old.params,
                distributions=old.distributions,
                user_attrs={RETRY_OF: old.number},
                # the keys RetryHeartbeatStaleTrialCallback uses, so its helpers read both kinds
                system_attrs={"failed_trial": history[0], "retry_history": history},
            )
        )
    if todo:
        study.set_user_attr(ATTR_REQUEUED, sorted(done | set(todo)))
    return todo


def fail_beatless_trials(study: optuna.Study) -> list[int]:
    """FAIL, and queue again like stale ones, RUNNING trials that never beat within the grace period.

    A process killed between `study.ask()` and its first heartbeat leaves a RUNNING trial
    without a heartbeat row; Optuna's stale check skips such trials, so it would stay RUNNING
    forever and count toward n_trials. Its start time (this machine's clock) stands in for the
    missing beat. Call under `claim_lock`. Returns the numbers failed.
    """
    import datetime

    import sqlalchemy as sa

    storage = rdb_storage(study)
    grace = storage.grace_period or 2 * (storage.heartbeat_interval or HEARTBEAT_INTERVAL)
    m = _optuna.models()
    query = (
        sa.select(m.TrialModel.trial_id, m.TrialModel.number, _optuna.trial_started_column())
        .outerjoin(m.TrialHeartbeatModel, m.TrialHeartbeatModel.trial_id == m.TrialModel.trial_id)
        .where(
            m.TrialModel.study_id == _optuna.study_id(study),
            m.TrialModel.state == TrialState.RUNNING,
            m.TrialHeartbeatModel.trial_heartbeat_id.is_(None),
        )
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)  # Optuna stores UTC
    cutoff = now - datetime.timedelta(seconds=grace)
    callback = storage.get_heartbeat_stale_trial_callback()
    failed = []
    for trial_id, number, started in rows:
        if started is not None and started > cutoff:
            continue  # just claimed: its heartbeat thread is starting
        try:
            storage.set_trial_user_attr(trial_id, FAIL_REASON,
                                        "its process died before the first heartbeat; retried")
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        failed.append(int(number))
        if callback is not None:
            callback(study, storage.get_trial(trial_id))
    return failed


def claim_trial(
    study: optuna.Study,
    n_trials: int,
    *,
    reseed: Callable[[int], optuna.samplers.BaseSampler] | None = None,
) -> optuna.Trial | None:
    """Start the next trial, or return None when finished + running trials reach n_trials.

    Under the claim lock: stale RUNNING trials become FAIL and are queued again (heartbeat
    callback), interrupted ones are queued again, then a WAITING trial is popped or a new one made.

    Args:
        reseed: `reseed(n)` returns the sampler to use from now on, where n counts the study's
            trials that are not WAITING. Called under the lock, so every process that joins a
            study (a resume, another worker, another machine) sees a different n: with a seed
            derived from n, no two of them replay the same draws.

    A storage without a claim lock (a gRPC proxy) claims optimistically instead (`_lockfree`).
    """
    if not has_claim_lock(study):
        from ._lockfree import claim_lockfree

        return claim_lockfree(study, n_trials, reseed=reseed)
    with claim_lock(study):
        if _optuna.heartbeat_enabled(_optuna.storage_of(study)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
                fail_beatless_trials(study)
        requeue_interrupted(study)
        counts = count_states(rdb_storage(study), _optuna.study_id(study))
        if finished_count(counts) + counts[TrialState.RUNNING] >= n_trials:
            return None
        if reseed is not None:
            study.sampler = reseed(sum(counts.values()) - counts[TrialState.WAITING])
        with warnings.catch_warnings():
            # Optuna warns that heartbeats expect Study.optimize; run_one_trial beats instead
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            return study.ask()


# --------------------------------------------------------------------------- running trials
