"""The `study.sampler` and `study.pruner` blocks of a search space: a registry name and its
arguments, checked against the algorithm's signature; a pruner's step arguments in the unit its
reports count (epochs, fractions of an epoch with `report_every`, or whole grid points with
`fidelity: seconds` / `compute`)."""

from __future__ import annotations

from typing import Any

from .._values import FrozenDict
from ..algorithms import _MISSING as _ARG_MISSING
from ..algorithms import (
    NESTED_PRUNER_ARGS,
    PRUNERS,
    SAMPLERS,
    AlgorithmSpec,
    canonical_algorithm_name,
    check_algorithm_args,
)
from ._yaml import _MISSING, _did_you_mean, _Errors, _is_scalar


def _parse_algorithm(errs: _Errors, path: tuple, raw: Any, kind: str, *,
                     epochs: bool = False, seconds: int | None = None,
                     unit: str = "seconds") -> Any:
    """A sampler/pruner spec: AlgorithmSpec, None (no pruner), or _MISSING on error.

    `epochs`: the pruner's step arguments count epochs and may be fractions (report_every).
    `seconds`: they count whole grid points, `seconds` apart (fidelity: seconds; 1 with
    fidelity: compute, `unit` "compute": whole default epochs).
    """
    reg = SAMPLERS if kind == "sampler" else PRUNERS
    if raw is _MISSING:
        return AlgorithmSpec("TPE", FrozenDict())
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
        elif kind == "pruner" and (name, key) in NESTED_PRUNER_ARGS:
            nested = _parse_algorithm(errs, path + (key,), value, "pruner", epochs=epochs,
                                      seconds=seconds, unit=unit)
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
    checked = args
    if epochs and kind == "pruner":
        from ..trial.subepoch import proxy_args

        checked, bad = proxy_args(name, args)
        for key in bad:
            errs.add(path + (key,), "counts epochs (fractions allowed with report_every)",
                     args[key], "Write a number of epochs such as 0.25 or 1")
        if bad:
            return _MISSING
    if seconds and kind == "pruner" and name == "Paired":
        # Records are keyed by epoch; a grid reports carried-forward values that
        # have no record of their own, so the paired test would have nothing to pair.
        errs.add(path + ("type",), "pairs per-image records at epoch steps, not with "
                 f"fidelity: {unit}", name, "Use fidelity: epochs, or a pruner without Paired")
        return _MISSING
    if seconds and kind == "pruner":
        from ..trial.subepoch import STEP_ARGS, grid_arg_problems

        unit_problems = grid_arg_problems(name, args, seconds, unit)
        for key, rule, fix in unit_problems:
            errs.add(path + (key,), rule, args[key], fix)
        if unit_problems:
            return _MISSING
        args = {k: int(v) if k in STEP_ARGS.get(name, ()) and isinstance(v, float) else v
                for k, v in args.items()}  # 30.0 seconds (or default epochs) is step 30
        checked = args
    problems = check_algorithm_args(kind, name, checked)
    for prob in problems:
        errs.add(path + ((prob.arg,) if prob.arg else ()), prob.rule,
                 _MISSING if prob.got is _ARG_MISSING else prob.got, prob.fix)
    if problems:
        return _MISSING
    return AlgorithmSpec(name, FrozenDict(args))
