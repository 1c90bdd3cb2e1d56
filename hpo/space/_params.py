"""The `hyperparameters:` and `fixed:` blocks: one Param per searched field, fixed field values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from backbones import did_you_mean

from ..config import FIELD_NAMES, FIELD_REGISTRIES, check_field, field_type
from ..errors import ConfigError, UnknownNameError
from ._types import Param, _fmt, _key
from ._yaml import (
    _MISSING,
    _did_you_mean,
    _Errors,
    _is_scalar,
    _looks_numeric,
    _number,
    _unknown_key,
)

PARAM_TYPES = ("categorical", "float", "int")
_PARAM_KEYS = {
    "categorical": ("type", "choices", "default", "when"),
    "float": ("type", "low", "high", "log", "step", "default", "when"),
    "int": ("type", "low", "high", "log", "step", "default", "when"),
}


def _field_problem(name: str, value: Any) -> tuple[Any, str | None]:
    """check_field without its prefix: (normalised value, None) or (value, 'rule, got x. fix')."""
    if name in FIELD_REGISTRIES and isinstance(value, str) and value not in FIELD_REGISTRIES[name]:
        reg = FIELD_REGISTRIES[name]
        return value, (f"must be a registered {reg.kind}, got {value!r}. "
                       f"{did_you_mean(value, reg.names())}Options: {', '.join(reg.names())}")
    marker = "\x00"
    try:
        return check_field(name, value, where=marker), None
    except (ConfigError, UnknownNameError) as exc:
        text = str(exc)
        prefix = f"{marker}: {name}: "
        return value, text[len(prefix):] if text.startswith(prefix) else text.replace(marker, "")



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

