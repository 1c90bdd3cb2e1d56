"""The `study:` block: name, metrics and directions, budget, sampler and pruner.

Direction rule: `val_acc` and `val_macro_f1` are maximised, `val_loss`, `params_m` and
`latency_ms` minimised. Omitted directions follow the metric; a direction that contradicts its
metric (maximize val_loss) is an error, since it always is a mistake.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._values import show
from ..algorithms import (
    FINITE_SPACE_SAMPLERS,
    SINGLE_OBJECTIVE_SAMPLERS,
)
from ..errors import ConfigError
from ..metrics import METRICS as _METRIC_TABLE
from ..names import STUDY_NAME_RULE, is_study_name
from ._algorithms import _parse_algorithm
from ._types import STALL_TIMEOUT, Param, StudySpec, _fmt
from ._yaml import _MISSING, _did_you_mean, _Errors, _is_scalar, _number, _unknown_key

#: Metric name -> the direction that improves it (from the one metrics table).
METRICS: dict[str, str] = {name: m.direction for name, m in _METRIC_TABLE.items()}
DIRECTIONS = ("maximize", "minimize")
_STUDY_KEYS = ("name", "direction", "directions", "metric", "metrics", "n_trials", "timeout",
               "sampler", "pruner", "keep_weights", "trial_isolation", "trial_stall_timeout",
               "report_every", "report_val_images", "fidelity", "report_seconds",
               "portfolio", "neighbours", "trial_length", "choose")
_KEEP_KEYS = ("top", "per_backbone")
#: `trial_isolation:` values (hpo.run.isolation.ISOLATION_MODES; here so parsing needs no torch).
_ISOLATION_MODES = ("none", "process")
_MAX_GRID = 1_000_000


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
    if not is_study_name(name):
        errs.add(path + ("name",), STUDY_NAME_RULE, name, "Write a name such as vcr-demo")
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

    keep = _parse_keep(errs, path + ("keep_weights",), raw.get("keep_weights"))
    if keep is None:
        ok = False
    every, val_images = _parse_report_every(errs, raw, path)
    if every not in (None, _MISSING) and ok:
        if len(metrics) > 1:
            errs.add(path + ("report_every",), "Optuna cannot prune a multi-objective study, so "
                     "it takes no reports", every, "Remove report_every, or optimise one metric")
            every = _MISSING
        elif metrics[0] not in ("val_acc", "val_macro_f1", "val_loss"):
            errs.add(path + ("report_every",), "needs a metric measured while training "
                     f"(val_acc, val_macro_f1, val_loss), not {metrics[0]}", every,
                     "Optimise val_acc, val_macro_f1 or val_loss, or remove report_every")
            every = _MISSING
    fidelity, grid = _parse_fidelity(errs, raw, path, metrics if ok else None, every)
    sampler = _parse_algorithm(errs, path + ("sampler",), raw.get("sampler", _MISSING), "sampler")
    pruner = _parse_algorithm(errs, path + ("pruner",), raw.get("pruner", None), "pruner",
                              epochs=every not in (None, _MISSING),
                              seconds=1 if fidelity == "compute" else grid, unit=fidelity)
    if sampler is _MISSING or pruner is _MISSING or every is _MISSING or fidelity is _MISSING:
        ok = False
    isolation = raw.get("trial_isolation", "none")
    if isolation is None:
        isolation = "none"
    if isolation not in _ISOLATION_MODES if _is_scalar(isolation) else True:
        errs.add(path + ("trial_isolation",), f"must be one of {', '.join(_ISOLATION_MODES)}",
                 isolation, _did_you_mean(isolation, _ISOLATION_MODES)
                 if isinstance(isolation, str) else "Write trial_isolation: process")
        ok = False
    stall = _parse_stall(errs, raw, path, isolation)
    if stall is _MISSING:
        ok = False
    portfolio = _parse_portfolio(errs, raw.get("portfolio"), path + ("portfolio",))
    if portfolio is _MISSING:
        ok = False
    neighbours = _parse_neighbours(errs, raw.get("neighbours"), path + ("neighbours",))
    if neighbours is _MISSING:
        ok = False
    length = _parse_trial_length(errs, raw.get("trial_length"), path + ("trial_length",))
    if length is _MISSING:
        ok = False
    choose = _parse_choose(errs, raw.get("choose"), path + ("choose",), length,
                           metrics if ok else None)
    if choose is _MISSING:
        ok = False
    if not ok or keep is None:
        return None
    return StudySpec(name=name, directions=tuple(directions), metrics=tuple(metrics),
                     n_trials=n_trials, timeout=timeout, sampler=sampler, pruner=pruner,
                     keep_weights=keep, trial_isolation=isolation, trial_stall_timeout=stall,
                     report_every=every, report_val_images=val_images, fidelity=fidelity,
                     report_seconds=grid, portfolio=portfolio, neighbours=neighbours,
                     trial_length=length,
                     choose=choose)


def _parse_choose(errs: _Errors, value: Any, where: tuple, length: Any,
                  metrics: list[str] | None) -> Any:
    """`choose`: best (default) or cheapest_within_1se (hpo.paired.one_se_choice), which needs
    the measured costs of trial_length: compute and the per-image records of val_acc."""
    from ..paired import CHOICE_RULES

    value = _one_of(errs, value, where, CHOICE_RULES, "choose: cheapest_within_1se")
    if value == "cheapest_within_1se":
        if length not in ("compute", _MISSING):
            errs.add(where, "compares the costs per image that trial_length: compute measures",
                     f"trial_length {length}",
                     "Set study.trial_length: compute, or choose: best")
            return _MISSING
        if metrics is not None and list(metrics) != ["val_acc"]:
            errs.add(where, "compares accuracy on the validation images: it needs metric val_acc "
                     "alone", ", ".join(metrics), "Set study.metric: val_acc, or choose: best")
            return _MISSING
    return value


def _parse_trial_length(errs: _Errors, value: Any, where: tuple) -> Any:
    """`trial_length`: epochs (default) or compute (hpo.trial.equal_compute)."""
    from ..trial.equal_compute import TRIAL_LENGTHS

    return _one_of(errs, value, where, TRIAL_LENGTHS, "trial_length: compute")


def _one_of(errs: _Errors, value: Any, where: tuple, options: tuple[str, ...],
            example: str) -> Any:
    """A key whose value names one of `options` (the first is the default, for null)."""
    if value is None:
        return options[0]
    if value not in options if _is_scalar(value) else True:
        errs.add(where, f"must be one of {', '.join(options)}", value,
                 _did_you_mean(value, options) if isinstance(value, str)
                 else f"Write {example} (or {options[0]}, the default)")
        return _MISSING
    return value


def _count(value: Any) -> Any:
    """A start-up count as given: null is 0, a whole float an int; anything else unchanged (the
    caller checks it is an int in its range)."""
    if value is None:
        return 0
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_count(value: Any, high: float = math.inf) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= high


def _parse_neighbours(errs: _Errors, value: Any, where: tuple) -> Any:
    """`neighbours: k`: the first k one-change neighbours of trial 0 (0 or null: off)."""
    value = _count(value)
    if not _is_count(value):
        errs.add(where, "must be a whole number >= 0 (one-change neighbours of trial 0)", value,
                 "Write e.g. neighbours: 5 (0 or null: off)")
        return _MISSING
    return value


def _parse_portfolio(errs: _Errors, value: Any, where: tuple) -> Any:
    """`portfolio: k`: the first k shipped portfolio entries after trial 0 (0 or null: off)."""
    if value is None:
        return 0
    value = _count(value)
    from ._portfolio_file import load_portfolio

    try:
        n = len(load_portfolio())
    except ConfigError as exc:
        errs.add(where, str(exc).split(": ", 1)[-1].split(", got ")[0], value,
                 "Reinstall vcr-hpo, or set portfolio: 0")
        return _MISSING
    if not _is_count(value, n):
        errs.add(where, f"must be a whole number in [0, {n}] (entries in the shipped portfolio)",
                 value, "Write e.g. portfolio: 4 (0 or null: off)")
        return _MISSING
    return value


def _parse_stall(errs: _Errors, raw: Mapping, path: tuple, isolation: Any) -> Any:
    """`trial_stall_timeout`: seconds (default STALL_TIMEOUT), None for no limit, _MISSING on error."""
    if "trial_stall_timeout" not in raw:
        return STALL_TIMEOUT
    where = path + ("trial_stall_timeout",)
    value = raw["trial_stall_timeout"]
    if isolation == "none":  # a trial in the worker itself cannot be killed alone
        errs.add(where, "applies to trial_isolation: process only", value,
                 "Add trial_isolation: process, or remove trial_stall_timeout")
        return _MISSING
    if value is None:
        return None
    t = _number(errs, where, value)
    if t is _MISSING:
        return _MISSING
    if t <= 0:
        errs.add(where, "must be positive (seconds) or null", value,
                 f"Write a number of seconds such as {STALL_TIMEOUT:g}, or null for no limit")
        return _MISSING
    return float(t)


def _parse_keep(errs: _Errors, path: tuple, raw: Any) -> tuple[int, int] | None:
    """`keep_weights: {top: K, per_backbone: K}` (each default 1, 0 keeps none) -> (top, per)."""
    if raw is None:
        return (1, 1)
    if not isinstance(raw, dict):
        errs.add(path, "must be a mapping", raw, "Write keep_weights: {top: 1, per_backbone: 1}")
        return None
    out = {"top": 1, "per_backbone": 1}
    ok = True
    for key, value in raw.items():
        if key not in _KEEP_KEYS:
            _unknown_key(errs, path + (key,), key, _KEEP_KEYS, "keep_weights")
            ok = False
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            errs.add(path + (key,), "must be a whole number >= 0", value,
                     "Write e.g. 1 (0 keeps no weights)")
            ok = False
        else:
            out[key] = value
    return (out["top"], out["per_backbone"]) if ok else None


def _parse_report_every(errs: _Errors, raw: Mapping, path: tuple) -> tuple[Any, int | None]:
    """(report_every, report_val_images): (None, None) when absent, _MISSING first on error."""
    from ..trial.subepoch import DEFAULT_VAL_IMAGES

    every = raw.get("report_every")
    images = raw.get("report_val_images")
    if every is None:
        if images is not None:
            errs.add(path + ("report_val_images",), "applies to reports within an epoch only",
                     images, "Set report_every: 0.25 too, or remove report_val_images")
            return _MISSING, None
        return None, None
    rule = "must be a fraction of an epoch in (0, 1] or null"
    fix = "Write e.g. 0.25 (four reports an epoch), or null for one report at each epoch end"
    if isinstance(every, bool) or not isinstance(every, (int, float)):
        errs.add(path + ("report_every",), rule, every, fix)
        return _MISSING, None
    if not (math.isfinite(every) and 0 < every <= 1):
        errs.add(path + ("report_every",), rule, every, fix)
        return _MISSING, None
    if images is None:
        images = DEFAULT_VAL_IMAGES
    elif isinstance(images, bool) or not isinstance(images, int) or images < 1:
        errs.add(path + ("report_val_images",), "must be a whole number of images >= 1", images,
                 f"Write e.g. {DEFAULT_VAL_IMAGES} (the first images of the validation split)")
        return _MISSING, None
    return float(every), int(images)


def _parse_fidelity(errs: _Errors, raw: Mapping, path: tuple, metrics: Any,
                    every: Any) -> tuple[Any, int | None]:
    """(fidelity, report_seconds): ("epochs", None) by default, report_seconds None but with
    fidelity: seconds; _MISSING first on error."""
    from ..trial.fidelity import DEFAULT_REPORT_SECONDS, FIDELITIES

    fidelity = raw.get("fidelity", "epochs")
    grid = raw.get("report_seconds")
    if fidelity is None:
        fidelity = "epochs"
    if fidelity not in FIDELITIES if _is_scalar(fidelity) else True:
        errs.add(path + ("fidelity",), f"must be one of {', '.join(FIDELITIES)}", fidelity,
                 _did_you_mean(fidelity, FIDELITIES) if isinstance(fidelity, str)
                 else "Write fidelity: seconds (or epochs, the default)")
        return _MISSING, None
    if fidelity != "seconds" and grid is not None:
        errs.add(path + ("report_seconds",), "applies to fidelity: seconds only", grid,
                 "Add fidelity: seconds, or remove report_seconds" if fidelity == "epochs" else
                 "Remove report_seconds: with fidelity: compute reports fall every default "
                 "epoch of compute")
        return _MISSING, None
    if fidelity == "epochs":
        return fidelity, None
    if fidelity == "seconds" and grid is None:
        grid = DEFAULT_REPORT_SECONDS
    elif isinstance(grid, float) and grid.is_integer():
        grid = int(grid)
    if fidelity == "seconds" and (isinstance(grid, bool) or not isinstance(grid, int)
                                  or grid < 1):
        errs.add(path + ("report_seconds",), "must be a whole number of seconds >= 1", grid,
                 f"Write e.g. {DEFAULT_REPORT_SECONDS} (seconds of training between reports)")
        return _MISSING, None
    if every not in (None, _MISSING):
        errs.add(path + ("report_every",), "counts fractions of an epoch, and with fidelity: "
                 f"{fidelity} reports fall on its own grid", every,
                 "Remove report_every, or use fidelity: epochs")
        return _MISSING, None
    if metrics is not None and len(metrics) > 1:
        errs.add(path + ("fidelity",), "Optuna cannot prune a multi-objective study, so it "
                 "takes no reports", fidelity, "Remove fidelity, or optimise one metric")
        return _MISSING, None
    if metrics is not None and metrics[0] not in ("val_acc", "val_macro_f1", "val_loss"):
        errs.add(path + ("fidelity",), "needs a metric measured while training "
                 f"(val_acc, val_macro_f1, val_loss), not {metrics[0]}", fidelity,
                 "Optimise val_acc, val_macro_f1 or val_loss, or remove fidelity")
        return _MISSING, None
    return fidelity, grid


def _default_study_name(source: str) -> str:
    stem = Path(source).stem if not source.startswith("<") else ""
    return stem if is_study_name(stem) else "vcr-hpo"


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
                     f"Write {many}: {show(value)}")
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


def _check_study_against_params(errs: _Errors, study: StudySpec, params: list[Param]) -> None:
    multi = len(study.directions) > 1
    if study.trial_length == "compute" and any(p.name == "epochs" for p in params):
        errs.add(("hyperparameters", "epochs"), "is set per trial by trial_length: compute (the "
                 "compute of the default's epochs)", "epochs",
                 "Move epochs to fixed, or set trial_length: epochs")
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


