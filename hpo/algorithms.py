"""Sampler and pruner specs; names -> Optuna classes; argument checks against their signatures."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna import pruners, samplers

from backbones import Registry, did_you_mean

from ._values import FrozenDict, jsonable, show
from .pruners import PairedPruner

if TYPE_CHECKING:  # for annotations only: the space package imports this module, never the reverse
    from .space import SearchSpace

__all__ = [
    "ALIASES",
    "FINITE_SPACE_SAMPLERS",
    "NESTED_PRUNER_ARGS",
    "PRUNERS",
    "SAMPLERS",
    "SINGLE_OBJECTIVE_SAMPLERS",
    "AlgorithmSpec",
    "ArgProblem",
    "build_pruner",
    "build_sampler",
    "canonical_algorithm_name",
    "check_algorithm_args",
]

SAMPLERS: Registry = Registry("sampler")
PRUNERS: Registry = Registry("pruner")

for _name, _cls in {
    "TPE": samplers.TPESampler,
    "Random": samplers.RandomSampler,
    "Grid": samplers.GridSampler,
    "CmaEs": samplers.CmaEsSampler,
    "GP": samplers.GPSampler,
    "QMC": samplers.QMCSampler,
    "NSGAII": samplers.NSGAIISampler,
    "NSGAIII": samplers.NSGAIIISampler,
    "BruteForce": samplers.BruteForceSampler,
}.items():
    SAMPLERS.register(_name, _cls)

for _name, _cls in {
    "MedianPruner": pruners.MedianPruner,
    "Hyperband": pruners.HyperbandPruner,
    "SuccessiveHalving": pruners.SuccessiveHalvingPruner,
    "Percentile": pruners.PercentilePruner,
    "Patient": pruners.PatientPruner,
    "Threshold": pruners.ThresholdPruner,
    "Wilcoxon": pruners.WilcoxonPruner,
    "Paired": PairedPruner,  # hpo.pruners: prunes only what a paired test says is worse
}.items():
    PRUNERS.register(_name, _cls)

#: Optuna's class names (and a few obvious spellings) accepted for the short names above.
ALIASES: dict[str, str] = {
    **{cls.__name__: name for name, cls in ((n, SAMPLERS.get(n)) for n in SAMPLERS.names())},
    **{cls.__name__: name for name, cls in ((n, PRUNERS.get(n)) for n in PRUNERS.names())},
    "Median": "MedianPruner",
}
ALIASES = {k: v for k, v in ALIASES.items() if k != v}

#: Samplers that enumerate values: every parameter must be categorical, int, or float with a step.
FINITE_SPACE_SAMPLERS = frozenset({"Grid", "BruteForce"})
#: Samplers that refuse a study with several objectives.
SINGLE_OBJECTIVE_SAMPLERS = frozenset({"CmaEs"})
# Arguments the toolkit supplies itself, with the reason a user may not set them.
_SUPPLIED = {
    ("sampler", "Grid", "search_space"): "the grid comes from hyperparameters",
}
#: Pruner arguments that take a nested pruner spec instead of a scalar: (pruner, argument).
NESTED_PRUNER_ARGS = frozenset({("Patient", "wrapped_pruner"), ("Paired", "base")})
_NESTED_PRUNER = {("pruner", c, n) for c, n in NESTED_PRUNER_ARGS}
_SCALAR_KINDS = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}
_MISSING = object()


@dataclass(frozen=True)
class AlgorithmSpec:
    """A sampler or pruner: registry name and constructor arguments (a seed is args["seed"])."""

    type: str
    args: Mapping[str, Any] = field(default_factory=FrozenDict)

    def canonical(self) -> dict[str, Any]:
        return {"type": self.type, "args": {k: jsonable(v) for k, v in sorted(self.args.items())}}

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v.describe() if isinstance(v, AlgorithmSpec) else show(v)}"
                          for k, v in self.args.items())
        return f"{self.type}({inner})"


@dataclass(frozen=True)
class ArgProblem:
    """One problem with a sampler/pruner spec: `arg` is the key at fault (None: the whole spec)."""

    arg: str | None
    rule: str
    got: Any = _MISSING
    fix: str = ""


def canonical_algorithm_name(kind: str, name: str) -> str:
    """The registry name for `name` (which may be an Optuna class name such as 'TPESampler')."""
    reg = _registry(kind)
    return name if name in reg else ALIASES.get(name, name)


def _registry(kind: str) -> Registry:
    if kind == "sampler":
        return SAMPLERS
    if kind == "pruner":
        return PRUNERS
    raise ValueError(f"kind must be 'sampler' or 'pruner', got {kind!r}")


def _annotation_kinds(annotation: Any) -> set[str] | None:
    """Scalar kinds an argument accepts ('int', 'float', ...); None if YAML cannot express it."""
    if annotation is inspect.Parameter.empty:
        return set(_SCALAR_KINDS)
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = {p.strip().strip("'\"") for p in text.split("|")}
    if parts <= set(_SCALAR_KINDS):
        return parts
    return None


def _value_fits(value: Any, kinds: set[str]) -> bool:
    if value is None:
        return "None" in kinds
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return "int" in kinds or "float" in kinds
    if isinstance(value, float):
        return "float" in kinds and math.isfinite(value)
    if isinstance(value, str):
        return "str" in kinds
    return False


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls).parameters
    return {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def check_algorithm_args(kind: str, name: str, args: Mapping[str, Any]) -> list[ArgProblem]:
    """Check a sampler or pruner spec against its constructor, without raising.

    Args:
        kind: "sampler" or "pruner".
        name: registry name (aliases accepted).
        args: constructor arguments as written in YAML; a nested pruner spec (Patient's
            `wrapped_pruner`, Paired's `base`) is an `AlgorithmSpec` or None.

    Returns:
        Every problem found: unknown names, arguments the constructor lacks, values of the
        wrong type, missing required arguments, and values the constructor itself rejects.
    """
    reg = _registry(kind)
    name = canonical_algorithm_name(kind, name)
    if name not in reg:
        return [ArgProblem("type", f"unknown {kind}", name, _options(reg))]
    cls = reg.get(name)
    sig = _signature(cls)
    problems: list[ArgProblem] = []
    settable = sorted(n for n, p in sig.items() if (kind, name, n) not in _SUPPLIED
                      and ((kind, name, n) in _NESTED_PRUNER or _annotation_kinds(p.annotation) is not None))
    for arg, value in args.items():
        if (kind, name, arg) in _SUPPLIED:
            problems.append(ArgProblem(arg, f"{name} sets {arg} itself ({_SUPPLIED[(kind, name, arg)]})",
                                       value, f"Remove {arg}"))
        elif arg not in sig:
            problems.append(ArgProblem(arg, f"not an argument of {cls.__name__}", arg,
                                       did_you_mean(arg, settable) + f"Arguments: {', '.join(settable) or 'none'}"))
        elif (kind, name, arg) in _NESTED_PRUNER:
            if value is not None and not isinstance(value, AlgorithmSpec):
                problems.append(ArgProblem(arg, "must be a pruner spec such as {type: MedianPruner}", value,
                                           "Write a mapping with a type"))
        else:
            kinds = _annotation_kinds(sig[arg].annotation)
            if kinds is None:
                problems.append(ArgProblem(arg, f"{cls.__name__}.{arg} takes a Python object, which YAML "
                                                "cannot express", value, f"Remove {arg}"))
            elif not _value_fits(value, kinds):
                problems.append(ArgProblem(arg, f"must be {' or '.join(sorted(_kind_word(k) for k in kinds))}",
                                           value, "Fix the value"))
    # The toolkit fills these in: Grid's grid, and a nested pruner that defaults to none.
    supplied = {n for (k, c, n) in [*_SUPPLIED, *_NESTED_PRUNER] if k == kind and c == name}
    for arg, p in sig.items():
        if p.default is inspect.Parameter.empty and arg not in args and arg not in supplied:
            problems.append(ArgProblem(arg, f"{cls.__name__} requires {arg}", fix=f"Add {arg}"))
    if not problems:
        try:
            _instantiate(kind, name, args, grid={"_": [0]})
        except (ValueError, TypeError, OverflowError) as exc:
            # "<arg> must <rule>, got <value>" (our pruners' form) names the argument at fault
            arg, _, rest = str(exc).partition(" ")
            if arg in args and rest.startswith("must") and ", got " in rest:
                problems.append(ArgProblem(arg, rest.partition(", got")[0], args[arg],
                                           "Fix the value"))
            else:
                problems.append(ArgProblem(None, f"{cls.__name__} rejects these arguments "
                                                 f"({exc})", dict(args), "Fix the values"))
    return problems


def _kind_word(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true/false", "str": "a string",
            "None": "null"}[kind]


def _options(reg: Registry) -> str:
    return f"Options: {', '.join(reg.names())}"


def _instantiate(kind: str, name: str, args: Mapping[str, Any], *, grid: Mapping[str, list] | None = None):
    cls = _registry(kind).get(name)
    kwargs = dict(args)
    if kind == "sampler" and name == "Grid":
        kwargs["search_space"] = dict(grid or {})
    for k, c, n in _NESTED_PRUNER:
        if (k, c) == (kind, name):
            kwargs.setdefault(n, None)
    for key, value in kwargs.items():
        if isinstance(value, AlgorithmSpec):
            kwargs[key] = build_pruner(value)
    with warnings.catch_warnings():
        # The user chose this algorithm by name; Optuna's "experimental" notice adds nothing.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(**kwargs)


def build_sampler(space: SearchSpace, *, seed: int | None = None) -> samplers.BaseSampler:
    """The sampler the space's study block names.

    Args:
        space: a parsed search space (Grid takes its finite grid from it).
        seed: overrides the spec's seed (the runner passes a per-worker / per-resume seed).
    """
    spec = space.study.sampler
    args = dict(spec.args)
    if seed is not None:
        args["seed"] = seed
    grid = None
    if spec.type == "Grid":
        grid = {p.name: list(p.grid_values()) for p in space.params}
    return _instantiate("sampler", spec.type, args, grid=grid)


def build_pruner(spec: Any) -> pruners.BasePruner:
    """The pruner an `AlgorithmSpec` names; None gives `NopPruner` (never prunes)."""
    if spec is None:
        return pruners.NopPruner()
    return _instantiate("pruner", spec.type, spec.args)
