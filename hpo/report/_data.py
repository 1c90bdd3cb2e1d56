"""What the colour-task plots show, as plain data: parallel coordinates with n/a, Pareto fronts,
best score per backbone. No drawing here, so tests check the numbers behind each plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

#: Where a trial without a value for a parameter sits on that axis (the axis spans 0..1).
NA_POSITION = -0.15
NA_LABEL = "n/a"


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials with finite values, in trial order."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values)]


@dataclass(frozen=True)
class Axis:
    """One parallel-coordinates axis: positions in [0, 1] (NA_POSITION when missing)."""

    name: str
    positions: tuple[float, ...]
    tick_positions: tuple[float, ...]
    tick_labels: tuple[str, ...]
    missing: int  # trials placed at n/a


@dataclass(frozen=True)
class Parallel:
    trials: tuple[int, ...]  # trial numbers, one line each
    values: tuple[float, ...]  # the colour: the first objective
    axes: tuple[Axis, ...]
    objective: str


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _numeric_axis(name: str, raw: list[Any], log: bool) -> Axis:
    present = [float(v) for v in raw if v is not None]
    lo, hi = (min(present), max(present)) if present else (0.0, 1.0)
    log = log and lo > 0

    def scale(v: float) -> float:
        a, b, x = (math.log(lo), math.log(hi), math.log(v)) if log else (lo, hi, v)
        return 0.5 if b == a else (x - a) / (b - a)

    ticks = [lo, hi] if hi != lo else [lo]
    if log and hi / lo > 10:
        ticks = [lo, math.sqrt(lo * hi), hi]
    elif not log and hi != lo:
        ticks = [lo, (lo + hi) / 2, hi]
    pos = tuple(NA_POSITION if v is None else scale(float(v)) for v in raw)
    missing = sum(v is None for v in raw)
    tp = [scale(t) for t in ticks] + ([NA_POSITION] if missing else [])
    tl = [_fmt(t) for t in ticks] + ([NA_LABEL] if missing else [])
    return Axis(name, pos, tuple(tp), tuple(tl), missing)


def _categorical_axis(name: str, raw: list[Any], choices: Sequence[Any]) -> Axis:
    seen = [c for c in choices if any(repr(v) == repr(c) for v in raw)] or list(choices)
    step = 1.0 / max(1, len(seen) - 1)
    where = {repr(c): (i * step if len(seen) > 1 else 0.5) for i, c in enumerate(seen)}
    pos = tuple(NA_POSITION if v is None else where[repr(v)] for v in raw)
    missing = sum(v is None for v in raw)
    tp = [where[repr(c)] for c in seen] + ([NA_POSITION] if missing else [])
    tl = [str(c) for c in seen] + ([NA_LABEL] if missing else [])
    return Axis(name, pos, tuple(tp), tuple(tl), missing)


def parallel_data(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> Parallel:
    """Every COMPLETE trial on every parameter axis; a parameter a trial lacks (a `when:`
    parameter whose condition did not hold) puts it at the axis's n/a position instead of
    dropping the trial, as Optuna's own plot does. The last axis is the first objective."""
    trials = list(trials if trials is not None else completed(study))
    names: list[str] = []
    dists: dict[str, Any] = {}
    for t in trials:
        for k, d in t.distributions.items():
            if k not in dists:
                names.append(k)
                dists[k] = d
    axes = []
    for name in names:
        raw = [t.params.get(name) for t in trials]
        d = dists[name]
        if isinstance(d, CategoricalDistribution):
            axes.append(_categorical_axis(name, raw, d.choices))
        else:
            axes.append(_numeric_axis(name, raw, bool(getattr(d, "log", False))))
    objective = (study.metric_names or ["value"])[0]
    values = [t.values[0] for t in trials]
    axes.append(_numeric_axis(objective, values, False))
    return Parallel(tuple(t.number for t in trials), tuple(values), tuple(axes), objective)


def pareto_front(points: Sequence[tuple[float, float]], maximize_first: bool) -> list[int]:
    """Indices of the points no other point beats: first coordinate in its direction, the
    second (a cost: parameters, latency) minimised. Equal points are all on the front."""
    sign = -1.0 if maximize_first else 1.0
    front = []
    for i, (a, c) in enumerate(points):
        dominated = any(
            sign * b <= sign * a and d <= c and (sign * b < sign * a or d < c)
            for j, (b, d) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


@dataclass(frozen=True)
class Tradeoff:
    """The first objective against one cost, per COMPLETE trial that has the cost."""

    cost: str
    trials: tuple[int, ...]
    values: tuple[float, ...]
    costs: tuple[float, ...]
    front: tuple[int, ...]  # indices into the tuples above


def tradeoffs(study: optuna.Study) -> list[Tradeoff]:
    """Objective vs num_params (user attr) and vs latency_ms (when the study measured it)."""
    done = completed(study)
    names = list(study.metric_names or [])
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    out = []
    for cost in ("num_params", "latency_ms"):
        rows = []
        for t in done:
            if cost == "latency_ms" and cost in names:
                v = t.values[names.index(cost)]
            else:
                v = t.user_attrs.get(cost)
            if isinstance(v, (int, float)) and math.isfinite(v):
                rows.append((t.number, t.values[0], float(v)))
        if not rows:
            continue
        front = pareto_front([(r[1], r[2]) for r in rows], maximize)
        out.append(Tradeoff(cost, tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                            tuple(r[2] for r in rows), tuple(front)))
    return out


@dataclass(frozen=True)
class PerBackbone:
    backbones: tuple[str, ...]
    best: tuple[float, ...]  # best first-objective value per backbone
    best_trial: tuple[int, ...]
    trials: tuple[int, ...]  # COMPLETE trials per backbone
    objective: str = field(default="value")


def per_backbone(study: optuna.Study) -> PerBackbone:
    """Best first-objective value and trial count per backbone (a fixed backbone: one bar)."""
    from ..metrics import rank_trials
    from ..outputs.configs import trial_config

    done = rank_trials(completed(study), study.directions)  # best first
    fixed = None
    groups: dict[str, list[FrozenTrial]] = {}
    for t in done:
        name = t.params.get("backbone")
        if name is None:
            fixed = fixed or trial_config(study, t).backbone
            name = fixed
        groups.setdefault(str(name), []).append(t)
    order = sorted(groups, key=lambda b: done.index(groups[b][0]))
    return PerBackbone(tuple(order), tuple(groups[b][0].values[0] for b in order),
                       tuple(groups[b][0].number for b in order),
                       tuple(len(groups[b]) for b in order),
                       (study.metric_names or ["value"])[0])
