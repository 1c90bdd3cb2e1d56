"""The metrics table (name, direction, per-epoch or not, how it is read) and the one ranking rule.

Imports neither torch nor Optuna: the space parser, the objective, export and status read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "EPOCH_METRICS",
    "METRICS",
    "Metric",
    "metric_values",
    "per_class_recall",
    "rank_key",
    "rank_trials",
]


@dataclass(frozen=True)
class Metric:
    """One thing a study may optimise.

    `per_epoch` metrics are measured after every epoch (a pruner can watch them; the final value
    is the best epoch's); the others are measured once per model. `read(result)` takes a
    finished `hpo.train.TrainResult`.
    """

    name: str
    direction: Literal["maximize", "minimize"]
    per_epoch: bool
    read: Callable[[Any], float]
    help: str


def _epoch(name: str) -> Callable[[Any], float]:
    return lambda result: float(getattr(result.best, name))


def _latency(result: Any) -> float:
    if result.latency_ms is None:
        raise ValueError("latency_ms was not measured (train_model(measure_latency_ms=True))")
    return float(result.latency_ms)


_TABLE = (
    Metric("val_acc", "maximize", True, _epoch("val_acc"), "validation accuracy"),
    Metric("val_macro_f1", "maximize", True, _epoch("val_macro_f1"), "validation macro F1"),
    Metric("val_loss", "minimize", True, _epoch("val_loss"), "validation loss"),
    Metric("params_m", "minimize", False, lambda r: float(r.params_m), "parameters, millions"),
    Metric("latency_ms", "minimize", False, _latency, "inference latency per image, ms"),
)

#: name -> Metric, in the order the README lists them.
METRICS: dict[str, Metric] = {m.name: m for m in _TABLE}
#: Metrics measured every epoch (a pruner can watch them); the others are fixed per model.
EPOCH_METRICS: tuple[str, ...] = tuple(m.name for m in _TABLE if m.per_epoch)


def metric_values(result: Any, metrics: Sequence[str]) -> tuple[float, ...]:
    """The values of `metrics` for a finished run: epoch metrics from its best epoch.

    Raises:
        ValueError: an unknown metric, or latency_ms that was not measured.
    """
    out = []
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {tuple(METRICS)}")
        out.append(METRICS[name].read(result))
    return tuple(out)


def per_class_recall(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str]
) -> dict[str, float | None]:
    """Recall of each class from confusion counts (rows true, columns predicted): the share of
    its images predicted as it. A class with no images has recall None (nothing was missed).

    On imbalanced data the rare classes' recall is what accuracy hides: a model that never
    predicts `yellow` loses little accuracy when yellow is 1% of the images, but its recall is 0.

    Raises:
        ValueError: the matrix is not square or its size differs from the number of names.
    """
    n = len(class_names)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"confusion matrix must be {n}x{n} (one row and column per class), "
                         f"got {len(matrix)} rows of {sorted({len(r) for r in matrix})}")
    out: dict[str, float | None] = {}
    for i, name in enumerate(class_names):
        support = sum(int(v) for v in matrix[i])
        out[name] = int(matrix[i][i]) / support if support else None
    return out


def _maximize(directions: Sequence[Any]) -> bool:
    first = directions[0]
    return str(getattr(first, "name", first)).lower() == "maximize"


def rank_key(directions: Sequence[Any]) -> Callable[[Any], tuple[float, int]]:
    """Sort key of the one ranking rule: the first objective (the study's main metric) in its
    direction, ties by trial number. `directions` are strings or Optuna StudyDirections."""
    sign = -1.0 if _maximize(directions) else 1.0
    return lambda t: (sign * t.values[0], t.number)


def rank_trials(trials: Iterable[Any], directions: Sequence[Any]) -> list[Any]:
    """Feasible COMPLETE trials with finite values, best first (see `rank_key`); infeasible
    ones (out of memory, `hpo.constraints`) never rank."""
    from .constraints import is_infeasible

    done = [t for t in trials if getattr(t.state, "name", t.state) == "COMPLETE"
            and t.values and all(math.isfinite(v) for v in t.values) and not is_infeasible(t)]
    return sorted(done, key=rank_key(directions))
