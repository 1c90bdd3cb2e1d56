"""Out of a finished study: best configurations as train-ready YAML, and report plots."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from ..attrs import ATTR_OVERRIDES, ATTR_SPACE_YAML
from ..config import TrainConfig
from ..errors import ConfigError, VcrHpoError
from ..study import top_trials

__all__ = [
    "MIN_IMPORTANCE_TRIALS",
    "REPORT_PLOTS",
    "best_per",
    "best_trial",
    "config_paths",
    "read_config",
    "trial_config",
    "write_config",
    "write_report",
]

#: Report plots: file stem -> (plotly function, matplotlib function) in optuna.visualization.
REPORT_PLOTS: dict[str, str] = {
    "history": "plot_optimization_history",
    "importances": "plot_param_importances",
    "intermediate": "plot_intermediate_values",
}


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values)]


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
    """The TrainConfig the trial trained: the study's stored space (fixed + params) + overrides."""
    from ..space import parse_search_space

    attrs = study.user_attrs
    text = attrs.get(ATTR_SPACE_YAML)
    if not isinstance(text, str):
        raise VcrHpoError(f"study {study.study_name!r}: no stored search space, got none. "
                          "Only studies made by `vcr-hpo run` can be exported")
    space = parse_search_space(text, source=f"study {study.study_name}")
    return space.config_for(trial.params, attrs.get(ATTR_OVERRIDES) or {})


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


#: Fewest COMPLETE trials behind an importance plot. Optuna 5 ranks importances with PED-ANOVA,
#: which its docs say needs at least 5 trials in the top quantile to be stable; the report uses
#: the top max(10 %, 5 trials), and 10 trials is the least at which those 5 are still the better
#: half. Measured (3 parameters, one that matters, noise sd 0.2, random sampling, 30 seeds): the
#: one that matters ranks first in 25/30 studies at 10 trials, 28/30 at 15, but 19/30 at 8 and
#: 0/30 at 5 (chance is 10/30); Optuna's default top 10 % gets 15/30 at 10 and 18/30 at 20.
MIN_IMPORTANCE_TRIALS = 10
_TOP_TRIALS = 5


def _importances_ok(study: optuna.Study) -> str | None:
    done = _completed(study)
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return (f"needs at least {MIN_IMPORTANCE_TRIALS} COMPLETE trials for a stable ranking, "
                f"got {len(done)}")
    varied = {k for t in done for k in t.params if len({repr(u.params.get(k)) for u in done}) > 1}
    return None if varied else "no parameter varies across COMPLETE trials"


def _plot_trials(study: optuna.Study) -> dict[str, int]:
    """How many trials stand behind each plot."""
    done = len(_completed(study))
    reported = sum(1 for t in study.get_trials(deepcopy=False) if t.intermediate_values)
    return {"history": done, "importances": done, "intermediate": reported}


def _importance_evaluator(study: optuna.Study, n: int) -> dict[str, Any]:
    """PED-ANOVA over the best max(10 %, 5) trials, told which way is better."""
    from optuna.importance import PedAnovaImportanceEvaluator

    kwargs: dict[str, Any] = {"evaluator": PedAnovaImportanceEvaluator(
        target_quantile=min(0.5, max(0.1, _TOP_TRIALS / n)))}
    if len(study.directions) > 1:  # rank by the first metric; PED-ANOVA takes lower as better
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        kwargs["target"] = lambda t: sign * t.values[0]
    return kwargs


def _remove_stale(out_dir: Path, stem: str, fmt: str) -> None:
    """Drop this plot's file from an earlier report (its name holds another trial count)."""
    import re

    pattern = re.compile(rf"{re.escape(stem)}-\d+trials\.{fmt}")
    for old in out_dir.glob(f"{stem}-*trials.{fmt}"):
        if pattern.fullmatch(old.name):
            old.unlink()


def write_report(
    study: optuna.Study, out_dir: Path, *, fmt: Literal["png", "html"] = "png"
) -> tuple[list[Path], dict[str, str]]:
    """Optimisation history, parameter importances and intermediate values as PNG or HTML.

    PNG uses Optuna's matplotlib backend (Agg), HTML its plotly backend. Each plot's title and
    file name (`history-12trials.png`) say how many trials stand behind it; importances are
    drawn from `MIN_IMPORTANCE_TRIALS` COMPLETE trials on.

    Returns:
        (files written, {plot: why it was skipped}).
    """
    if fmt not in ("png", "html"):
        raise ConfigError(f"--format: must be png or html, got {fmt!r}. Pick one of those")
    if not study.trials:
        raise VcrHpoError(f"study {study.study_name!r}: no trials, got 0. Run the study first")
    import warnings

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    if (why := _importances_ok(study)) is not None:
        skipped["importances"] = why
    if not any(t.intermediate_values for t in study.trials):
        skipped["intermediate"] = "no trial reported intermediate values"
    counts = _plot_trials(study)
    written = []
    target = None
    if len(study.directions) > 1:  # plots need one number per trial: the first metric
        target = lambda t: t.values[0]
    names = study.metric_names or ["value"]
    for stem, fn_name in REPORT_PLOTS.items():
        _remove_stale(out_dir, stem, fmt)
        if stem in skipped:
            continue
        n = counts[stem]
        kwargs: dict[str, Any] = {}
        if stem == "history":
            kwargs = {"target": target, "target_name": names[0]} if target else {"target_name": names[0]}
        elif stem == "importances":
            kwargs = {"target_name": names[0], **_importance_evaluator(study, n)}
        kind = "trials reporting" if stem == "intermediate" else "COMPLETE trials"
        note = f" ({n} {kind})"
        path = out_dir / f"{stem}-{n}trials.{fmt}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the matplotlib backend is "experimental"
            if fmt == "png":
                import matplotlib

                matplotlib.use("Agg", force=True)
                import matplotlib.pyplot as plt
                from optuna.visualization import matplotlib as mpl_vis

                ax = getattr(mpl_vis, fn_name)(study, **kwargs)
                first = ax if hasattr(ax, "figure") else ax.flat[0]
                first.set_title(first.get_title() + note)
                fig = first.figure
                fig.set_size_inches(9, 5.5)
                fig.tight_layout()
                fig.savefig(path, dpi=100)
                plt.close(fig)
            else:
                from optuna import visualization as vis

                fig = getattr(vis, fn_name)(study, **kwargs)
                fig.update_layout(title_text=(fig.layout.title.text or stem) + note)
                fig.write_html(path, include_plotlyjs=True)
        written.append(path)
    return written, skipped
