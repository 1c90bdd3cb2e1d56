"""What a pruner's step counts (`study.fidelity`): epochs, or seconds of training on a fixed grid.

With `fidelity: seconds` a trial's clock is the sum of its epochs' measured seconds (training and
validation, `EpochMetrics.seconds`: what the user pays), and it reports at every grid point
`report_seconds, 2 * report_seconds, ...` its clock passes, with the value it had *at* that
point: the latest epoch that had ended by then (carried forward). Grid points before its first
epoch ends are not reported. So all trials report the same steps, a pruner compares them at equal
training time, and a backbone that learns as much in half the time is ahead at every grid point.

A retried trial resumed from a checkpoint replays its origin's epochs (their recorded seconds and
values), so it reports exactly the steps and values its origin did, then goes on from its origin's
clock. Seconds are wall seconds on the trial's device: a study compares trials fairly when its
workers run under similar load (one worker per GPU; on CPU fixed threads and no other jobs).

Pruner step arguments are then seconds (`hpo.trial.subepoch.seconds_arg_problems` checks them).
Imports no torch: the space parser reads the names here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..space import StudySpec

__all__ = [
    "DEFAULT_REPORT_SECONDS",
    "FIDELITIES",
    "TRAIN_EPOCHS_ATTR",
    "TRAIN_SECONDS_ATTR",
    "SecondsReports",
    "refit_seconds",
    "seconds_reports",
    "train_seconds",
]

#: `study.fidelity` values: what one pruner step counts.
FIDELITIES = ("epochs", "seconds")
#: Seconds of training between reports with `fidelity: seconds` unless `report_seconds` says.
DEFAULT_REPORT_SECONDS = 10
#: User attrs of every trial that trained an epoch: seconds of all its epochs (a resumed trial's
#: origin's included) and how many epochs that is; `epoch_seconds` lists this run's epochs.
TRAIN_SECONDS_ATTR = "train_seconds"
TRAIN_EPOCHS_ATTR = "train_epochs"
_EPS = 1e-9


class SecondsReports:
    """A trial's training clock and the grid reports it owes (`fidelity: seconds`).

    Args:
        every: whole seconds between grid points (`study.report_seconds`).
    """

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every: must be a whole number of seconds >= 1, got {every!r}")
        self.every = every
        self.seconds = 0.0  # the clock: seconds of the epochs so far
        self.epochs = 0
        self._value: float | None = None  # the latest epoch's value (known since `seconds`)
        self._next = every  # the next grid point to report

    def epoch_end(self, seconds: float, value: float) -> list[tuple[int, float]]:
        """An epoch took `seconds` and scored `value`: the (step, value) reports now due, in order.

        A grid point inside the epoch gets the value before it (the one known at that time);
        a point on the epoch's end gets `value`. Report each, and ask the pruner after each, so
        a rung is judged at its own step.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds: must be finite and >= 0, got {seconds!r}")
        end = self.seconds + seconds
        due: list[tuple[int, float]] = []
        while self._next <= end + _EPS:
            known = value if self._next >= end - _EPS else self._value
            if known is not None:
                due.append((self._next, known))
            self._next += self.every
        self.seconds, self._value = end, value
        self.epochs += 1
        return due


def seconds_reports(study: StudySpec) -> SecondsReports | None:
    """A fresh clock for one trial of `study`, or None when its steps count epochs."""
    if getattr(study, "fidelity", "epochs") != "seconds":
        return None
    return SecondsReports(study.report_seconds or DEFAULT_REPORT_SECONDS)


def train_seconds(epoch_seconds: list[float]) -> dict[str, Any]:
    """The user attrs that record a trial's training cost from all its epochs' seconds."""
    return {TRAIN_SECONDS_ATTR: round(math.fsum(epoch_seconds), 3),
            TRAIN_EPOCHS_ATTR: len(epoch_seconds)}


def refit_seconds(user_attrs: Mapping[str, Any], epochs: int) -> float | None:
    """Seconds training a trial's config for `epochs` epochs costs, at its measured mean epoch.

    Args:
        user_attrs: the trial's user attrs (`FrozenTrial.user_attrs`), pruned trials' too.
        epochs: the refit's epochs (the config's own `epochs` for an identical run).

    Returns:
        None when the trial recorded no epoch (failed before one, or made before these attrs).
    """
    total, count = user_attrs.get(TRAIN_SECONDS_ATTR), user_attrs.get(TRAIN_EPOCHS_ATTR)
    if total is None or not count:
        return None
    return float(total) / int(count) * epochs
