"""What a pruner's step counts (`study.fidelity`): epochs, seconds of training on a fixed grid, or
compute on a fixed grid (epochs of the default configuration's measured cost).

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

With `fidelity: compute` the clock counts compute in units of one epoch of the space's default
configuration: each epoch adds cost(config) / cost(default), the seconds per training image one
training step takes (measured once per configuration and kept in the study, as
`trial_length: compute` measures them, `hpo.trial.equal_compute`), and reports fall at 1, 2, 3, ...
default epochs. A backbone that costs half per image passes one grid point every two of its
epochs. The clock does not depend on the machine or its load, so rungs written in default epochs
mean the same on a laptop and a GPU node, and a resumed trial's replay is exact by construction.

Pruner step arguments are then whole seconds or whole default epochs
(`hpo.trial.subepoch.grid_arg_problems` checks them).
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
    "GridReports",
    "grid_reports",
    "refit_seconds",
    "train_seconds",
]

#: `study.fidelity` values: what one pruner step counts.
FIDELITIES = ("epochs", "seconds", "compute")
#: Seconds of training between reports with `fidelity: seconds` unless `report_seconds` says.
DEFAULT_REPORT_SECONDS = 10
#: User attrs of every trial that trained an epoch: seconds of all its epochs (a resumed trial's
#: origin's included) and how many epochs that is; `epoch_seconds` lists this run's epochs.
TRAIN_SECONDS_ATTR = "train_seconds"
TRAIN_EPOCHS_ATTR = "train_epochs"
_EPS = 1e-9


class GridReports:
    """A trial's training clock and the grid reports it owes (`fidelity: seconds` or `compute`).

    Args:
        every: whole clock units between grid points (`study.report_seconds`; 1 for compute).
        per_epoch: what each epoch adds to the clock when it counts compute (the config's cost
            per image over the default's); None: each epoch adds its measured seconds.
    """

    def __init__(self, every: int, per_epoch: float | None = None) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every: must be a whole number of seconds >= 1, got {every!r}")
        if per_epoch is not None and not (math.isfinite(per_epoch) and per_epoch > 0):
            raise ValueError(f"per_epoch: must be finite and > 0, got {per_epoch!r}")
        self.every = every
        self.per_epoch = per_epoch
        self.elapsed = 0.0  # the clock: seconds (or default epochs of compute) so far
        self.epochs = 0
        self._value: float | None = None  # the latest epoch's value (known since `seconds`)
        self._next = every  # the next grid point to report

    def epoch_end(self, seconds: float, value: float) -> list[tuple[int, float]]:
        """An epoch took `seconds` and scored `value`: the (step, value) reports now due, in order.

        A grid point inside the epoch gets the value before it (the one known at that time);
        a point on the epoch's end gets `value`. Report each, and ask the pruner after each, so
        a rung is judged at its own step. A clock that counts compute adds `per_epoch` and
        ignores `seconds`.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds: must be finite and >= 0, got {seconds!r}")
        end = self.elapsed + (seconds if self.per_epoch is None else self.per_epoch)
        due: list[tuple[int, float]] = []
        while self._next <= end + _EPS:
            known = value if self._next >= end - _EPS else self._value
            if known is not None:
                due.append((self._next, known))
            self._next += self.every
        self.elapsed, self._value = end, value
        self.epochs += 1
        return due


def grid_reports(study: StudySpec, cost_ratio: float | None = None) -> GridReports | None:
    """A fresh clock for one trial of `study`, or None when its steps count epochs.

    `cost_ratio`: with `fidelity: compute`, the trial's cost per training image over the
    default's (required then; each epoch adds it to the clock)."""
    fidelity = getattr(study, "fidelity", "epochs")
    if fidelity == "seconds":
        return GridReports(study.report_seconds or DEFAULT_REPORT_SECONDS)
    if fidelity == "compute":
        if cost_ratio is None:
            raise ValueError("fidelity: compute needs the trial's cost ratio to the default")
        return GridReports(1, per_epoch=cost_ratio)
    return None


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
