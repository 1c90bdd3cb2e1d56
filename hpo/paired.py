"""Paired comparisons on the fixed validation images: the rule, the tests and the one sentence.

All trials of a study are scored on the same validation images (`hpo.data` fixes the split, not
the trial seed), so two trials compare image by image (`hpo.records` keeps what each image got).
The difference in accuracy is the mean of per-image differences in correctness; pairing removes
the images both get right or both get wrong, which is most of the noise between two trials.

- `paired_interval`: the 95% interval of an accuracy difference (Agresti-Min, see there);
- `p_worse`: the one-sided test the noise-aware pruner uses (`hpo.pruners.PairedPruner`);
- `default_comparison`: the best trial against the default (trial 0) as one sentence, the same
  in `status`, `best`, the run's summary and the report (`hpo.trial.record_store` feeds it records);
- `one_se_choice`: the one-standard-error rule: the cheapest trial whose accuracy is within one
  paired standard error of the best's (`study.choose: cheapest_within_1se`).

Pure: reads nothing itself (the pruner in the core uses it). Imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from .attrs import RESUMED_FROM_TRIAL
from .records import VALUE_STEP_ATTR, ValRecord

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: Reads the record of a trial at a step: None when it has none (`hpo.trial.record_store`).
ReadRecord = Callable[["FrozenTrial", int], "ValRecord | None"]

__all__ = [
    "CHOICE_RULES",
    "DEFAULT_TRIAL",
    "PairedDiff",
    "ReadRecord",
    "default_comparison",
    "describe_diff",
    "one_se_choice",
    "p_worse",
    "paired_interval",
    "paired_se",
    "value_record",
]

#: `study.choose` values: which trial `vcr-hpo best` exports and the run's summary names for
#: training: the best by the metric, or the cheapest within one paired SE of it (`one_se_choice`).
CHOICE_RULES = ("best", "cheapest_within_1se")
#: The trial number of the default config (the space's defaults, enqueued first).
DEFAULT_TRIAL = 0
_NO = "no paired comparison with the default"


@dataclass(frozen=True)
class PairedDiff:
    """Accuracy of A minus accuracy of B on the same `n` images, with its interval (fractions)."""

    diff: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """'better' (the interval lies above 0), 'worse' (below 0) or 'tie' (it holds 0)."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "tie"


def paired_interval(a_correct: Any, b_correct: Any, *, level: float = 0.95) -> PairedDiff:
    """The accuracy of A minus that of B, paired on the same images, with a `level` interval.

    Only the discordant images count: b = A right and B wrong, c = A wrong and B right, out of
    n. The estimate is (b - c) / n, exactly the difference of the two accuracies. The interval
    is Agresti and Min's adjusted Wald interval for matched proportions (Statistics in Medicine
    24:729-740, 2005): add 1/2 to each of the four cells of the 2x2 table, then the Wald
    interval of the paired difference, (b - c)/(n + 2) +- z sqrt((p12 + p21 - (p12 - p21)^2) /
    (n + 2)) with p12 = (b + 1/2)/(n + 2) and p21 = (c + 1/2)/(n + 2). Unlike the plain normal
    interval on the mean of per-image differences it never collapses to a point when few images
    differ (b = c = 0 gives a width of about 2z/n, not 0), and its coverage stays near the
    nominal level for the 200-2,000 images and the handful of discordant pairs seen here; an
    exact (McNemar-based) interval would be conservative and needs a root search. Pure numpy.

    Raises:
        ValueError: the two arrays differ in length or are empty, or `level` is outside (0, 1).
    """
    a = np.asarray(a_correct, dtype=bool)
    b_ = np.asarray(b_correct, dtype=bool)
    if a.shape != b_.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"a_correct and b_correct must be 1-d, non-empty and of one length, got "
                         f"shapes {a.shape} and {b_.shape}. Pass one value per image")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}. Use e.g. 0.95")
    n = len(a)
    b = int(np.count_nonzero(a & ~b_))
    c = int(np.count_nonzero(~a & b_))
    m = n + 2
    p12, p21 = (b + 0.5) / m, (c + 0.5) / m
    centre = p12 - p21
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(max(0.0, p12 + p21 - centre**2) / m)
    return PairedDiff(diff=(b - c) / n, low=centre - half, high=centre + half, n=n, level=level)


def paired_se(a_correct: Any, b_correct: Any) -> float:
    """Standard error of the accuracy of A minus that of B on the same images: the standard
    deviation of the per-image differences (-1, 0 or 1) over the square root of their count."""
    a = np.asarray(a_correct, dtype=bool)
    b_ = np.asarray(b_correct, dtype=bool)
    n = len(a)
    if a.shape != b_.shape or a.ndim != 1 or n < 2:
        raise ValueError(f"a_correct and b_correct must be 1-d, of one length and hold 2+ images, "
                         f"got shapes {a.shape} and {b_.shape}. Pass one value per image")
    d = a.astype(np.int8) - b_.astype(np.int8)
    return float(d.std(ddof=1) / math.sqrt(n))


def one_se_choice(
    ranked: list[FrozenTrial],
    read: Callable[[FrozenTrial], ValRecord | None],
    cost: Callable[[FrozenTrial], float | None],
) -> tuple[FrozenTrial | None, str]:
    """The one-standard-error rule (Breiman et al. 1984; Hastie et al., The Elements of
    Statistical Learning, 7.10): of the trials whose accuracy on the validation images is
    within one paired standard error of the best's, the one that costs least per training
    image, and one line that says why.

    The training that follows a search is paid in time, and there a configuration that costs
    half as much per image trains twice the epochs. When the search cannot tell two
    configurations apart on its validation images, the cheaper one is the better buy.

    Args:
        ranked: the COMPLETE trials, best first (`hpo.metrics.rank_trials`).
        read: a trial's validation record at the step that gave its value; None when it has
            none (such a trial is no candidate).
        cost: a trial's seconds per training image (`hpo.trial.equal_compute`); None when not
            known (no candidate).

    Returns the best trial itself when it has no record or cost, or when nothing cheaper is
    within one standard error. Pure: reads nothing itself.
    """
    if not ranked:
        return None, "no COMPLETE trial yet"
    best = ranked[0]
    top, top_cost = read(best), cost(best)
    if top is None or top_cost is None:
        what = "validation record" if top is None else "measured cost per image"
        return best, f"trial {best.number}, the best: it has no {what} to compare others on"
    chosen, chosen_cost, chosen_diff, chosen_se = best, top_cost, 0.0, 0.0
    # one SE is at most 1/sqrt(n - 1) (per-image differences lie in [-1, 1]): the trials ranked
    # further behind cannot be within it, so a study of 10,000 trials reads a few records
    reach = 1.0 / math.sqrt(max(1, len(top) - 1))
    for t in ranked[1:]:
        if best.values and t.values and best.values[0] - t.values[0] > reach + 1e-9:
            break
        c = cost(t)
        if c is None or c >= chosen_cost:
            continue
        rec = read(t)
        if rec is None or rec.key != top.key or len(rec) != len(top) or len(top) < 2:
            continue
        diff = float(top.correct.mean() - rec.correct.mean())
        se = paired_se(top.correct, rec.correct)
        if diff <= se:
            chosen, chosen_cost, chosen_diff, chosen_se = t, c, diff, se
    if chosen is best:
        return best, (f"trial {best.number}, the best: no cheaper trial is within one standard "
                      f"error of it")
    return chosen, (f"trial {chosen.number}, the cheapest within one standard error of the best "
                    f"(trial {best.number}): {_points(0.0 - chosen_diff)} points (SE "
                    f"{chosen_se * 100:.1f}, paired on {len(top):,} validation images), "
                    f"{top_cost / chosen_cost:.2f}x cheaper per training image")


def p_worse(trial: ValRecord, reference: ValRecord, *, on: str = "correct") -> float:
    """One-sided p-value of "`trial` is worse than `reference`" on the same images.

    on="correct": the exact McNemar test: among the images the two disagree on, under "no
    difference" each is equally likely to favour either, so the count where only the reference
    is right is Binomial(discordant, 1/2); p = P(X >= observed). No normal approximation, so it
    holds for the few discordant images of an early epoch.
    on="loss": a paired z-test on per-image cross-entropy (trial minus reference), one-sided;
    losses are many and continuous, so the mean difference is close to normal at 100+ images.
    Only the images both records have are used (a mid-epoch record scores the first ones).

    Raises:
        ValueError: an unknown `on`, or no image in common.
    """
    n = min(len(trial), len(reference))
    if n == 0:
        raise ValueError("p_worse: the records must share images, got none. Compare records "
                         "of the same validation set")
    if on == "correct":
        t, r = trial.correct[:n], reference.correct[:n]
        worse = int(np.count_nonzero(r & ~t))
        discordant = worse + int(np.count_nonzero(t & ~r))
        if discordant == 0:
            return 1.0
        tail = sum(math.comb(discordant, k) for k in range(worse, discordant + 1))
        return min(1.0, tail / 2**discordant)
    if on == "loss":
        d = trial.loss[:n].astype(np.float64) - reference.loss[:n].astype(np.float64)
        mean = float(d.mean())
        sd = float(d.std(ddof=1)) if n > 1 else 0.0
        if sd == 0.0:
            return 0.0 if mean > 0 else 1.0
        return 0.5 * math.erfc(mean / (sd / math.sqrt(n)) / math.sqrt(2))
    raise ValueError(f"on must be 'correct' or 'loss', got {on!r}. Pick one of those")


def _points(x: float) -> str:
    return f"{x * 100:+.1f}"


def describe_diff(number: int, d: PairedDiff) -> str:
    """The sentence for trial `number` against the default, e.g. "trial 7 beats the default by
    +2.1 points (95% CI +0.9 to +3.3, paired on 2,000 validation images)"."""
    ci = f"{d.level:.0%} CI {_points(d.low)} to {_points(d.high)}"
    on = f"paired on {d.n:,} validation images"
    if d.verdict == "better":
        return f"trial {number} beats the default by {_points(d.diff)} points ({ci}, {on})"
    if d.verdict == "worse":
        return (f"trial {number} is behind the default by {abs(d.diff) * 100:.1f} points "
                f"({ci}, {on})")
    return (f"trial {number} is not distinguishable from the default ({_points(d.diff)} points, "
            f"{ci}, {on})")


def value_record(read: ReadRecord, t: FrozenTrial,
                  lookup: Callable[[int], FrozenTrial | None] | None) -> ValRecord | None:
    """The record of the evaluation that gave `t` its value (a resumed trial's may be its
    origin's)."""
    step = t.user_attrs.get(VALUE_STEP_ATTR)
    if step is None:
        return None
    rec = read(t, int(step))
    origin = t.user_attrs.get(RESUMED_FROM_TRIAL)
    if rec is None and origin is not None and lookup is not None:
        before = lookup(int(origin))
        rec = read(before, int(step)) if before is not None else None
    return rec


def default_comparison(
    best: FrozenTrial | None,
    default: FrozenTrial | None,
    read: ReadRecord | None,
    metric: str | None,
    *,
    lookup: Callable[[int], FrozenTrial | None] | None = None,
) -> str:
    """One line: the best trial against the default (trial 0), or why there is no comparison.

    Args:
        best: the study's best trial (`hpo.metrics.rank_trials`); None when there is none.
        default: trial 0, None when the study has none.
        read: reads a trial's record at a step; None when the study has no artifact store.
        metric: the study's first metric (the interval is on accuracy: val_acc only).
        lookup: trial number -> FrozenTrial, to find a resumed trial's records in its origin.

    Never raises: a record that cannot be read becomes the reason.
    """
    from optuna.trial import TrialState

    if best is None:
        return f"{_NO}: no COMPLETE trial yet"
    if metric != "val_acc":
        return (f"{_NO}: the interval is on accuracy and the study's metric is "
                f"{metric or 'unnamed'} (use val_acc)")
    if default is None:
        return f"{_NO}: the study has no trial {DEFAULT_TRIAL}"
    if best.number == default.number:
        return f"trial {default.number} (the default) is the best trial"
    if default.state != TrialState.COMPLETE:
        return f"{_NO}: trial {default.number} (the default) is {default.state.name}"
    if read is None:
        return f"{_NO}: the study records no artifact store"
    try:
        mine = value_record(read, best, lookup)
        theirs = value_record(read, default, lookup)
    except Exception as exc:  # noqa: BLE001 - the sentence informs, it never fails a command
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{_NO}: its validation records cannot be read ({type(exc).__name__}: {text})"
    if mine is None or theirs is None:
        return (f"{_NO}: trial {(best if mine is None else default).number} has no validation "
                "record (trained before vcr-hpo kept them)")
    if mine.key != theirs.key or len(mine) != len(theirs):
        return (f"{_NO}: trials {best.number} and {default.number} were scored on different "
                f"validation images ({len(mine):,} and {len(theirs):,} images)")
    return describe_diff(best.number, paired_interval(mine.correct, theirs.correct))
