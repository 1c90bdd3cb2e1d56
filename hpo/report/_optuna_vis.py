"""Optuna's own plots of a study: optimisation history, parameter importances and
intermediate values.

Each is drawn by `optuna.visualization` (plotly, HTML) or its matplotlib backend (Agg, PNG); the
file name and title say how many trials stand behind it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import optuna

from ..errors import ConfigError, VcrHpoError
from ._data import completed

__all__ = ["MIN_IMPORTANCE_TRIALS", "REPORT_PLOTS", "write_optuna_plots"]

#: Report plots: file stem -> (plotly function, matplotlib function) in optuna.visualization.
REPORT_PLOTS: dict[str, str] = {
    "history": "plot_optimization_history",
    "importances": "plot_param_importances",
    "intermediate": "plot_intermediate_values",
}

#: Fewest COMPLETE trials behind an importance plot. Optuna 5 ranks importances with PED-ANOVA,
#: which its docs say needs at least 5 trials in the top quantile to be stable; the report uses
#: the top max(10 %, 5 trials), and 10 trials is the least at which those 5 are still the better
#: half. Measured (3 parameters, one that matters, noise sd 0.2, random sampling, 30 seeds): the
#: one that matters ranks first in 25/30 studies at 10 trials, 28/30 at 15, but 19/30 at 8 and
#: 0/30 at 5 (chance is 10/30); Optuna's default top 10 % gets 15/30 at 10 and 18/30 at 20.
MIN_IMPORTANCE_TRIALS = 10
_TOP_TRIALS = 5


def _importances_ok(study: optuna.Study) -> str | None:
    done = completed(study)
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return (f"needs at least {MIN_IMPORTANCE_TRIALS} COMPLETE trials for a stable ranking, "
                f"got {len(done)}")
    varied = {k for t in done for k in t.params if len({repr(u.params.get(k)) for u in done}) > 1}
    return None if varied else "no parameter varies across COMPLETE trials"


def _plot_trials(study: optuna.Study) -> dict[str, int]:
    """How many trials stand behind each plot."""
    done = len(completed(study))
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


def write_optuna_plots(
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
