"""The start-up: configs tried right after trial 0, the shipped portfolio and the default's
neighbours.

`study.portfolio: k` enqueues the first k entries of `search_spaces/portfolio.yaml` (built by
`bench/build_portfolio.py`: configs chosen greedily to do well, after the default, across a
family of synthetic tasks) once per study, after trial 0 (the `default:` baseline) and any
`--warm-start` configs. Each entry is projected onto the user's space (`project_entry`):

- a number is clipped into the parameter's range and snapped to its step (ints rounded);
- a backbone not offered maps to the nearest choice of its family (`backbone_family`: the
  backbone registry's family, the name's stem for the catch-all `timm` family; nearest by the
  size in the name: resnet10t -> resnet18, mobilenetv3_large_100 -> mobilenetv3_small_100),
  else to the smallest choice of its kin (`_KIN`: ConvNeXt is a modernised ResNet, EfficientNet
  and MobileNetV3 share MBConv blocks), else the entry is dropped with a note;
- another categorical value (optimizer, loss_fn, ...) must be a choice, by exact name (numbers:
  the nearest choice), else the entry is dropped with a note;
- a name the space does not search (or whose `when:` is off) is left out: the space's fixed
  value holds, and what the entry lacks the sampler draws.

Entries equal to trial 0 on everything they set, or to an earlier entry, are dropped. The
enqueued trials count as the sampler's start-up trials (GP counts COMPLETE trials, TPE COMPLETE
and PRUNED), so with `n_startup_trials` <= k + 1 no random trial is drawn and the model takes
over right after the portfolio.

`study.neighbours: k` enqueues, after the portfolio, the first k one-change neighbours of trial
0 (`plan_neighbours`): the baseline with exactly one parameter moved, each parameter once before
any twice, in the order the space lists them. A categorical takes its other choices in their
order; a number moves by a quarter of its range on its own scale (x or / (high/low)^(1/4) for a
log range, +- (high - low)/4 otherwise), snapped to its step and kept in range, towards the
middle of the range first. A child switched on by the change (focal_gamma when loss_fn becomes
focal) takes its baseline; one switched off is dropped. These are the moves a practitioner tries
first from a known-good config, and at a few trials they keep the final model close to it: the
bench (docs/benchmarks.md, v14) found the one-change move that wins a short trial also wins the
final training, where free draws that win a short trial often do not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..attrs import NEIGHBOUR, PORTFOLIO
from ..space._portfolio_file import PORTFOLIO_FILE, load_portfolio, read_portfolio

if TYPE_CHECKING:
    from ..space import Param, SearchSpace
    from .warm_start import WarmStart

__all__ = [
    "ATTR_PORTFOLIO",
    "PORTFOLIO_FILE",
    "backbone_family",
    "describe",
    "describe_neighbours",
    "load_portfolio",
    "plan_neighbours",
    "plan_portfolio",
    "project_entry",
    "read_portfolio",
]

#: Study user attr: the trial numbers the portfolio enqueued (set once; guards resumes).
ATTR_PORTFOLIO = "vcr_hpo:portfolio"
#: Study user attr: the trial numbers the default's neighbours took (set once; guards resumes).
ATTR_NEIGHBOURS = "vcr_hpo:neighbours"
#: Architecture family -> kin: families whose blocks are alike, tried when no family member is
#: offered. ConvNeXt is a ResNet modernised (Liu et al. 2022); EfficientNet's and MobileNetV3's
#: blocks are both MBConv (inverted residuals with squeeze-excitation).
_KIN = {"resnet": "residual", "convnext": "residual",
        "efficientnet": "mbconv", "mobilenetv3": "mbconv", "mobilenetv2": "mbconv"}
_WORDS = {"tiny": 0, "small": 1, "medium": 2, "base": 2, "large": 3, "huge": 4}


def backbone_family(name: str) -> str:
    """The architecture family of a backbone: its registry family (`resnet`, `efficientnet`),
    or for the catch-all `timm` family the name's stem (convnext_tiny -> convnext,
    mobilenetv3_large_100 -> mobilenetv3, resnet10t -> resnet)."""
    from backbones import family_of

    family = family_of(name)
    if family in (None, "timm", "base"):
        stem = re.match(r"([a-z]+?(?:v\d+)?)(?:\d|_|-|$)", name.lower())
        family = stem.group(1) if stem else name
    return family


def _size(name: str) -> tuple[int, float]:
    """(size word rank, last number) of a backbone name: resnet18 -> (-1, 18),
    mobilenetv3_large_100 -> (3, 100), efficientnet_b3 -> (-1, 3)."""
    tokens = re.split(r"[_\-]", name.lower())
    word = next((_WORDS[t] for t in tokens if t in _WORDS), -1)
    numbers = re.findall(r"\d+", name.split("v3")[-1] if "v3" in name else name)
    return word, float(numbers[-1]) if numbers else 0.0


def _distance(a: str, b: str) -> tuple[float, float]:
    (wa, na), (wb, nb) = _size(a), _size(b)
    words = abs(wa - wb) if wa >= 0 and wb >= 0 else 0
    return words, abs(math.log((na + 1) / (nb + 1)))


def nearest_backbone(name: str, choices: Sequence[str]) -> tuple[str | None, str]:
    """The offered backbone closest to `name`, and how it was found ('' when offered)."""
    if name in choices:
        return name, ""
    family = backbone_family(name)
    same = [c for c in choices if backbone_family(c) == family]
    if same:
        return min(same, key=lambda c: (_distance(name, c), c)), f"nearest {family}"
    kin = _KIN.get(family)
    alike = [c for c in choices if kin is not None and _KIN.get(backbone_family(c)) == kin]
    if alike:
        return min(alike, key=lambda c: (_size(c), c)), f"smallest {kin} kin of {family}"
    return None, f"no {family} backbone{f' nor {kin} kin' if kin else ''} among {list(choices)}"


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _yaml(value: Any) -> str:
    """`_fmt`, with booleans and null spelt as in a space file."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return _fmt(value)


def _number(p: Param, value: Any) -> tuple[Any, str]:
    """Clip into the range, snap to the step (round for ints); the note says what moved."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"{p.name}={value!r} is not a number"
    v = float(value)
    low, high = p._bounds()
    clipped = min(max(v, low), high)
    step = p.step or (1 if p.type == "int" else None)
    if step:
        k = round((clipped - low) / step)
        snapped = low + k * step
        if snapped > high + 1e-12 * max(1.0, abs(high)):
            snapped = low + (k - 1) * step
        clipped = min(snapped, high)
    out: Any = round(clipped) if p.type == "int" else float(clipped)
    if p.type == "float" and p.step:
        out = float(round(out, 12))
    moved = "" if math.isclose(out, v, rel_tol=1e-9, abs_tol=1e-12) else \
        f"{p.name} {_fmt(value)} -> {_fmt(out)}"
    return out, moved


def _categorical(p: Param, value: Any) -> tuple[Any, str, str | None]:
    """(value, what moved, why it cannot be projected)."""
    from ..space._types import _key

    choices = list(p.choices or ())
    if _key(value) in {_key(c) for c in choices}:
        return value, "", None
    if p.name == "backbone" and isinstance(value, str) and all(isinstance(c, str) for c in choices):
        found, how = nearest_backbone(value, choices)
        if found is None:
            return None, "", f"backbone {value}: {how}"
        return found, f"backbone {value} -> {found} ({how})", None
    numeric = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and numeric:
        near = min(numeric, key=lambda c: (abs(c - value), c))
        return near, f"{p.name} {_fmt(value)} -> {_fmt(near)}", None
    return None, "", f"{p.name} {value} is not a choice {choices}"


def project_entry(space: SearchSpace, entry: Mapping[str, Any]) -> tuple[dict[str, Any] | None,
                                                                          list[str], str | None]:
    """Project one portfolio entry onto `space` (rules in the module docstring).

    Returns:
        (params or None when it cannot be projected, what moved, why it was dropped).
    """
    params: dict[str, Any] = {}
    moved: list[str] = []
    for p in space.params:
        if p.name not in entry or not p.enabled(params):
            continue
        if p.type == "categorical":
            value, note, why = _categorical(p, entry[p.name])
        else:
            value, note = _number(p, entry[p.name])
            why = note if value is None else None
            note = "" if value is None else note
        if why:
            return None, moved, why
        params[p.name] = value
        if note:
            moved.append(note)
    if not params:
        return None, moved, "sets nothing this space searches"
    return params, moved, None


def plan_portfolio(space: SearchSpace, k: int | None = None,
                   entries: Sequence[Mapping[str, Any]] | None = None) -> WarmStart:
    """The first `k` entries (default `space.study.portfolio`) projected onto `space`, as what
    `hpo.run.warm_start.enqueue_warm_start` enqueues once per study.

    Raises:
        ConfigError: the shipped portfolio is missing or invalid.
    """
    from .warm_start import WarmStart

    k = space.study.portfolio if k is None else k
    entries = load_portfolio() if entries is None else entries
    trial0 = space.default_params()
    searched = {p.name for p in space.params}
    configs: list[dict[str, Any]] = []
    kept: list[int] = []
    notes: list[str] = []
    for rank, entry in enumerate(entries[:k], 1):
        params, moved, why = project_entry(space, entry)
        if params is None:
            notes.append(f"#{rank} dropped ({why})")
        elif trial0 is not None and all(n in trial0 and trial0[n] == v for n, v in params.items()):
            notes.append(f"#{rank} dropped (equals trial 0)")
        elif params in configs:
            notes.append(f"#{rank} dropped (equals #{kept[configs.index(params)]})")
        else:
            configs.append(params)
            kept.append(rank)
            notes.append(f"#{rank}" + (f" ({'; '.join(moved)})" if moved else ""))
    unsearched = sorted({n for e in entries[:k] for n in e} - searched)
    if unsearched:
        notes.append(f"left out (not searched here): {', '.join(unsearched)}")
    return WarmStart(source="portfolio", configs=tuple(configs), notes=tuple(notes),
                     attr=ATTR_PORTFOLIO, tag=PORTFOLIO)


def describe(plan: WarmStart, k: int) -> str:
    """One line: what was enqueued (and what moved), what was dropped and why, what was left out."""
    kept = [n for n in plan.notes if n.startswith("#") and "dropped" not in n]
    rest = [n for n in plan.notes if n not in kept]
    line = (f"portfolio: {len(plan.configs)} of {k} entries enqueued after trial 0"
            + (f": {', '.join(kept)}" if kept else ""))
    return "; ".join([line, *rest])


def _moves(p: Param, base: Any) -> list[Any]:
    """The values one move of `p` away from `base` (rules in the module docstring)."""
    from ..space._types import _key

    if p.type == "categorical":
        return [c for c in p.choices or () if _key(c) != _key(base)]
    low, high = p._bounds()
    if p.log:
        factor = (high / low) ** 0.25
        up, down = base * factor, base / factor
        middle = math.sqrt(low * high)
    else:
        delta = (high - low) / 4
        up, down = base + delta, base - delta
        middle = (low + high) / 2
    step = p.step or (1 if p.type == "int" else None)

    def off_middle(v: float) -> float:  # on the parameter's own scale; a tie: up first
        return round(abs(math.log(v / middle)) if p.log else abs(v - middle) / (high - low), 9)

    out: list[Any] = []
    for target in sorted((up, down), key=off_middle):  # towards the middle first
        value, _ = _number(p, target)
        if step and value == base:  # a move smaller than a step: one step that way
            value, _ = _number(p, base + math.copysign(step, target - base))
        if value is not None and value != base and value not in out:
            out.append(value)
    return out


def _with(space: SearchSpace, base: Mapping[str, Any], name: str, value: Any) -> dict[str, Any]:
    """`base` with `name` set to `value`; children it switches on take their baseline, those it
    switches off are dropped (walked in the space's order, parents first)."""
    params: dict[str, Any] = {}
    for p in space.params:
        if not p.enabled(params):
            continue
        params[p.name] = value if p.name == name else base.get(p.name, p.baseline())
    return params


def plan_neighbours(space: SearchSpace, k: int | None = None) -> WarmStart:
    """The first `k` (default `space.study.neighbours`) one-change neighbours of the baseline
    (trial 0), as what `hpo.run.warm_start.enqueue_warm_start` enqueues once per study."""
    from .warm_start import WarmStart

    k = space.study.neighbours if k is None else k
    base = space.baseline()
    per_param = [[(p.name, v) for v in _moves(p, base[p.name])]
                 for p in space.params if p.name in base]
    configs: list[dict[str, Any]] = []
    notes: list[str] = []
    for rank in range(max((len(m) for m in per_param), default=0)):
        for moves in per_param:
            if rank >= len(moves) or len(configs) >= k:
                continue
            name, value = moves[rank]
            params = _with(space, base, name, value)
            if params != base and params not in configs:
                configs.append(params)
                notes.append(f"{name} {_yaml(value)}")
    return WarmStart(source="neighbours", configs=tuple(configs), notes=tuple(notes),
                     attr=ATTR_NEIGHBOURS, tag=NEIGHBOUR)


def describe_neighbours(plan: WarmStart, k: int) -> str:
    """One line: which one-change neighbours of trial 0 were enqueued."""
    return (f"neighbours: {len(plan.configs)} of {k} one-change neighbours of trial 0, queued "
            "once per study after it" + (f": {', '.join(plan.notes)}" if plan.notes else
                                          " (the space has no other values)"))
