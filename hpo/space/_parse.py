"""YAML text -> a validated SearchSpace with its fingerprint: the grammar's entry point.

Grammar (DESIGN section 4): a mapping with `study`, `hyperparameters` and `fixed`. Parsing
reads no file and imports no torch; facts about this machine (weights, devices, data) are
checked by the preflight step of the commands that train.
"""

from __future__ import annotations

import hashlib
import json

from .._values import FrozenDict
from ..errors import ConfigError, UnknownNameError
from ._conditions import _check_conditions, _check_reachable, _order
from ._params import _parse_fixed, _parse_param
from ._study import _check_study_against_params, _parse_study
from ._types import Param, SearchSpace
from ._yaml import _MISSING, _read_yaml, _unknown_key

_TOP_KEYS = ("study", "hyperparameters", "fixed")

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

    if errs:
        raise errs.error()
    space = SearchSpace(source=source, text=text, study=study, params=tuple(ordered),
                        fixed=FrozenDict(fixed))
    try:  # the fields are valid one by one; this checks the baseline as a whole
        space.config_for(space.baseline())
    except (ConfigError, UnknownNameError) as exc:
        errs.add(("fixed",), f"the baseline configuration is invalid ({exc})", fix="Fix the values")
        raise errs.error() from None
    digest = hashlib.sha256(json.dumps(space.canonical(), sort_keys=True,
                                       separators=(",", ":")).encode()).hexdigest()
    return SearchSpace(source=source, text=text, study=study, params=space.params,
                       fixed=space.fixed, fingerprint=digest)


