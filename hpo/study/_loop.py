"""The trial loop: run one claimed trial, run trials until the target, a timeout or a stop."""

from __future__ import annotations

import logging
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..attrs import FAIL_REASON, INTERRUPTED
from ..errors import ConfigError, VcrHpoError
from . import _optuna
from ._claims import claim_trial
from ._heartbeat import _Heartbeat
from ._signals import RunInterrupted

_logger = logging.getLogger("hpo.study")


MAX_FAILURES_IN_A_ROW = 10  # FAILed trials in a row before a run gives up (n_trials counts finished)


def _mark_interrupted(study: optuna.Study, trial: optuna.Trial, exc: RunInterrupted) -> None:
    name = signal.Signals(exc.signum).name
    trial.set_user_attr(INTERRUPTED, name)
    trial.set_user_attr(FAIL_REASON, f"interrupted by {name}; queued again on resume")
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def run_one_trial(study: optuna.Study, trial: optuna.Trial, objective: Callable) -> FrozenTrial:
    """Run one claimed trial with a heartbeat; record pruning, failures and interruptions.

    A failing trial is recorded with `fail_reason` and does not stop the study. An interruption
    marks the trial FAIL with the user attr `interrupted` and re-raises.
    """
    return _run_one(study, trial, objective).trial


@dataclass(frozen=True)
class _Ran:
    trial: FrozenTrial
    stopped: bool  # the sampler called study.stop() (Grid/BruteForce: every point ran)
    error: BaseException | None


def _run_one(study: optuna.Study, trial: optuna.Trial, objective: Callable) -> _Ran:
    import sqlalchemy.exc

    values = None
    state: TrialState | None = None
    error: BaseException | None = None
    with _Heartbeat(_optuna.storage_of(study), _optuna.trial_id(trial)):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except RunInterrupted as exc:
            _mark_interrupted(study, trial, exc)
            raise
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            raise  # the storage itself is gone: the trial stays RUNNING and the heartbeat retries it
        except Exception as exc:  # noqa: BLE001 (any failure: record it, the study goes on)
            state, error = TrialState.FAIL, exc
            if FAIL_REASON not in trial.user_attrs:
                trial.set_user_attr(FAIL_REASON, f"{type(exc).__name__}: {exc}"[:500])
            _logger.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
    with warnings.catch_warnings(), _optuna.stop_requested(study) as stopped:
        warnings.simplefilter("ignore")  # a NaN value becomes FAIL; the trial row says so
        frozen = study.tell(trial, values, state=state, skip_if_finished=True)
    return _Ran(frozen, stopped[0], error)


class TooManyFailuresError(VcrHpoError):
    """Every recent trial of this run failed: the space or the machine is broken, not unlucky."""


class FixedInputError(ConfigError):
    """Trials with different params failed with the same configuration error: its cause is a
    fixed value, the data, the device or a file, not the search, so more trials cannot help."""


#: Why a run ended (StudyResult.reason, the CLI's last line).
ExitReason = Literal["target reached", "timeout", "grid exhausted", "stopped"]


@dataclass(frozen=True)
class RunOutcome:
    """What one `run_trials` call did and why it ended."""

    ran: int
    reason: ExitReason
    detail: str = ""  # e.g. "grid exhausted: 6 of 6 points"


def distinct_points(study: optuna.Study) -> int:
    """Distinct param sets of the study's trials that ran or run (not WAITING)."""
    trials = study.get_trials(deepcopy=False)
    return len({tuple(sorted((k, repr(v)) for k, v in t.params.items()))
                for t in trials if t.state != TrialState.WAITING})


def _same_config_error(prev: _Ran | None, cur: _Ran) -> bool:
    if prev is None or cur.error is None or prev.error is None:
        return False
    if not isinstance(cur.error, ConfigError):
        return False
    return (type(prev.error), str(prev.error)) == (type(cur.error), str(cur.error)) and (
        prev.trial.params != cur.trial.params)


def run_trials(
    study: optuna.Study,
    objective: Callable,
    *,
    n_trials: int,
    timeout: float | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    reseed: Callable[[int], optuna.samplers.BaseSampler] | None = None,
    grid_points: int | None = None,
    max_failures_in_a_row: int | None = MAX_FAILURES_IN_A_ROW,
) -> RunOutcome:
    """Run trials until the study holds `n_trials` finished ones, `timeout` seconds pass, a
    finite sampler has run every point, or a callback calls `study.stop()`.

    Finished means COMPLETE or PRUNED, counted over the whole study (earlier runs and other
    workers included), so a rerun at the same target adds nothing and a higher target tops up.

    Args:
        callbacks: `callback(study, frozen_trial)` after each trial, as in `Study.optimize`;
            one may call `study.stop()`.
        reseed: see `claim_trial`; used on this call's first claim only.
        grid_points: the number of points of a Grid/BruteForce space; the run ends once the
            study holds that many distinct param sets (a resumed, exhausted grid runs nothing).

    Returns:
        The number of trials run and why the run ended.

    Raises:
        RunInterrupted: a signal arrived (inside `interrupt_on_signals`).
        FixedInputError: two trials with different params failed with the same ConfigError.
        TooManyFailuresError: `max_failures_in_a_row` trials of this call failed one after the
            other (failed trials never count toward `n_trials`, so the run would never end).
    """
    start = time.monotonic()
    ran = failed_in_a_row = 0
    last_failure: _Ran | None = None

    def exhausted() -> RunOutcome:
        n = distinct_points(study)
        return RunOutcome(ran, "grid exhausted", f"grid exhausted: {n} of {grid_points or n} points")

    while True:
        if timeout is not None and time.monotonic() - start >= timeout:
            return RunOutcome(ran, "timeout", f"timeout: {timeout:g} s")
        if grid_points is not None and distinct_points(study) >= grid_points:
            return exhausted()
        trial = claim_trial(study, n_trials, reseed=reseed if ran == 0 else None)
        if trial is None:
            return RunOutcome(ran, "target reached", f"target reached: {n_trials} finished trials")
        result = _run_one(study, trial, objective)
        frozen = result.trial
        ran += 1
        if on_trial is not None:
            on_trial(frozen)
        stopped = False
        for callback in callbacks:
            with _optuna.stop_requested(study) as flag:
                callback(study, frozen)
            stopped = stopped or flag[0]
        if result.stopped:
            return exhausted()
        if stopped:
            return RunOutcome(ran, "stopped", f"stopped by a callback after trial {frozen.number}")
        if frozen.state == TrialState.FAIL:
            failed_in_a_row += 1
            if last_failure is not None and _same_config_error(last_failure, result):
                raise FixedInputError(
                    f"study {study.study_name}: trials {last_failure.trial.number} and "
                    f"{frozen.number} failed with the same error whatever their params, got "
                    f"{type(result.error).__name__}: {result.error}. Fix the fixed values, data, "
                    "device or files it names, then run the same command again"
                ) from result.error
            last_failure = result if result.error is not None else last_failure
        else:
            failed_in_a_row = 0
        if max_failures_in_a_row is not None and failed_in_a_row >= max_failures_in_a_row:
            reason = frozen.user_attrs.get(FAIL_REASON, "no reason recorded")
            raise TooManyFailuresError(
                f"study {study.study_name}: the last {failed_in_a_row} trials failed, got "
                f"fail_reason {reason!r} (trial {frozen.number}). Fix the cause, then run the same "
                "command again to resume"
            )
