"""Out of a finished study: best configurations as train-ready YAML, and read back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial

from ..attrs import ATTR_OVERRIDES, ATTR_SPACE_YAML, TRIAL_EPOCHS
from ..config import TrainConfig
from ..errors import ConfigError, VcrHpoError
from ..study import top_trials

__all__ = [
    "best_per",
    "best_trial",
    "chosen_trial",
    "config_paths",
    "read_config",
    "trial_config",
    "write_config",
]

def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best COMPLETE trial on the first objective (`hpo.study.top_trials`).

    Raises:
        VcrHpoError: no trial has completed yet.
    """
    best = top_trials(study, 1)
    if not best:
        raise VcrHpoError(f"study {study.study_name!r}: no COMPLETE trial yet, got "
                          f"{len(study.trials)} trial(s). Run or resume the study first")
    return best[0]


def chosen_trial(study: optuna.Study, *, store: Any = None) -> tuple[FrozenTrial, str | None]:
    """The trial to train, by the space's `study.choose`, and why (None under `best`).

    best (default): `best_trial`. cheapest_within_1se: `hpo.paired.one_se_choice` over the
    COMPLETE trials, each compared on its validation record (from `store`, default: the one the
    run recorded) and its cost per training image (trial user attr `step_cost`).

    Raises:
        VcrHpoError: no trial has completed yet, or no stored search space.
    """
    from ..attrs import STEP_COST
    from ..paired import one_se_choice, value_record
    from ..trial.record_store import StoreRecords, store_of

    best = best_trial(study)
    if _stored_space(study).study.choose == "best":
        return best, None
    if store is None:
        try:
            store = store_of(study.user_attrs)
        except Exception:  # noqa: BLE001 - a bad location: no records, said in the line
            store = None
    if store is None:
        return best, (f"trial {best.number}, the best: the study records no artifact store, so "
                      "no validation records to compare others on")
    records = StoreRecords(store)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}

    def read(t: FrozenTrial) -> Any:
        try:  # a resumed trial's record may be its origin's (as in the default comparison)
            return value_record(records.read, t, by_number.get)
        except Exception:  # noqa: BLE001 - an unreadable record: that trial is no candidate
            return None

    def cost(t: FrozenTrial) -> float | None:
        c = t.user_attrs.get(STEP_COST)
        return None if c is None else float(c)

    chosen, why = one_se_choice(top_trials(study), read, cost)
    return (chosen or best), why


def _stored_space(study: optuna.Study) -> Any:
    from ..space import parse_search_space

    text = study.user_attrs.get(ATTR_SPACE_YAML)
    if not isinstance(text, str):
        raise VcrHpoError(f"study {study.study_name!r}: no stored search space, got none. "
                          "Only studies made by `vcr-hpo run` can be exported")
    return parse_search_space(text, source=f"study {study.study_name}")


def _value_of(study: optuna.Study, trial: FrozenTrial, name: str) -> Any:
    if name in trial.params:
        return trial.params[name]
    return trial_config(study, trial).to_dict().get(name)


def best_per(study: optuna.Study, name: str) -> dict[Any, FrozenTrial]:
    """The best COMPLETE trial for each value of a parameter or fixed field (e.g. backbone).

    Raises:
        ConfigError: `name` is not a TrainConfig field.
        VcrHpoError: no trial has completed yet.
    """
    from ..config import FIELD_NAMES

    if name not in FIELD_NAMES:
        raise ConfigError(f"--per: not a trainer field, got {name!r}. Use a parameter name such as backbone")
    best_trial(study)  # raises when nothing completed
    groups: dict[Any, FrozenTrial] = {}
    for t in top_trials(study):
        groups.setdefault(_value_of(study, t, name), t)
    return groups


def trial_config(study: optuna.Study, trial: FrozenTrial) -> TrainConfig:
    """The TrainConfig the trial trained: the study's stored space (fixed + params) + overrides,
    with the epochs it trained when its study set them per trial (`trial_length: compute`)."""
    attrs = study.user_attrs
    space = _stored_space(study)
    cfg = space.config_for(trial.params, attrs.get(ATTR_OVERRIDES) or {})
    epochs = trial.user_attrs.get(TRIAL_EPOCHS)  # trial_length: compute (hpo.trial.equal_compute)
    return cfg if epochs is None else cfg.replace(epochs=int(epochs))


def config_paths(out: Path, keys: list[Any]) -> dict[Any, Path]:
    """One file per key beside `out`: best.yaml -> best-resnet18.yaml, best-resnet50.yaml."""
    out = Path(out)
    return {k: out.with_name(f"{out.stem}-{k}{out.suffix or '.yaml'}") for k in keys}


def write_config(cfg: TrainConfig, path: Path, *, header: str = "") -> Path:
    """Write a TrainConfig as flat YAML (field: value) that `read_config` and `vcr-hpo train` accept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(lines + yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    return path


def read_config(path: Path, *, warn: Callable[[str], None] | None = None) -> TrainConfig:
    """Read a TrainConfig YAML file: flat (as `write_config` or `save_run` writes it) or the
    seed's `config.yaml` layout (trainer fields under `train:`, beside other sections).

    In the seed layout, keys under `train:` that are not trainer fields and the other top-level
    sections are ignored, and named in one warning.

    Args:
        warn: receives that warning (default: one `warning: ...` line on stderr).

    Raises:
        ConfigError: missing file, not a mapping, unknown fields or bad values; in the seed
            layout, a `train:` that is not a mapping or a trainer field beside it.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config, got {exc.strerror}. "
                          "Give a file written by `vcr-hpo best`") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML, got {getattr(exc, 'problem', exc)}. "
                          "Fix the syntax") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: must be a mapping of TrainConfig fields, got {data!r}. "
                          "Write one field: value per line")
    if SEED_SECTION in data:
        data = _seed_layout_fields(data, str(path), warn or _warn_on_stderr)
    return TrainConfig.from_dict(data, where=str(path))


#: The seed's config.yaml keeps trainer settings under this section (seeds/backbones.md).
SEED_SECTION = "train"


def _warn_on_stderr(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


def _seed_layout_fields(
    data: Mapping[str, Any], where: str, warn: Callable[[str], None]
) -> dict[str, Any]:
    """The trainer fields of a seed-layout config; what is not one is named in one warning."""
    from ..config import FIELD_NAMES

    section = data[SEED_SECTION]
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: {SEED_SECTION}: must be a mapping of trainer fields, got "
                          f"{section!r}. Write {SEED_SECTION}: {{backbone: resnet50}}")
    ignored = [f"{SEED_SECTION}.{k}" for k in section if k not in FIELD_NAMES]
    for key, value in data.items():
        if key == SEED_SECTION:
            continue
        if key in FIELD_NAMES and not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key}: a trainer field beside {SEED_SECTION}:, got "
                              f"{value!r}. Move it under {SEED_SECTION}: (or drop "
                              f"{SEED_SECTION}: and write every field at the top)")
        ignored.append(str(key))  # another section of the seed's config (data:, model:, ...)
    if ignored:
        warn(f"{where}: read the trainer fields under {SEED_SECTION}:; ignored, not trainer "
             f"fields: {', '.join(ignored)}")
    return {k: v for k, v in section.items() if k in FIELD_NAMES}
