"""Out of memory as an infeasible result: what counts as out of memory and how such a trial reads.

The recording (chosen after reading Optuna 5's samplers):

- Optuna's constrained samplers read a trial's constraints only from COMPLETE trials (GP,
  NSGA-II/III; TPE also from PRUNED ones); a FAILed trial is invisible to every sampler. So a
  trial that runs out of memory is told COMPLETE with the worst possible value of each objective
  (-inf when maximised, +inf when minimised) and the constraint list `[1.0]` (feasible <= 0);
  every other COMPLETE trial of this toolkit gets `[0.0]` (GP needs the same number of
  constraints on every COMPLETE trial). TPE then puts it in its infeasible group, ranked below
  every feasible trial, and proposes that region less; GP models the constraint.
- The list goes into the system attr `constraints`, the form Optuna's own `constraints_func`
  writes and the one optuna-dashboard 0.21 reads (its history plot greys infeasible trials; it
  does not read Optuna 5's `constraints:<key>` form that `Trial.set_constraint` writes).
- The user attr `infeasible` says why ("out of memory") and `fail_reason` says what failed.
  `status` counts such trials apart ("finished 20/20, 3 infeasible"), `best`, `report`'s best
  lines and every ranking skip them (`hpo.metrics.rank_trials`, the SQL of `top_trial_ids`),
  and their infinite values can never rank anyway.
- They do count toward `n_trials`, as PRUNED trials do: each one taught the sampler something
  and ended quickly (the memory preflight stops one in seconds). A space where every config
  runs out of memory therefore ends with infeasible trials only; `status` shows it.

Imports nothing of vcr-hpo (metrics and status read it), torch only to recognise CUDA's error;
the objective writes the constraint (`hpo.trial.objective`, through `hpo.study._optuna`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .attrs import INFEASIBLE

__all__ = [
    "INFEASIBLE_ATTR",
    "OUT_OF_MEMORY",
    "constraint_values",
    "infeasible_values",
    "is_infeasible",
    "is_out_of_memory",
]

#: User attr of an infeasible trial: why it is infeasible (the key lives in hpo.attrs).
INFEASIBLE_ATTR = INFEASIBLE
OUT_OF_MEMORY = "out of memory"

# RuntimeError texts of allocators that refused (CPU: "DefaultCPUAllocator: can't allocate
# memory: you tried to allocate ..."; CUDA before OutOfMemoryError existed; MPS).
_OOM_TEXTS = ("can't allocate memory", "out of memory", "cannot allocate memory",
              "failed to allocate")


def is_out_of_memory(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, means the trial's configuration needs
    more memory than there is (a library may wrap the allocator's error: timm's weight loading
    turns it into "weights do not match")."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if _is_oom(exc):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):  # includes hpo.trial.memory.MemoryBudgetError
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(t in text for t in _OOM_TEXTS)


def infeasible_values(directions: Sequence[Any]) -> tuple[float, ...]:
    """The worst possible value of each objective: -inf when maximised, +inf when minimised."""
    out = []
    for d in directions:
        name = str(getattr(d, "name", d)).lower()
        out.append(float("-inf") if name == "maximize" else float("inf"))
    return tuple(out)


def is_infeasible(trial: Any) -> bool:
    """Whether a (frozen) trial is infeasible: the `infeasible` user attr or a constraint > 0."""
    if getattr(trial, "user_attrs", {}).get(INFEASIBLE_ATTR):
        return True
    constraints = getattr(trial, "constraints", None) or {}
    return any(v > 0 for v in constraints.values())


def constraint_values(reason: str | None) -> list[float]:
    """The constraint list of a trial about to be told COMPLETE: [1.0] infeasible, [0.0] not."""
    return [1.0 if reason else 0.0]
