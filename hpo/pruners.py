"""vcr-hpo's own pruners: `PairedPruner`, which prunes only what a paired test says is worse."""

from __future__ import annotations

from typing import Protocol

import optuna
from optuna.pruners import BasePruner, MedianPruner
from optuna.trial import FrozenTrial, TrialState

from .paired import p_worse
from .records import ValRecord

__all__ = ["PAIRED_NOTE_ATTR", "PairedPruner", "RecordSource"]

#: Trial user attr: the paired pruner's last decision against its base, in words.
PAIRED_NOTE_ATTR = "paired_pruner"
_COMPARE = ("auto", "correct", "loss")


class RecordSource(Protocol):
    """Where the pruner reads validation records (`hpo.trial.record_store.StoreRecords`)."""

    def read(self, trial: FrozenTrial, step: int) -> ValRecord | None: ...

    def has(self, trial: FrozenTrial, step: int) -> bool: ...

    def note(self, study: optuna.Study, trial: FrozenTrial, key: str, text: str) -> None: ...


class PairedPruner(BasePruner):
    """Prune only a trial that is worse than the rung's median trial by a paired test.

    YAML: `pruner: {type: Paired, base: {type: MedianPruner, n_warmup_steps: 1}, alpha: 0.05}`.

    It asks `base` first (any registered pruner; default MedianPruner()). When the base says
    keep, it keeps. When the base says prune at step s, it takes the reference trial: among the
    other COMPLETE and PRUNED trials that reported step s and have a validation record there
    (`hpo.records`), the one at the median of the values at s (the upper middle for an even
    count; the trial a median cut is drawn through). It prunes only when a one-sided paired test
    on the same validation images says this trial is worse than the reference at level `alpha`
    (`hpo.paired.p_worse`): the exact McNemar test on per-image correctness (`compare: correct`) or
    a paired z-test on per-image loss (`compare: loss`); `compare: auto` picks loss for a minimised
    metric (val_loss) and correctness otherwise. Otherwise the trial goes on, and user attr
    `paired_pruner` says why. With 200 validation images one accuracy has a standard error
    near 2-3 points, so a trial a point or two behind the median is behind by noise: the base
    alone would stop it, this pruner does not.

    Where no paired test is possible (no records attached, no record of this trial or of any
    other at step s, records of another validation set) it follows the base. Records are read
    through `records` (`hpo.trial.record_store.attach_records(pruner, store)`), which the runner
    sets in every process to the study's artifact store, so workers in other processes and isolated
    trials (whose parent asks the pruner) see each other's records. The core cannot read a
    store itself (the store lives above the study layer), hence the attachment.

    Why not Optuna's WilcoxonPruner: it reads the steps of one trial as instances (step = an
    image or fold, value = its score) and compares them with the best trial's, once per
    reported instance. Our steps are epochs of a learning curve and a trial's per-image results
    change every epoch, so reporting images as steps would lose the epochs a rung is made of
    (and make thousands of reports per epoch). This pruner keeps the epoch rungs of any base and
    only adds the per-image test at the moment the base would prune.

    Args:
        base: the pruner asked first (a `{type: ...}` spec in YAML).
        alpha: the test's level, in (0, 1): a smaller alpha prunes less.
        compare: "correct", "loss" or "auto" (see above).

    Raises:
        ValueError: alpha outside (0, 1), an unknown `compare`, or a base that is not a pruner.
    """

    def __init__(self, base: BasePruner | None = None, alpha: float = 0.05,
                 compare: str = "auto") -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        if compare not in _COMPARE:
            raise ValueError(f"compare must be one of {', '.join(_COMPARE)}, got {compare!r}")
        if base is not None and not isinstance(base, BasePruner):
            raise ValueError(f"base must be a pruner, got {type(base).__name__}")
        self.base: BasePruner = base if base is not None else MedianPruner()
        self.alpha = float(alpha)
        self.compare = compare
        #: Where records are read (`hpo.trial.record_store.StoreRecords`); the runner attaches the
        #: study's store in every process (`attach_records`). None: the base decides alone.
        self.records: RecordSource | None = None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if not self.base.prune(study, trial):
            return False
        step = trial.last_step
        if step is None:
            return True
        try:
            prune, note = self._confirm(study, trial, step)
        except Exception as exc:  # noqa: BLE001 - a damaged record: the base decides, say why
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            prune, note = True, f"pruned by the base (no paired test: {type(exc).__name__}: {text})"
        if self.records is not None:
            self.records.note(study, trial, PAIRED_NOTE_ATTR, f"step {step}: {note}"[:300])
        return prune

    def _compare(self, study: optuna.Study) -> str:
        if self.compare != "auto":
            return self.compare
        return "loss" if study.direction == optuna.study.StudyDirection.MINIMIZE else "correct"

    def _confirm(self, study: optuna.Study, trial: FrozenTrial, step: int) -> tuple[bool, str]:
        """(prune?, why) once the base said prune at `step`."""
        source = self.records
        if source is None:
            return True, "pruned by the base (no artifact store: no paired test)"
        mine = source.read(trial, step)
        if mine is None:
            return True, "pruned by the base (this trial has no record at this step)"
        others = [t for t in study.get_trials(deepcopy=False,
                                              states=(TrialState.COMPLETE, TrialState.PRUNED))
                  if t.number != trial.number and step in t.intermediate_values
                  and source.has(t, step)]
        if not others:
            return True, "pruned by the base (no other trial has a record at this step)"
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        others.sort(key=lambda t: (sign * t.intermediate_values[step], -t.number))  # worst first
        ref_trial = others[len(others) // 2]
        ref = source.read(ref_trial, step)
        if ref is None or ref.key != mine.key:
            return True, f"pruned by the base (trial {ref_trial.number}'s record does not pair)"
        on = self._compare(study)
        p = p_worse(mine, ref, on=on)
        n = min(len(mine), len(ref))
        gap = (mine.correct[:n].mean() - ref.correct[:n].mean()) * 100
        what = (f"{gap:+.1f} points against trial {ref_trial.number} (median at this step), "
                f"paired on {n:,} images ({'correctness' if on == 'correct' else 'loss'}), "
                f"p={p:.3g}")
        if p < self.alpha:
            return True, f"pruned: {what} < alpha {self.alpha:g}"
        return False, f"kept (behind by noise): {what} >= alpha {self.alpha:g}"
