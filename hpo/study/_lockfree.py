"""Claiming trials without a lock (a gRPC storage proxy): n_trials stays exact, nothing is lost.

Through the proxy a worker has no database connection, so neither the SQLite flock nor the
PostgreSQL advisory lock of `claim_lock` can serialise "count, then start". Instead each worker:

1. fails stale trials (heartbeats kept as trial attributes) and queues interrupted ones again;
2. stops when finished + RUNNING trials reach n_trials;
3. calls `study.ask()`, which pops the lowest-numbered WAITING trial or creates a new one (the
   storage numbers trials in creation order: it locks the study row to do so);
4. reads the study again: the trial runs only if finished trials plus the RUNNING or WAITING
   trials numbered below it stay under n_trials. Otherwise it goes back to WAITING with its
   params (the next claim pops it again, so no trial is lost) and the worker tries again after
   a short random pause.

At most n_trials run: take the admitted trial with the highest number. When it checked, every
admitted trial numbered below it existed already and was WAITING, RUNNING or finished (a FAIL
is final), so the check counted it, and the check passed. The claims end: the lowest-numbered
trial that awaits its check counts only lower ones, so it runs whenever there is room.

Copies that two workers queued at once (a baseline enqueued by two machines opening a new
study, the retry of one interrupted trial) are told apart by `user_attrs`: the higher-numbered
copy is marked FAIL with `duplicate_of` and a fail_reason, and is never run.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..attrs import ATTR_REQUEUED, DUPLICATE_OF, FAIL_REASON, INTERRUPTED, RETRY_OF
from . import _optuna

_LIVE = (TrialState.RUNNING, TrialState.WAITING)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
GIVE_BACK_PAUSE = (0.05, 0.5)  # seconds: a random pause after giving a trial back


def _copy_key(trial: FrozenTrial) -> tuple | None:
    """What makes two queued trials copies of one another (None: a trial of its own)."""
    attrs = trial.user_attrs
    if RETRY_OF in attrs:
        return (RETRY_OF, attrs[RETRY_OF])
    if attrs.get("baseline"):
        return ("baseline",)
    return None


def admission(trials: list[FrozenTrial], mine: FrozenTrial, n_trials: int) -> str:
    """'run', 'full' (give it back) or 'duplicate' for a trial just claimed, on a fresh read."""
    key = _copy_key(mine)
    finished = lower = 0
    for t in trials:
        if t.state in _FINISHED:
            finished += 1
        if t.number >= mine.number:
            continue
        if t.state in _LIVE:
            lower += 1
        if key is not None and t.state != TrialState.FAIL and _copy_key(t) == key:
            return "duplicate"
    return "run" if finished + lower < n_trials else "full"


def requeue_interrupted_lockfree(study: optuna.Study) -> list[int]:
    """Queue again (WAITING, same params) every interrupted trial that has no copy yet.

    Two workers may both queue one; `admission` then runs only the lower-numbered copy.
    """
    trials = study.get_trials(deepcopy=False)
    copied = {t.user_attrs.get(RETRY_OF) for t in trials}
    todo = [t for t in trials if t.state == TrialState.FAIL and INTERRUPTED in t.user_attrs
            and t.number not in copied]
    for old in todo:
        history = [*old.system_attrs.get("retry_history", []), old.number]
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=old.params, distributions=old.distributions,
            user_attrs={RETRY_OF: old.number},
            system_attrs={"failed_trial": history[0], "retry_history": history}))
    if todo:
        done = set(study.user_attrs.get(ATTR_REQUEUED, []))
        study.set_user_attr(ATTR_REQUEUED, sorted(done | {t.number for t in todo}))
    return [t.number for t in todo]


def claim_lockfree(
    study: optuna.Study,
    n_trials: int,
    *,
    reseed: Callable[[int], optuna.samplers.BaseSampler] | None = None,
) -> optuna.Trial | None:
    """`claim_trial` for a storage without a claim lock; see the module docstring.

    `reseed(n)` is called with the claimed trial's number, which no other claim shares, so
    workers joining at once on several machines never draw with the same seed.
    """
    from ._grpc import clear_beat, is_grpc_storage

    storage, sid = _optuna.storage_of(study), _optuna.study_id(study)
    beating = _optuna.heartbeat_enabled(storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if beating:
            optuna.storages.fail_stale_trials(study)
        requeue_interrupted_lockfree(study)
    while True:
        trials = storage.get_all_trials(sid, deepcopy=False)
        finished = sum(t.state in _FINISHED for t in trials)
        if finished + sum(t.state == TrialState.RUNNING for t in trials) >= n_trials:
            return None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        tid = _optuna.trial_id(trial)
        trials = storage.get_all_trials(sid, deepcopy=False)
        mine = next(t for t in trials if _optuna.trial_id(t) == tid)
        verdict = admission(trials, mine, n_trials)
        if verdict == "run":
            if beating:
                storage.record_heartbeat(tid)  # at once: a claimed trial must not look beatless
            if reseed is not None:
                study.sampler = reseed(trial.number)
            return trial
        if verdict == "duplicate":
            storage.set_trial_user_attr(tid, DUPLICATE_OF, list(_copy_key(mine)))
            storage.set_trial_user_attr(tid, FAIL_REASON, "a second copy of a queued trial "
                                        f"({_copy_key(mine)}), queued by two workers at once; not run")
            try:
                storage.set_trial_state_values(tid, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
            continue
        if beating and is_grpc_storage(storage):
            clear_beat(storage, tid)
        storage.set_trial_state_values(tid, TrialState.WAITING)  # give it back, params and all
        time.sleep(random.uniform(*GIVE_BACK_PAUSE))
