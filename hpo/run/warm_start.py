"""Warm start: the top-k configurations of an earlier study (or a best.yaml), fitted to this space.

`--warm-start SOURCE[:k]` (`run_study(warm_start=...)`), k default 5:

- `NAME[:k]`: the study NAME where `vcr-hpo run --study-name NAME` would keep it: the run's own
  `--storage` when one is given, else `sqlite:///studies/NAME.db`;
- `URL#NAME[:k]`: the study NAME in the storage URL (`sqlite:///screen.db#screen:3`,
  `postgresql://u@host/db#screen`);
- `FILE.yaml`: one configuration written by `vcr-hpo best` (read with
  `hpo.outputs.configs.read_config`).

Configurations are ranked by `hpo.study.top_trials` (best first) and fitted to the current space
(`fit_params`): a value outside a range, choice or step drops the configuration; a parameter
this space does not search, or whose `when:` is off here, is left out of it (the sampler draws
whatever the configuration lacks). Everything is read in `plan_run`, before the target storage is
touched; `enqueue_warm_start` enqueues once per study (a resume does not enqueue again).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..attrs import WARM_START
from ..errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from ..space import Param, SearchSpace

__all__ = [
    "ATTR_WARM_START",
    "DEFAULT_K",
    "WarmStart",
    "enqueue_warm_start",
    "fit_params",
    "load_warm_start",
    "parse_warm_start",
]

DEFAULT_K = 5
#: Study user attr: the source and the trial numbers it enqueued (set once; guards resumes).
ATTR_WARM_START = "vcr_hpo:warm_start"
_WHERE = "--warm-start"
_FORMS = "Give NAME[:k], URL#NAME[:k] (e.g. sqlite:///screen.db#screen:5) or a best.yaml"


@dataclass(frozen=True)
class WarmSource:
    """A parsed `--warm-start` value: a study (url None: the run's storage) or a config file."""

    text: str
    k: int
    study: str | None = None
    url: str | None = None
    file: Path | None = None


@dataclass(frozen=True)
class WarmStart:
    """What a warm start enqueues: fitted params (best first) and one note per left-out item.

    `attr` is the study user attr that records it once (the portfolio, `hpo.run.portfolio`, has its
    own, so a study may have both); `tag` the trial user attr naming each enqueued trial's origin.
    """

    source: str
    configs: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...]
    attr: str = ATTR_WARM_START
    tag: str = WARM_START


def _k(text: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{_WHERE}: k must be a whole number >= 1, got {raw!r} in {text!r}. "
                          f"Write e.g. {text.rsplit(':', 1)[0]}:5 (default {DEFAULT_K})")
    return int(raw)


def parse_warm_start(text: str) -> WarmSource:
    """Parse `SOURCE[:k]` (see the module docstring); reads nothing.

    Raises:
        ConfigError: an empty source, a bad k, or k given with a config file.
    """
    from ..names import is_study_name

    text = str(text).strip()
    if not text:
        raise ConfigError(f"{_WHERE}: needs a source, got ''. {_FORMS}")
    file = re.fullmatch(r"(.+\.ya?ml)(?::(.*))?", text)
    if file and "#" not in text:
        if file.group(2) is not None:
            raise ConfigError(f"{_WHERE}: a config file holds one configuration, got k="
                              f"{file.group(2)!r} in {text!r}. Drop ':{file.group(2)}', or give "
                              "the study it came from: NAME:k")
        return WarmSource(text, 1, file=Path(file.group(1)))
    url = None
    name = text
    if "://" in text and "#" not in text:
        raise ConfigError(f"{_WHERE}: a storage URL needs '#STUDY' after it, got {text!r}. "
                          "Write e.g. sqlite:///studies/screen.db#screen:5")
    if "#" in text:
        url, name = text.rsplit("#", 1)
        from ..study import check_storage_url

        check_storage_url(url, where=_WHERE)
    k = DEFAULT_K
    if ":" in name:
        name, raw = name.rsplit(":", 1)
        k = _k(text, raw)
    if not is_study_name(name):
        raise ConfigError(f"{_WHERE}: not a study name, got {name!r} in {text!r}. {_FORMS}")
    return WarmSource(text, k, study=name, url=url)


def _contains(p: Param, value: Any) -> str | None:
    """Why `value` does not fit parameter `p` (None when it fits)."""
    from ..space._types import _key

    if p.type == "categorical":
        if _key(value) in {_key(c) for c in p.choices or ()}:
            return None
        return f"{p.name}={value!r} is not a choice {list(p.choices or ())}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{p.name}={value!r} is not a number"
    if p.type == "int" and not float(value).is_integer():
        return f"{p.name}={value!r} is not a whole number"
    low, high = p._bounds()
    if not low <= value <= high:
        return f"{p.name}={value:g} is outside [{low:g}, {high:g}]"
    if p.step:
        k = (value - low) / p.step
        if abs(k - round(k)) > 1e-8 * max(1.0, abs(k)):
            return f"{p.name}={value:g} is off the step {p.step:g} from {low:g}"
    return None


def fit_params(space: SearchSpace, params: Mapping[str, Any]) -> tuple[dict[str, Any] | None,
                                                                       list[str], list[str]]:
    """Fit one configuration to `space`.

    Returns:
        (fitted params or None when a value does not fit, why it does not fit, the names left
        out: not searched here or switched off by a `when:`).
    """
    fitted: dict[str, Any] = {}
    bad: dict[str, str] = {}
    for p in space.params:
        if not p.enabled(fitted) or p.name not in params:
            continue
        value = params[p.name]
        if p.type == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        why = _contains(p, value)
        if why:
            bad[p.name] = why
        else:
            fitted[p.name] = value
    left_out = sorted(n for n in params if n not in fitted and n not in bad)
    return (None if bad else fitted), list(bad.values()), left_out


def _source_trials(src: WarmSource, storage: str | None, run_url: str,
                   run_study: str) -> list[dict[str, Any]]:
    """Params of the source study's top-k COMPLETE trials, best first."""
    import optuna

    from ..study import build_storage, default_storage_url, get_study_id, sqlite_path, top_trials

    name = src.study
    assert name is not None  # parse_warm_start sets study or file; a file goes to _file_params
    url = src.url or storage or default_storage_url(name)
    if url == run_url and name == run_study:
        raise ConfigError(f"{_WHERE}: must name another study than the one this run resumes, got "
                          f"{src.text!r}. Warm-start from the study you screened with")
    import sqlalchemy.exc

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigError(f"{_WHERE}: no study file {path}, got {src.text!r}. Run that study "
                          "first, or give URL#NAME (e.g. sqlite:///studies/screen.db#screen)")
    try:
        db = build_storage(url, heartbeat_interval=None, grace_period=None)
        study_id = get_study_id(db, name)
    except ConfigError as exc:
        raise ConfigError(f"{_WHERE}: cannot read the source study {name!r}, got {src.text!r} "
                          f"({str(exc).split(', got ')[0].removeprefix('--storage: ')}). Check "
                          "the URL or file") from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as exc:  # not Optuna's
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{_WHERE}: cannot read the source study {name!r}, got {src.text!r} "
                          f"({reason}). Give a study file written by `vcr-hpo run`") from None
    if study_id is None:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(db))
        raise ConfigError(f"{_WHERE}: no study {name!r} in {url}, got {src.text!r}. Studies "
                          f"there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=name, storage=db)
    top = top_trials(study, src.k)
    if not top:
        raise ConfigError(f"{_WHERE}: study {name!r} has no COMPLETE trial, got {src.text!r}. "
                          "Let it finish a trial first")
    return [dict(t.params) for t in top]


def _file_params(src: WarmSource, space: SearchSpace) -> list[dict[str, Any]]:
    from ..outputs.configs import read_config

    file = src.file
    assert file is not None  # load_warm_start sends only a file source here
    if not file.is_file():
        raise ConfigError(f"{_WHERE}: no such config file, got {str(file)!r}. Write one with "
                          "`vcr-hpo best -o best.yaml`")
    notes: list[str] = []
    cfg = read_config(file, warn=notes.append)
    values = cfg.to_dict()
    return [{p.name: values[p.name] for p in space.params if p.name in values}]


def load_warm_start(text: str, space: SearchSpace, *, storage: str | None, run_url: str,
                    run_study: str) -> WarmStart:
    """Read the source of `--warm-start TEXT` and fit its top-k configurations to `space`.

    Args:
        storage: the run's `--storage` (None: default files), where a bare NAME is looked up.
        run_url, run_study: the target study (a source equal to it is refused).

    Raises:
        ConfigError: a bad value, a missing or unreadable source, a study with no COMPLETE
            trial, or no configuration that fits the space (each reason named).
    """
    src = parse_warm_start(text)
    raw = (_file_params(src, space) if src.file
           else _source_trials(src, storage, run_url, run_study))
    configs: list[dict[str, Any]] = []
    notes: list[str] = []
    refused: list[str] = []
    for rank, params in enumerate(raw, 1):
        fitted, bad, left_out = fit_params(space, params)
        if fitted is None:
            refused.append(f"#{rank}: {'; '.join(bad)}")
            notes.append(f"warning: warm start: config #{rank} dropped ({'; '.join(bad)})")
            continue
        if left_out:
            notes.append(f"warning: warm start: config #{rank} without {', '.join(left_out)} (not searched "
                         "here or switched off by when:)")
        if fitted in configs:
            notes.append(f"warning: warm start: config #{rank} equals an earlier one once fitted: skipped")
            continue
        configs.append(fitted)
    if not configs:
        raise ConfigError(f"{_WHERE}: no configuration of {src.text!r} fits {space.source}, got "
                          f"{len(raw)} that do not ({' | '.join(refused)}). Widen the ranges or "
                          "choices, or warm-start from another study")
    return WarmStart(source=src.text, configs=tuple(configs), notes=tuple(notes))


def enqueue_warm_start(study: optuna.Study, warm: WarmStart) -> list[int]:
    """Enqueue the fitted configurations once per study (under the claim lock, `warm.attr`).

    Returns the numbers of the trials enqueued now ([] when an earlier run already did).
    """
    from ..study import _optuna as O
    from ..study import claim_lock

    if study.user_attrs.get(warm.attr):
        return []
    with claim_lock(study):
        if O.storage_of(study).get_study_user_attrs(O.study_id(study)).get(warm.attr):
            return []
        before = len(study.get_trials(deepcopy=False))
        for rank, params in enumerate(warm.configs, 1):
            # skip_if_exists: a config the study already holds (the `default:` baseline is
            # often the screen's best) would spend a trial on a known result
            study.enqueue_trial(dict(params), user_attrs={warm.tag: f"{warm.source} #{rank}"},
                                skip_if_exists=True)
        numbers = list(range(before, len(study.get_trials(deepcopy=False))))
        study.set_user_attr(warm.attr, {"source": warm.source, "trials": numbers})
    return numbers


def describe(warm: WarmStart) -> Sequence[str]:
    """Lines for the console: what was enqueued, then each note."""
    return [f"warm start: {len(warm.configs)} configuration(s) from {warm.source} enqueued",
            *warm.notes]
