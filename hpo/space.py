"""Search spaces: YAML text -> a validated, frozen SearchSpace -> Optuna distributions and params.

Grammar (DESIGN section 4): a mapping with `study`, `hyperparameters` and `fixed`.

Number rule: a *plain* YAML scalar that YAML 1.2 reads as a number is a number here, so
`1e-5` and `1E+3` are floats (PyYAML alone, following YAML 1.1, reads them as strings). A
*quoted* scalar is always a string: `"1e-5"` where a number belongs is an error that says to
unquote it. Editors that check files against `hpo/schema.json` use YAML 1.2 and agree.

Direction rule: `val_acc` and `val_macro_f1` are maximised, `val_loss`, `params_m` and
`latency_ms` minimised. Omitted directions follow the metric; a direction that contradicts its
metric (maximize val_loss) is an error, since it always is a mistake.

Condition rule: `when` may name only *searched categorical* parameters (equality on a
continuous value almost never holds) and only values among their choices; chains are allowed,
cycles and conditions that can never hold together are errors.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from backbones import find_pretrained_weights

from .algorithms import _MISSING as _ARG_MISSING
from .algorithms import (
    FINITE_SPACE_SAMPLERS,
    PRUNERS,
    SAMPLERS,
    SINGLE_OBJECTIVE_SAMPLERS,
    canonical_algorithm_name,
    check_algorithm_args,
)
from .config import FIELD_NAMES, FIELD_REGISTRIES, TrainConfig, check_field, field_type
from .errors import ConfigError, SearchSpaceError, UnknownNameError, WeightsNotFoundError

__all__ = [
    "METRICS",
    "AlgorithmSpec",
    "Param",
    "SearchSpace",
    "SearchSpaceError",
    "StudySpec",
    "load_search_space",
    "parse_search_space",
    "schema",
]

#: Metric name -> the direction that improves it.
METRICS: dict[str, str] = {
    "val_acc": "maximize",
    "val_macro_f1": "maximize",
    "val_loss": "minimize",
    "params_m": "minimize",
    "latency_ms": "minimize",
}
DIRECTIONS = ("maximize", "minimize")
PARAM_TYPES = ("categorical", "float", "int")
_PARAM_KEYS = {
    "categorical": ("type", "choices", "default", "when"),
    "float": ("type", "low", "high", "log", "step", "default", "when"),
    "int": ("type", "low", "high", "log", "step", "default", "when"),
}
_ALL_PARAM_KEYS = sorted({k for keys in _PARAM_KEYS.values() for k in keys})
_TOP_KEYS = ("study", "hyperparameters", "fixed")
_STUDY_KEYS = ("name", "direction", "directions", "metric", "metrics", "n_trials", "timeout",
               "sampler", "pruner")
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAX_NODES = 100_000
_MAX_GRID = 1_000_000
_MAX_CONDITION_COMBOS = 4096
_SEARCH_DIR = "search_spaces"
_MISSING = object()


# --------------------------------------------------------------------------- frozen values


class _FrozenDict(dict):
    """A read-only dict that still pickles (worker processes receive specs) and JSON-dumps."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this mapping is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore
    __ior__ = _read_only  # type: ignore

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(_jsonable(self), sort_keys=True))


def _jsonable(value: Any) -> Any:
    if isinstance(value, AlgorithmSpec):
        return value.canonical()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class AlgorithmSpec:
    """A sampler or pruner: registry name and constructor arguments (a sampler's seed is args["seed"])."""

    type: str
    args: Mapping[str, Any] = field(default_factory=_FrozenDict)

    def canonical(self) -> dict[str, Any]:
        return {"type": self.type, "args": {k: _jsonable(v) for k, v in sorted(self.args.items())}}

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v.describe() if isinstance(v, AlgorithmSpec) else _show(v)}"
                          for k, v in self.args.items())
        return f"{self.type}({inner})"


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

    def canonical(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "directions": list(self.directions),
            "metrics": list(self.metrics),
            "n_trials": self.n_trials,
            "timeout": self.timeout,
            "sampler": self.sampler.canonical(),
            "pruner": None if self.pruner is None else self.pruner.canonical(),
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
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=_FrozenDict)
    has_default: bool = False

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution this parameter is sampled from."""
        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices or ()))
        if self.type == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)

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
        lo, hi = self.low, self.high
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
            return tuple(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            raise ValueError(f"{self.name}: a float without step has no finite grid")
        n = round((self.high - self.low) / self.step)
        # Same arithmetic as Optuna's FloatDistribution, so every grid value is "contained".
        return tuple(float(min(self.low + i * self.step, self.high)) for i in range(n + 1))

    def grid_size(self) -> int:
        if self.type == "categorical":
            return len(self.choices or ())
        step = self.step or 1
        return round((self.high - self.low) / step) + 1

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

    def default_params(self) -> dict[str, Any] | None:
        """The baseline trial for `study.enqueue_trial`: defaults, else central values; only
        active parameters. None when no parameter has a default."""
        if not any(p.has_default for p in self.params):
            return None
        values: dict[str, Any] = {}
        for p in self.params:
            if p.enabled(values):
                values[p.name] = p.baseline()
        return values

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
        rows = []
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


# --------------------------------------------------------------------------- formatting


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _show(value: Any) -> str:
    """A value as the user would write it, shortened."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    elif isinstance(value, (str, int, float)):
        text = repr(value)
    else:
        try:
            text = json.dumps(_jsonable(value), default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _path_text(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _Errors:
    """Collects `file: yaml.path (line N): rule, got value. fix` lines."""

    def __init__(self, source: str, lines: Mapping[tuple, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[tuple[int, int, str]] = []

    def add(self, path: Sequence[Any], rule: str, got: Any = _MISSING, fix: str = "") -> None:
        text = rule + ("" if got is _MISSING else f", got {_show(got)}")
        if fix:
            text += f". {fix.rstrip('.')}"
        self.add_text(path, text)

    def add_text(self, path: Sequence[Any], text: str) -> None:
        line = self.line(path)
        where = f"{self.source}: {_path_text(path)}" + (f" (line {line})" if line else "")
        self.items.append((line or 0, len(self.items), f"{where}: {text}"))

    def line(self, path: Sequence[Any]) -> int | None:
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return 1  # the document itself starts on line 1
            path = path[:-1]

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self) -> SearchSpaceError:
        return SearchSpaceError([text for _, _, text in sorted(self.items)])


# --------------------------------------------------------------------------- YAML with lines


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 exponent floats (1e-5, 2E+3) as numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int], _Errors]:
    """Parse YAML into plain data plus a map from each value's path to its 1-based line."""
    lines: dict[tuple, int] = {}
    errs = _Errors(source, lines)
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        errs.items.append((0, 0, f"{source}: not valid YAML, got {_yaml_problem(exc)}. Fix the YAML text"))
        return None, lines, errs
    budget = [_MAX_NODES]

    def convert(node: yaml.Node, path: tuple, stack: frozenset) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooBig()
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in stack:
            errs.add(path, "a YAML alias refers to itself", fix="Remove the recursive alias")
            return None
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            errs.add(path, "unsupported YAML tag", node.tag, "Remove the tag")
            return None
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    errs.add(path, "mapping keys must be plain names", fix="Write name: value")
                    continue
                key = _scalar(key_node, path)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    key = str(key)
                lines[path + (key,)] = key_node.start_mark.line + 1
                if key in out:
                    errs.add(path + (key,), "duplicate key", key, "Keep one of them")
                out[key] = convert(value_node, path + (key,), stack | {id(node)})
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(v, path + (i,), stack | {id(node)}) for i, v in enumerate(node.value)]
        return _scalar(node, path)

    def _scalar(node: yaml.Node, path: tuple) -> Any:
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            errs.add(path, f"cannot read this value ({exc})", node.value, "Fix the value")
            return None

    try:
        node = loader.get_single_node()
        data = None if node is None else convert(node, (), frozenset())
    except _TooBig:
        errs.add((), f"document too large (over {_MAX_NODES} values)", fix="Shorten it")
        data = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        where = f"{source}: (line {line})" if line else source
        errs.items.append((line or 0, 0, f"{where}: not valid YAML, got {problem}. Fix the YAML syntax"))
        data = None
    except yaml.YAMLError as exc:
        errs.items.append((0, 0, f"{source}: not valid YAML, got {_yaml_problem(exc)}. Fix the YAML syntax"))
        data = None
    except RecursionError:
        errs.add((), "nested too deeply", fix="Flatten the document")
        data = None
    finally:
        loader.dispose()
    return data, lines, errs


def _yaml_problem(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]


_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _TooBig(Exception):
    pass


# --------------------------------------------------------------------------- checks


def _field_problem(name: str, value: Any) -> tuple[Any, str | None]:
    """check_field without its prefix: (normalised value, None) or (value, 'rule, got x. fix')."""
    if name in FIELD_REGISTRIES and isinstance(value, str) and value not in FIELD_REGISTRIES[name]:
        reg = FIELD_REGISTRIES[name]
        close = difflib.get_close_matches(value, reg.names(), n=1, cutoff=0.5)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        return value, f"must be a registered {reg.kind}, got {value!r}. {hint}Options: {', '.join(reg.names())}"
    marker = "\x00"
    try:
        return check_field(name, value, where=marker), None
    except (ConfigError, UnknownNameError) as exc:
        text = str(exc)
        prefix = f"{marker}: {name}: "
        return value, text[len(prefix):] if text.startswith(prefix) else text.replace(marker, "")


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def _number(errs: _Errors, path: tuple, value: Any, *, integer: bool = False) -> Any:
    """A finite number (an int when `integer`), or _MISSING after recording why not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and _looks_numeric(value):
            errs.add(path, "must be a number, not a quoted string", value,
                     f"Write it unquoted: {value.strip()}")
        else:
            errs.add(path, "must be a whole number" if integer else "must be a number", value,
                     "Write a number such as 3" if integer else "Write a number such as 0.001")
        return _MISSING
    if isinstance(value, float) and not math.isfinite(value):
        errs.add(path, "must be finite", value, "Write a finite number")
        return _MISSING
    if integer and not float(value).is_integer():
        errs.add(path, "must be a whole number for an int parameter", value,
                 f"Write {math.floor(value)} or {math.ceil(value)}, or use type: float")
        return _MISSING
    return int(value) if integer else value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _closest(word: Any, options: Sequence[str]) -> str | None:
    """The likeliest intended option: a transposition (lgo -> log) first, then difflib."""
    if not isinstance(word, str):
        return None
    for option in options:
        if sorted(option) == sorted(word):
            return option
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return close[0] if close else None


def _unknown_key(errs: _Errors, path: tuple, key: Any, allowed: Sequence[str], what: str) -> None:
    close = _closest(key, allowed)
    hint = f"Did you mean {close!r}? " if close else ""
    errs.add(path, f"unknown key in {what}", key, f"{hint}Allowed: {', '.join(allowed)}")


def _parse_study(raw: Any, errs: _Errors, source: str) -> StudySpec | None:
    path: tuple = ("study",)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errs.add(path, "must be a mapping", raw, "Write study: {name: ..., metric: val_acc, ...}")
        return None
    ok = True
    for key in raw:
        if key not in _STUDY_KEYS:
            _unknown_key(errs, path + (key,), key, _STUDY_KEYS, "study")
            ok = False

    name = raw.get("name", _default_study_name(source))
    if not isinstance(name, str) or not _STUDY_NAME.match(name):
        errs.add(path + ("name",), "must be a name of letters, digits, '.', '_' or '-' (1-100)", name,
                 "Write a name such as vcr-demo")
        ok = False

    directions = _string_list(errs, raw, path, "direction", "directions", DIRECTIONS)
    metrics = _string_list(errs, raw, path, "metric", "metrics", tuple(METRICS))
    if directions is _MISSING or metrics is _MISSING:
        ok = False
    else:
        if metrics is None:
            if directions is not None and len(directions) > 1:
                errs.add(path + ("directions",), f"needs metrics: one per direction ({len(directions)})",
                         list(directions), "Add metrics: [val_acc, latency_ms] or similar")
                ok = False
            metrics = ("val_acc",)
        if directions is None:
            directions = tuple(METRICS[m] for m in metrics)
        if ok and len(directions) != len(metrics):
            key = "directions" if "directions" in raw else "direction"
            errs.add(path + (key,), f"needs one direction per metric ({len(metrics)} metrics)",
                     list(directions), "Give as many directions as metrics, or omit them")
            ok = False
        elif ok:
            for i, (d, m) in enumerate(zip(directions, metrics)):
                if METRICS[m] != d:
                    key = ("directions", i) if "directions" in raw else ("direction",)
                    errs.add(path + key, f"{m} is improved by {METRICS[m]}", d,
                             f"Write {METRICS[m]} (or omit the direction)")
                    ok = False

    n_trials = raw.get("n_trials")
    if isinstance(n_trials, float) and n_trials.is_integer():  # 1e3 is a whole number too
        n_trials = int(n_trials)
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int)
                                 or n_trials < 1):
        errs.add(path + ("n_trials",), "must be a positive whole number or null", n_trials,
                 "Write a number such as 20, or null for no limit")
        ok = False
    timeout = raw.get("timeout")
    if timeout is not None:
        t = _number(errs, path + ("timeout",), timeout)
        if t is _MISSING:
            ok = False
        elif t <= 0:
            errs.add(path + ("timeout",), "must be positive (seconds) or null", timeout,
                     "Write a number of seconds such as 600, or null")
            ok = False
        else:
            timeout = float(t)

    sampler = _parse_algorithm(errs, path + ("sampler",), raw.get("sampler", _MISSING), "sampler")
    pruner = _parse_algorithm(errs, path + ("pruner",), raw.get("pruner", None), "pruner")
    if sampler is _MISSING or pruner is _MISSING:
        ok = False
    if not ok:
        return None
    return StudySpec(name=name, directions=tuple(directions), metrics=tuple(metrics),
                     n_trials=n_trials, timeout=timeout, sampler=sampler, pruner=pruner)


def _default_study_name(source: str) -> str:
    stem = Path(source).stem if not source.startswith("<") else ""
    return stem if _STUDY_NAME.match(stem or "") else "vcr-hpo"


def _string_list(errs: _Errors, raw: Mapping, path: tuple, one: str, many: str,
                 options: tuple[str, ...]) -> Any:
    """`direction: x` or `directions: [x, y]` -> tuple, None if absent, _MISSING on error."""
    if one in raw and many in raw:
        errs.add(path + (many,), f"give either {one} or {many}, not both", raw[many], f"Remove {one}")
        return _MISSING
    if one in raw:
        value = raw[one]
        if isinstance(value, list):
            errs.add(path + (one,), f"must be a single name; a list belongs under {many}", value,
                     f"Write {many}: {_show(value)}")
            return _MISSING
        if value not in options:
            errs.add(path + (one,), f"must be one of {', '.join(options)}", value,
                     _did_you_mean(value, options))
            return _MISSING
        return (value,)
    if many in raw:
        value = raw[many]
        if not isinstance(value, list):
            errs.add(path + (many,), "must be a list", value,
                     f"Write [{_fmt(value)}], or use {one}: {_fmt(value)}")
            return _MISSING
        if not value:
            errs.add(path + (many,), "must not be empty", value, f"List at least one of {', '.join(options)}")
            return _MISSING
        bad = False
        for i, v in enumerate(value):
            if v not in options if _is_scalar(v) else True:
                errs.add(path + (many, i), f"must be one of {', '.join(options)}", v,
                         _did_you_mean(v, options))
                bad = True
        if many == "metrics" and not bad and len(set(value)) != len(value):
            errs.add(path + (many,), "lists a metric twice", value, "List each metric once")
            bad = True
        return _MISSING if bad else tuple(value)
    return None


def _did_you_mean(value: Any, options: Sequence[str]) -> str:
    close = _closest(value, options)
    return (f"Did you mean {close!r}? " if close else "") + f"Options: {', '.join(options)}"


def _parse_algorithm(errs: _Errors, path: tuple, raw: Any, kind: str) -> Any:
    """A sampler/pruner spec: AlgorithmSpec, None (no pruner), or _MISSING on error."""
    reg = SAMPLERS if kind == "sampler" else PRUNERS
    if raw is _MISSING:
        return AlgorithmSpec("TPE", _FrozenDict())
    if raw is None:
        if kind == "pruner":
            return None
        errs.add(path, "must name a sampler", raw, f"Write {{type: TPE, seed: 42}}. Options: {', '.join(reg.names())}")
        return _MISSING
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        errs.add(path, f"must be a {kind} name or a mapping with a type", raw,
                 f"Write {{type: {reg.names()[0]}, ...}}")
        return _MISSING
    if "type" not in raw:
        errs.add(path, "needs a type", fix=f"Add type: one of {', '.join(reg.names())}")
        return _MISSING
    name = raw["type"]
    if not isinstance(name, str):
        errs.add(path + ("type",), f"must be a {kind} name", name, f"Options: {', '.join(reg.names())}")
        return _MISSING
    name = canonical_algorithm_name(kind, name)
    if name not in reg:
        errs.add(path + ("type",), f"unknown {kind}", raw["type"], _did_you_mean(name, reg.names()))
        return _MISSING
    args: dict[str, Any] = {}
    ok = True
    for key, value in raw.items():
        if key == "type":
            continue
        if not isinstance(key, str):
            errs.add(path + (key,), "argument names must be strings", key, "Write name: value")
            ok = False
        elif kind == "pruner" and name == "Patient" and key == "wrapped_pruner":
            nested = _parse_algorithm(errs, path + (key,), value, "pruner")
            if nested is _MISSING:
                ok = False
            args[key] = nested
        elif not _is_scalar(value):
            errs.add(path + (key,), "must be a single value", value, "Write a number, string, true/false or null")
            ok = False
        else:
            args[key] = value
    if not ok:
        return _MISSING
    problems = check_algorithm_args(kind, name, args)
    for prob in problems:
        errs.add(path + ((prob.arg,) if prob.arg else ()), prob.rule,
                 _MISSING if prob.got is _ARG_MISSING else prob.got, prob.fix)
    if problems:
        return _MISSING
    return AlgorithmSpec(name, _FrozenDict(args))


def _parse_param(errs: _Errors, name: Any, raw: Any) -> tuple[Param | None, dict]:
    """One hyperparameter; returns (Param or None, raw `when` for the cross checks)."""
    path: tuple = ("hyperparameters", name)
    if not isinstance(name, str):
        errs.add(path, "parameter names must be trainer field names", name,
                 f"Fields: {', '.join(sorted(FIELD_NAMES))}")
        return None, {}
    if name not in FIELD_NAMES:
        _, problem = _field_problem(name, None)
        errs.add_text(path, problem or "not a trainer field")
        return None, {}
    if not isinstance(raw, dict):
        fix = ("Write {type: categorical, choices: [...]}" if isinstance(raw, list)
               else "Write {type: float, low: ..., high: ...}, or move a single value to fixed:")
        errs.add(path, "must be a mapping with a type", raw, fix)
        return None, {}
    ptype = raw.get("type", _MISSING)
    if ptype is _MISSING:
        errs.add(path + ("type",), "is required", fix="Add type: categorical, float or int")
        return None, {}
    if ptype not in PARAM_TYPES:
        errs.add(path + ("type",), "must be categorical, float or int", ptype, _did_you_mean(ptype, PARAM_TYPES))
        return None, {}
    ok = True
    for key in raw:
        if key not in _PARAM_KEYS[ptype]:
            owners = [t for t in PARAM_TYPES if key in _PARAM_KEYS[t]]
            if owners:
                errs.add(path + (key,), f"not a key of a {ptype} parameter", key,
                         f"Remove it ({key} belongs to {' and '.join(owners)} parameters)")
            else:
                _unknown_key(errs, path + (key,), key, _PARAM_KEYS[ptype], f"a {ptype} parameter")
            ok = False

    kind = field_type(name)
    if ptype in ("float", "int") and kind not in (int, float):
        errs.add(path + ("type",), f"{name} is a {kind.__name__} field, so it cannot be {ptype}", ptype,
                 "Use type: categorical with choices")
        return None, {}
    if ptype == "float" and kind is int:
        errs.add(path + ("type",), f"{name} is an integer field", ptype, "Use type: int or categorical")
        return None, {}

    if ptype == "categorical":
        param = _parse_categorical(errs, path, name, raw)
    else:
        param = _parse_numeric(errs, path, name, ptype, raw)
    when = raw.get("when", _MISSING)
    if when is not _MISSING and not (isinstance(when, dict) and when):
        errs.add(path + ("when",), "must be a mapping of parameter: value or [values]", when,
                 "Write when: {loss_fn: focal}")
        ok = False
        when = {}
    if when is _MISSING:
        when = {}
    for parent, values in when.items():
        vals = values if isinstance(values, list) else [values]
        if not vals:
            errs.add(path + ("when", parent), "must list at least one value", values, "Write a value or [values]")
            ok = False
        for i, v in enumerate(vals):
            if not _is_scalar(v):
                errs.add(path + ("when", parent) + ((i,) if isinstance(values, list) else ()),
                         "must be a single value", v, "Write a value or a flat list of values")
                ok = False
    if param is None or not ok:
        return None, {}
    return param, when


def _parse_categorical(errs: _Errors, path: tuple, name: str, raw: Mapping) -> Param | None:
    choices = raw.get("choices", _MISSING)
    if choices is _MISSING:
        errs.add(path + ("choices",), "is required for a categorical parameter", fix="Add choices: [a, b]")
        return None
    if not isinstance(choices, list):
        fix = f"Write [{_fmt(choices)}]" if _is_scalar(choices) else "Write a list such as [a, b]"
        errs.add(path + ("choices",), "must be a list", choices, fix)
        return None
    if len(choices) < 2:
        errs.add(path + ("choices",), "needs at least 2 choices", choices,
                 "Add choices, or put a single value under fixed:")
        ok = False
    else:
        ok = True
    clean: list[Any] = []
    seen: set = set()
    for i, c in enumerate(choices):
        cpath = path + ("choices", i)
        if not _is_scalar(c):
            errs.add(cpath, "each choice must be a single value", c, "Flatten the list")
            ok = False
            continue
        if isinstance(c, float) and not math.isfinite(c):
            errs.add(cpath, "must be finite", c, "Write a finite number")
            ok = False
            continue
        if isinstance(c, str) and _looks_numeric(c) and field_type(name) in (int, float):
            errs.add(cpath, "must be a number, not a quoted string", c, f"Write it unquoted: {c.strip()}")
            ok = False
            continue
        value, problem = _field_problem(name, c)
        if problem:
            errs.add_text(cpath, problem)
            ok = False
            continue
        if _key(value) in seen:
            errs.add(cpath, "duplicate choice", c, "List each choice once")
            ok = False
            continue
        seen.add(_key(value))
        clean.append(value)
    if not ok:
        return None
    has_default = "default" in raw
    default = None
    if has_default:
        d = raw["default"]
        dv, _ = _field_problem(name, d) if _is_scalar(d) else (d, None)
        match = [c for c in clean if _is_scalar(dv) and _key(c) == _key(dv)]
        if not match:
            errs.add(path + ("default",), "must be one of the choices", d,
                     f"Choices: {', '.join(_fmt(c) for c in clean)}")
            return None
        default = match[0]
    return Param(name, "categorical", choices=tuple(clean), default=default, has_default=has_default)


def _divides(span: float, step: float, integer: bool) -> bool:
    """Whether `span` is a whole number of `step`s (float: up to rounding, as Optuna checks)."""
    if integer:
        return span % step == 0
    n = span / step
    return abs(n - round(n)) <= 1e-9 * max(1.0, abs(n))


def _parse_numeric(errs: _Errors, path: tuple, name: str, ptype: str, raw: Mapping) -> Param | None:
    integer = ptype == "int"
    ok = True
    bounds = {}
    for key in ("low", "high"):
        if key not in raw:
            errs.add(path + (key,), f"is required for a {ptype} parameter", fix=f"Add {key}: <number>")
            ok = False
            continue
        v = _number(errs, path + (key,), raw[key], integer=integer)
        if v is _MISSING:
            ok = False
            continue
        _, problem = _field_problem(name, v)
        if problem:
            errs.add_text(path + (key,), problem)
            ok = False
            continue
        bounds[key] = v if integer else float(v)
    log = raw.get("log", False)
    if not isinstance(log, bool):
        errs.add(path + ("log",), "must be true or false", log, "Write log: true")
        ok = False
        log = False
    step = raw.get("step")
    if step is not None:
        step = _number(errs, path + ("step",), step, integer=integer)
        if step is _MISSING:
            ok = False
        elif step <= 0:
            errs.add(path + ("step",), "must be positive", raw["step"], "Write a step greater than 0")
            ok = False
        elif not integer:
            step = float(step)
    if log and raw.get("step") is not None:
        errs.add(path + ("step",), "cannot be combined with log: true", raw["step"],
                 "Remove step, or set log: false")
        ok = False
    if not ok or len(bounds) < 2:
        return None
    low, high = bounds["low"], bounds["high"]
    if low >= high:
        errs.add(path + ("high",), f"must be greater than low ({_fmt(low)})", high,
                 "Swap them, or put a single value under fixed:")
        return None
    if log and low <= 0:
        errs.add(path + ("low",), "must be > 0 on a log scale", low, "Raise low or set log: false")
        return None
    if step is not None:
        n = (high - low) / step
        if not _divides(high - low, step, integer):
            k = max(1, math.floor(n + 1e-9))
            errs.add(path + ("step",), f"must divide high - low ({_fmt(high - low)})", step,
                     f"Set high to {_fmt(low + k * step)} or choose a step that divides the range")
            return None
    param = Param(name, ptype, low=low, high=high, log=log, step=step)
    if "default" in raw:
        d = _number(errs, path + ("default",), raw["default"], integer=integer)
        if d is _MISSING:
            return None
        d = d if integer else float(d)
        on_grid = step is None or _divides(d - low, step, integer)
        if not (low <= d <= high and on_grid):
            where = f"[{_fmt(low)}, {_fmt(high)}]" + (f" on step {_fmt(step)}" if step is not None else "")
            errs.add(path + ("default",), f"must lie in {where}", raw["default"],
                     "Choose a default inside the range")
            return None
        param = Param(name, ptype, low=low, high=high, log=log, step=step, default=d, has_default=True)
    return param


def _parse_fixed(errs: _Errors, raw: Any) -> dict[str, Any] | None:
    path: tuple = ("fixed",)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errs.add(path, "must be a mapping of field: value", raw, "Write fixed: {epochs: 3}")
        return None
    out: dict[str, Any] = {}
    ok = True
    for name, value in raw.items():
        p = path + (name,)
        if not isinstance(name, str):
            errs.add(p, "names must be trainer field names", name, f"Fields: {', '.join(sorted(FIELD_NAMES))}")
            ok = False
            continue
        if name in FIELD_NAMES and not _is_scalar(value):
            errs.add(p, "must be a single value", value, "To search it, move it under hyperparameters:")
            ok = False
            continue
        if name in FIELD_NAMES and isinstance(value, str) and _looks_numeric(value) \
                and field_type(name) in (int, float):
            errs.add(p, "must be a number, not a quoted string", value, f"Write it unquoted: {value.strip()}")
            ok = False
            continue
        clean, problem = _field_problem(name, value)
        if problem:
            errs.add_text(p, problem)
            ok = False
            continue
        out[name] = clean
    return out if ok else None


def _check_conditions(errs: _Errors, params: dict[str, Param], whens: dict[str, dict],
                      fixed: Mapping[str, Any], failed: set[str]) -> dict[str, Param] | None:
    """Resolve `when` clauses against the parents' choices; None if any is invalid."""
    ok = True
    resolved: dict[str, Param] = {}
    for name, param in params.items():
        when: dict[str, tuple] = {}
        for parent, values in whens.get(name, {}).items():
            path = ("hyperparameters", name, "when", parent)
            if parent == name:
                errs.add(path, "a parameter cannot depend on itself", parent, "Remove this condition")
                ok = False
                continue
            if parent in failed:
                ok = False
                continue
            if parent not in params:
                if isinstance(parent, str) and parent in fixed:
                    errs.add(path, f"{parent} is fixed, not searched", parent,
                             f"Search {parent} under hyperparameters, or drop this condition")
                elif isinstance(parent, str) and parent in FIELD_NAMES:
                    errs.add(path, "conditions must name a searched parameter", parent,
                             f"Search {parent} under hyperparameters, or drop this condition")
                else:
                    errs.add(path, "conditions must name a searched parameter", parent,
                             _did_you_mean(parent, sorted(params)))
                ok = False
                continue
            parent_param = params[parent]
            if parent_param.type != "categorical":
                errs.add(path, "a condition's parameter must be categorical", f"{parent} ({parent_param.type})",
                         f"Make {parent} categorical, or drop this condition")
                ok = False
                continue
            keys = {_key(c): c for c in parent_param.choices or ()}
            chosen = []
            vals = values if isinstance(values, list) else [values]
            for i, v in enumerate(vals):
                vv, _ = _field_problem(parent, v)
                if _key(vv) not in keys:
                    vpath = path + ((i,) if isinstance(values, list) else ())
                    close = _closest(v, [c for c in keys.values() if isinstance(c, str)])
                    errs.add(vpath, f"impossible condition: {parent} never takes this value", v,
                             (f"Did you mean {close!r}? " if close else "")
                             + f"{parent} choices: {', '.join(_fmt(c) for c in keys.values())}")
                    ok = False
                    continue
                if keys[_key(vv)] in chosen:
                    errs.add(path, "lists a value twice", values, "List each value once")
                    ok = False
                    continue
                chosen.append(keys[_key(vv)])
            when[parent] = tuple(chosen)
        resolved[name] = Param(**{**param.__dict__, "when": _FrozenDict(when)})
    return resolved if ok else None


def _order(errs: _Errors, params: dict[str, Param]) -> list[Param] | None:
    """Parents before children (file order otherwise); None after reporting a cycle."""
    order: list[Param] = []
    done: set[str] = set()
    visiting: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append(visiting[visiting.index(name):] + [name])
            return
        visiting.append(name)
        for parent in params[name].when:
            visit(parent)
        visiting.pop()
        if name not in done:
            done.add(name)
            order.append(params[name])

    for name in params:
        visit(name)
    reported: set[frozenset] = set()
    for cyc in cycles:
        if frozenset(cyc) in reported:
            continue
        reported.add(frozenset(cyc))
        errs.add(("hyperparameters", cyc[0], "when"), "conditions form a cycle", " -> ".join(cyc),
                 "Remove one of these conditions")
    return None if cycles else order


def _check_reachable(errs: _Errors, order: list[Param]) -> None:
    """Report conditional parameters whose conditions can never hold together."""
    by_name = {p.name: p for p in order}
    for p in order:
        if not p.when:
            continue
        ancestors: list[str] = []
        stack = list(p.when)
        while stack:
            a = stack.pop()
            if a not in ancestors:
                ancestors.append(a)
                stack.extend(by_name[a].when)
        chain = [q for q in order if q.name in ancestors]
        if math.prod(len(q.choices or ()) for q in chain) > _MAX_CONDITION_COMBOS:
            continue
        reachable = False
        for combo in itertools.product(*(q.choices or () for q in chain)):
            values: dict[str, Any] = {}
            for q, v in zip(chain, combo):
                if q.enabled(values):
                    values[q.name] = v
            if p.enabled(values):
                reachable = True
                break
        if not reachable:
            errs.add(("hyperparameters", p.name, "when"), "can never hold: its parents' own conditions "
                     "exclude these values", _jsonable(p.when), "Fix the conditions along the chain")


# --------------------------------------------------------------------------- entry points


def parse_search_space(text: str, *, source: str = "<string>") -> SearchSpace:
    """Parse and validate a search space.

    Args:
        text: the YAML document.
        source: the file name used in error messages and the default study name.

    Raises:
        SearchSpaceError: with every problem found, one line each.
    """
    data, _, errs = _read_yaml(text, source)
    if errs:
        raise errs.error()
    if data is None:
        errs.add((), "the search space is empty", fix="Write study:, hyperparameters: and fixed:")
        raise errs.error()
    if not isinstance(data, dict):
        errs.add((), "must be a mapping with study, hyperparameters and fixed", data,
                 "See search_spaces/hyperparameters.yaml")
        raise errs.error()
    for key in data:
        if key not in _TOP_KEYS:
            _unknown_key(errs, (key,), key, _TOP_KEYS, "the top level")

    study = _parse_study(data.get("study"), errs, source)

    raw_params = data.get("hyperparameters", _MISSING)
    params: dict[str, Param] = {}
    whens: dict[str, dict] = {}
    failed: set[str] = set()
    if raw_params is _MISSING or raw_params is None or raw_params == {}:
        errs.add(("hyperparameters",), "must list at least one parameter", None if raw_params is _MISSING
                 else raw_params, "Add hyperparameters: {lr: {type: float, low: 1.0e-4, high: 0.1, log: true}}")
    elif not isinstance(raw_params, dict):
        errs.add(("hyperparameters",), "must be a mapping of name: {type: ...}", raw_params,
                 "Write one parameter per line under hyperparameters:")
    else:
        for name, raw in raw_params.items():
            param, when = _parse_param(errs, name, raw)
            if param is None:
                failed.add(name)
            else:
                params[name] = param
                whens[name] = when

    fixed = _parse_fixed(errs, data.get("fixed"))
    for name in sorted(set(params) & set(fixed or {})):
        errs.add(("fixed", name), "is both searched and fixed", name,
                 "Remove it from hyperparameters or from fixed")

    ordered: list[Param] | None = None
    resolved = _check_conditions(errs, params, whens, fixed or {}, failed)
    if resolved is not None:
        ordered = _order(errs, resolved)
        if ordered is not None:
            _check_reachable(errs, ordered)

    if study is not None and ordered is not None and not failed:
        _check_study_against_params(errs, study, ordered)
    if ordered is not None and not failed and fixed is not None:
        _check_pretrained_weights(errs, {p.name: p for p in ordered}, fixed)

    if errs:
        raise errs.error()
    space = SearchSpace(source=source, text=text, study=study, params=tuple(ordered),
                        fixed=_FrozenDict(fixed))
    try:  # the fields are valid one by one; this checks the baseline as a whole
        space.config_for(space.default_params() or {p.name: p.baseline() for p in ordered
                                                    if p.enabled({})})
    except (ConfigError, UnknownNameError) as exc:
        errs.add(("fixed",), f"the baseline configuration is invalid ({exc})", fix="Fix the values")
        raise errs.error() from None
    digest = hashlib.sha256(json.dumps(space.canonical(), sort_keys=True,
                                       separators=(",", ":")).encode()).hexdigest()
    return SearchSpace(source=source, text=text, study=study, params=space.params,
                       fixed=space.fixed, fingerprint=digest)


def _check_pretrained_weights(errs: _Errors, params: Mapping[str, Param],
                              fixed: Mapping[str, Any]) -> None:
    """Pretrained weights that a trial may ask for must be on this machine before any training."""
    if "pretrained" in params:
        may_pretrain = True in params["pretrained"].choices
    else:
        may_pretrain = fixed.get("pretrained", TrainConfig.pretrained) is True
    weights = fixed.get("weights")
    if not may_pretrain and weights is None:  # a weights file loads even without pretrained
        return
    if "backbone" in params:
        candidates = [(name, ("hyperparameters", "backbone", "choices", i))
                      for i, name in enumerate(params["backbone"].choices)]
    else:
        candidates = [(fixed.get("backbone", TrainConfig.backbone), ("fixed", "backbone"))]
    for name, path in candidates:
        try:
            find_pretrained_weights(name, weights)
        except WeightsNotFoundError as exc:
            errs.add_text(("fixed", "weights") if weights is not None else path, str(exc))
            if weights is not None:
                return


def _check_study_against_params(errs: _Errors, study: StudySpec, params: list[Param]) -> None:
    multi = len(study.directions) > 1
    if multi and study.pruner is not None:
        errs.add(("study", "pruner"), "Optuna cannot prune a multi-objective study", study.pruner.type,
                 "Set pruner: null, or optimise one metric")
    if multi and study.sampler.type in SINGLE_OBJECTIVE_SAMPLERS:
        errs.add(("study", "sampler", "type"), f"{study.sampler.type} supports one objective only",
                 study.sampler.type, "Use TPE, NSGAII, GP or Random for several metrics")
    if study.sampler.type in FINITE_SPACE_SAMPLERS:
        finite = True
        for p in params:
            if p.type == "float" and p.step is None:
                errs.add(("hyperparameters", p.name), f"{study.sampler.type} needs a finite space: a float "
                         "without step has infinitely many values", p.name,
                         f"Add step to {p.name}, make it categorical, or use another sampler")
                finite = False
        if finite:
            size = math.prod(p.grid_size() for p in params)
            if size > _MAX_GRID:
                errs.add(("study", "sampler", "type"), f"the grid has {size} points, over {_MAX_GRID}",
                         study.sampler.type, "Coarsen steps or use TPE")


def _resolve_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    candidates = []
    if len(p.parts) == 1:  # a bare name: also look in search_spaces/ (DESIGN section 8)
        candidates = [Path.cwd() / _SEARCH_DIR / p.name,
                      Path(__file__).resolve().parent.parent / _SEARCH_DIR / p.name]
        for c in candidates:
            if c.is_file():
                return c
    looked = ", ".join(str(c) for c in [p, *candidates])
    raise ConfigError(f"{path}: search space file not found, got {str(path)!r} (looked in {looked}). "
                      "Give the path of a YAML file, e.g. search_spaces/hyperparameters.yaml")


def load_search_space(path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space file; a bare name not in the current folder is looked up
    in search_spaces/.

    Raises:
        ConfigError: the file is missing or unreadable.
        SearchSpaceError: the content breaks the grammar (every problem listed).
    """
    p = _resolve_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text, got byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}. Save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the file, got {exc.strerror}. Check the path and "
                          "permissions") from None
    return parse_search_space(text, source=str(path) if Path(path).is_file() else str(p))


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the search-space grammar, shipped as hpo/schema.json."""
    return json.loads(importlib.resources.files("hpo").joinpath("schema.json").read_text("utf-8"))
