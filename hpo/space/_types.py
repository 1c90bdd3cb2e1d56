"""Search-space values: Param, StudySpec, SearchSpace (frozen, picklable, canonical as JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .._values import FrozenDict
from ..algorithms import AlgorithmSpec
from ..config import TrainConfig

__all__ = ["STALL_TIMEOUT", "AlgorithmSpec", "Param", "SearchSpace", "StudySpec"]

#: Seconds an isolated trial's child may send nothing and use no CPU before it is killed as
#: stalled (`study.trial_stall_timeout`, hpo.run.isolation). A healthy child is that silent and idle
#: only while it waits for another worker to build the shared data cache.
STALL_TIMEOUT = 600.0


@dataclass(frozen=True)
class StudySpec:
    """The `study:` block: what to optimise, for how long, with which sampler and pruner."""

    name: str
    directions: tuple[str, ...]
    metrics: tuple[str, ...]
    n_trials: int | None
    timeout: float | None
    sampler: AlgorithmSpec
    pruner: AlgorithmSpec | None
    #: final weights kept: the top k COMPLETE trials of the study, and per backbone
    keep_weights: tuple[int, int] = (1, 1)
    # How a trial runs ("none": in the worker, "process": in a forked child), not what it
    # measures: left out of canonical(), so switching it keeps the fingerprint and resumes.
    trial_isolation: str = "none"
    trial_stall_timeout: float | None = STALL_TIMEOUT  # None: no limit; left out of canonical()
    report_every: float | None = None  # fraction of an epoch between reports (hpo.trial.subepoch)
    report_val_images: int | None = None  # validation images a mid-epoch report scores
    fidelity: str = "epochs"  # what a pruner step counts: epochs, seconds or compute (hpo.trial.fidelity)
    report_seconds: int | None = None  # grid of seconds between reports (fidelity: seconds)
    portfolio: int = 0  # shipped portfolio entries after trial 0 (hpo.run.portfolio); 0: off
    neighbours: int = 0  # one-change neighbours of trial 0 after the portfolio; 0: off
    trial_length: str = "epochs"  # epochs, or compute: the default's epochs' compute (hpo.trial.equal_compute)
    # Which trial `best` exports (hpo.paired.CHOICE_RULES): a rule applied after the trials, not
    # what they measure: left out of canonical(), so switching it keeps the fingerprint.
    choose: str = "best"

    def canonical(self) -> dict[str, Any]:
        # optional keys only when set, so the fingerprints of spaces without them stay as they were
        extra: dict[str, Any] = {} if self.keep_weights == (1, 1) else {
            "keep_weights": {"top": self.keep_weights[0], "per_backbone": self.keep_weights[1]}}
        sub: dict[str, Any] = {} if self.report_every is None else {
            "report_every": self.report_every, "report_val_images": self.report_val_images}
        if self.fidelity != "epochs":
            sub = {**sub, "fidelity": self.fidelity, "report_seconds": self.report_seconds}
        if self.portfolio:
            sub["portfolio"] = self.portfolio
        if self.neighbours:
            sub["neighbours"] = self.neighbours
        if self.trial_length != "epochs":
            sub["trial_length"] = self.trial_length
        return {**extra,
            "name": self.name,
            "directions": list(self.directions),
            "metrics": list(self.metrics),
            "n_trials": self.n_trials,
            "timeout": self.timeout,
            "sampler": self.sampler.canonical(),
            "pruner": None if self.pruner is None else self.pruner.canonical(),
            **sub,
        }


def _key(value: Any) -> tuple[str, Any]:
    """Equality key that keeps true apart from 1 (Python's == does not) but joins 1 and 1.0."""
    if isinstance(value, bool) or value is None:
        return ("const", repr(value))
    if isinstance(value, (int, float)):
        return ("num", value)
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Param:
    """One searched parameter. `when` maps a parent parameter to the values that enable this one."""

    name: str
    type: str
    choices: tuple[Any, ...] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    default: Any = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=FrozenDict)
    has_default: bool = False

    def _bounds(self) -> tuple[float | int, float | int]:
        """(low, high) of a numeric parameter; the parser sets both for every float and int."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name}: a {self.type} parameter needs low and high")
        return self.low, self.high

    def _int_range(self) -> tuple[int, int, int]:
        """(low, high, step) of an int parameter; the parser makes all three integers."""
        lo, hi = self._bounds()
        step = self.step or 1
        if not all(float(v).is_integer() for v in (lo, hi, step)):
            raise ValueError(f"{self.name}: an int parameter needs whole low, high and step")
        return int(lo), int(hi), int(step)

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution this parameter is sampled from."""
        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices or ()))
        if self.type == "float":
            lo, hi = self._bounds()
            return FloatDistribution(lo, hi, log=self.log, step=self.step)
        ilo, ihi, istep = self._int_range()
        return IntDistribution(ilo, ihi, log=self.log, step=istep)

    def suggest(self, trial: Any) -> Any:
        """Ask `trial` for a value through its public suggest_* API."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices or ()))
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)

    def enabled(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter's `when` holds for the already-decided `values`."""
        for parent, allowed in self.when.items():
            if parent not in values or _key(values[parent]) not in {_key(a) for a in allowed}:
                return False
        return True

    def baseline(self) -> Any:
        """The default, else a central value: first choice, (geometric) midpoint snapped to step."""
        if self.has_default:
            return self.default
        if self.type == "categorical":
            return (self.choices or (None,))[0]
        lo, hi = self._bounds()
        mid = math.sqrt(lo * hi) if self.log else (lo + hi) / 2
        step = self.step or (1 if self.type == "int" else None)
        if step:
            mid = lo + round((mid - lo) / step) * step
            mid = min(max(mid, lo), hi)
        return round(mid) if self.type == "int" else float(mid)

    def grid_values(self) -> tuple[Any, ...]:
        """Every value of a finite parameter (Grid/BruteForce); ValueError if continuous."""
        if self.type == "categorical":
            return tuple(self.choices or ())
        if self.type == "int":
            ilo, ihi, istep = self._int_range()
            return tuple(range(ilo, ihi + 1, istep))
        if self.step is None:
            raise ValueError(f"{self.name}: a float without step has no finite grid")
        lo, hi = self._bounds()
        step = self.step
        n = round((hi - lo) / step)
        # Same arithmetic as Optuna's FloatDistribution, so every grid value is "contained".
        return tuple(float(min(lo + i * step, hi)) for i in range(n + 1))

    def grid_size(self) -> int:
        if self.type == "categorical":
            return len(self.choices or ())
        lo, hi = self._bounds()
        step = self.step or 1
        return round((hi - lo) / step) + 1

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices or ())
        else:
            out.update(low=self.low, high=self.high, log=self.log, step=self.step)
        if self.has_default:
            out["default"] = self.default
        if self.when:
            out["when"] = {k: list(v) for k, v in sorted(self.when.items())}
        return out


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. `params` are in evaluation order (parents before children)."""

    source: str
    text: str
    study: StudySpec
    params: tuple[Param, ...]
    fixed: Mapping[str, Any]
    fingerprint: str = ""

    def canonical(self) -> dict[str, Any]:
        """Semantic content as JSON-able data: comments, key order and number spelling vanish."""
        return {
            "study": self.study.canonical(),
            "params": {p.name: p.canonical() for p in sorted(self.params, key=lambda p: p.name)},
            "fixed": {k: self.fixed[k] for k in sorted(self.fixed)},
        }

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Name -> Optuna distribution for every parameter (conditional ones included)."""
        return {p.name: p.distribution() for p in self.params}

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Suggest every parameter whose condition holds, parents first; returns name -> value."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.enabled(values):
                values[p.name] = p.suggest(trial)
        return values

    def active(self, params: Mapping[str, Any]) -> set[str]:
        """Names of the parameters whose conditions hold given `params` (missing parents: off)."""
        seen: dict[str, Any] = {}
        on: set[str] = set()
        for p in self.params:
            if p.enabled(seen):
                on.add(p.name)
                if p.name in params:
                    seen[p.name] = params[p.name]
        return on

    def baseline(self) -> dict[str, Any]:
        """The baseline parameters: each active parameter's default, else its central value
        (`Param.baseline`), walked in dependency order so a `when` sees its parents' values."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.enabled(values):
                values[p.name] = p.baseline()
        return values

    def default_params(self) -> dict[str, Any] | None:
        """The baseline trial for `study.enqueue_trial` (`baseline()`), or None when no
        parameter has a default: then there is no user's baseline to try first."""
        return self.baseline() if any(p.has_default for p in self.params) else None

    def config_for(self, params: Mapping[str, Any],
                   overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """The TrainConfig for one trial: fixed < params < overrides.

        Raises:
            ConfigError: an unknown name or a bad value.
        """
        merged = {**self.fixed, **params, **(overrides or {})}
        return TrainConfig.from_dict(merged, where=self.source)

    def describe(self) -> list[tuple[str, ...]]:
        """Rows (name, type, range or choices, log/step, condition) for a table."""
        rows: list[tuple[str, ...]] = []
        for p in self.params:
            if p.type == "categorical":
                rng = "[" + ", ".join(_fmt(c) for c in p.choices or ()) + "]"
            else:
                rng = f"[{_fmt(p.low)}, {_fmt(p.high)}]"
            if p.has_default:
                rng += f" default {_fmt(p.default)}"
            scale = "log" if p.log else (f"step {_fmt(p.step)}" if p.step is not None else "")
            cond = " and ".join(
                f"{k}={_fmt(v[0])}" if len(v) == 1 else f"{k} in {{{', '.join(_fmt(x) for x in v)}}}"
                for k, v in p.when.items())
            rows.append((p.name, p.type, rng, scale, cond))
        return rows



def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
