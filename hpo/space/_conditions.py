"""Conditions between parameters (`when`): resolved against the parents' choices, ordered, reachable.

Condition rule: `when` may name only *searched categorical* parameters (equality on a
continuous value almost never holds) and only values among their choices; chains are allowed,
cycles and conditions that can never hold together are errors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from backbones import closest_match

from .._values import FrozenDict, jsonable
from ..config import FIELD_NAMES
from ._params import _field_problem
from ._types import Param, _fmt, _key
from ._yaml import _did_you_mean, _Errors

_MAX_CONDITION_COMBOS = 4096


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
                    close = closest_match(v, [c for c in keys.values() if isinstance(c, str)])
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
        resolved[name] = Param(**{**param.__dict__, "when": FrozenDict(when)})
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
                     "exclude these values", jsonable(p.when), "Fix the conditions along the chain")


