"""`vcr-hpo report` for a colour task: Optuna's plots plus the best trial's confusion matrix,
best score per backbone, accuracy against size and latency with the Pareto front, and a
parallel-coordinates plot that keeps trials lacking a conditional parameter; one index.html.

Private modules: `_data` (the numbers behind each plot), `_draw` (matplotlib PNG, plotly HTML),
`_optuna_vis` (Optuna's own plots: history, importances, intermediate values).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import optuna

from ..attrs import CONFUSION
from ..errors import ConfigError, VcrHpoError
from ..trial.record_store import study_default_comparison
from . import _draw
from ._data import (
    NA_LABEL,
    NA_POSITION,
    Parallel,
    PerBackbone,
    Tradeoff,
    completed,
    parallel_data,
    pareto_front,
    per_backbone,
    tradeoffs,
)

__all__ = [
    "NA_LABEL",
    "NA_POSITION",
    "Parallel",
    "PerBackbone",
    "Plot",
    "Report",
    "Tradeoff",
    "html_available",
    "parallel_data",
    "pareto_front",
    "per_backbone",
    "tradeoffs",
    "write_full_report",
]

Format = Literal["png", "html"]


@dataclass(frozen=True)
class Plot:
    """One plot of the report: its title (with the trial count), files, and that count."""

    name: str
    title: str
    trials: int
    files: tuple[Path, ...]


@dataclass
class Report:
    """The files of a report; `vs_default` is the best trial against the default (trial 0),
    paired on the validation images (`hpo.paired`), as the index shows it."""

    index: Path
    plots: list[Plot] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    vs_default: str = ""

    @property
    def files(self) -> list[Path]:
        return [f for p in self.plots for f in p.files]


def html_available() -> bool:
    """Whether plotly (the HTML plots) is installed."""
    import importlib.util

    return importlib.util.find_spec("plotly") is not None


def _clear(out: Path, stem: str) -> None:
    """Drop this plot's files of an earlier report (their names hold other counts)."""
    pattern = re.compile(rf"{re.escape(stem)}-(\d+trials|trial\d+)\.(png|html)")
    for old in out.glob(f"{stem}-*"):
        if pattern.fullmatch(old.name):
            old.unlink()


def _draw_both(formats, out: Path, stem: str, png, html_fn) -> tuple[Path, ...]:
    files = []
    if "png" in formats:
        files.append(png(out / f"{stem}.png"))
    if "html" in formats:
        files.append(html_fn(out / f"{stem}.html"))
    return tuple(files)


def _colour_plots(study: optuna.Study, out: Path, formats: tuple[str, ...], report: Report):
    from ..outputs.configs import best_trial
    from ..trial.figures import confusion_summary, draw_confusion

    done = completed(study)
    objective = (study.metric_names or ["value"])[0]
    n = len(done)
    for stem in ("confusion", "backbones", "num_params", "latency_ms", "parallel"):
        _clear(out, stem)
    if not done:
        report.skipped["colour plots"] = "no COMPLETE trial yet"
        return

    best = best_trial(study)
    conf = best.user_attrs.get(CONFUSION)
    if isinstance(conf, dict) and conf.get("matrix"):
        summary = confusion_summary(conf["matrix"], conf["class_names"], epoch=conf.get("epoch"))
        title = f"best trial #{best.number}: confusion matrix (best of {n} COMPLETE trials)"
        recalls = {c: v["recall"] for c, v in summary["per_class"].items()
                   if v["recall"] is not None}
        if recalls:  # the long tail's weakest class, which accuracy hides
            low = min(recalls, key=lambda c: (recalls[c], c))
            title += f", recall per class on the rows; lowest {low} {recalls[low]:.0%}"
        files = _draw_both(formats, out, f"confusion-trial{best.number}",
                           lambda p: draw_confusion(summary, p, title=title),
                           lambda p: _draw.confusion_html(summary, p, title))
        report.plots.append(Plot("confusion", title, n, files))
    else:
        report.skipped["confusion"] = (f"best trial #{best.number} has no user attr confusion "
                                       "(trained before vcr-hpo kept it)")

    pb = per_backbone(study)
    title = f"best {objective} per backbone ({n} COMPLETE trials)"
    files = _draw_both(formats, out, f"backbones-{n}trials",
                       lambda p: _draw.backbone_png(pb, p, title),
                       lambda p: _draw.backbone_html(pb, p, title))
    report.plots.append(Plot("backbones", title, n, files))

    found = {t.cost: t for t in tradeoffs(study)}
    for cost in ("num_params", "latency_ms"):
        if cost not in found:
            report.skipped[cost] = (f"no COMPLETE trial has {cost}" if cost == "num_params" else
                                    "latency_ms not measured (add it to the study's metrics)")
            continue
        t = found[cost]
        k = len(t.trials)
        title = (f"{objective} vs {cost}, Pareto front marked ({k} COMPLETE trials, "
                 f"{len(t.front)} on the front)")
        files = _draw_both(formats, out, f"{cost}-{k}trials",
                           lambda p, t=t, title=title: _draw.tradeoff_png(t, objective, p, title),
                           lambda p, t=t, title=title: _draw.tradeoff_html(t, objective, p, title))
        report.plots.append(Plot(cost, title, k, files))

    par = parallel_data(study, done)
    na = sum(1 for k in range(len(par.trials)) if any(a.positions[k] == NA_POSITION
                                                       for a in par.axes))
    title = (f"parallel coordinates ({n} COMPLETE trials; {na} lack a conditional parameter, "
             f"shown at {NA_LABEL})")
    files = _draw_both(formats, out, f"parallel-{n}trials",
                       lambda p: _draw.parallel_png(par, p, title),
                       lambda p: _draw.parallel_html(par, p, title))
    report.plots.append(Plot("parallel", title, n, files))


_COUNT = re.compile(r"-(\d+)trials\.")


def _optuna_plots(study, out: Path, formats, report: Report) -> None:
    from ._optuna_vis import write_optuna_plots

    by_stem: dict[str, list[Path]] = {}
    for fmt in formats:
        written, skipped = write_optuna_plots(study, out, fmt=fmt)
        report.skipped.update(skipped)
        for p in written:
            by_stem.setdefault(p.name.split("-")[0], []).append(p)
    titles = {"history": "optimisation history ({n} COMPLETE trials)",
              "importances": "parameter importances ({n} COMPLETE trials)",
              "intermediate": "intermediate values ({n} trials reporting)"}
    for stem, files in by_stem.items():
        m = _COUNT.search(files[0].name)
        n = int(m.group(1)) if m else 0
        report.plots.append(Plot(stem, titles.get(stem, stem + " ({n} trials)").format(n=n), n,
                                 tuple(files)))


def _write_index(study: optuna.Study, out: Path, report: Report) -> None:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    states = ", ".join(f"{v} {k.lower()}" for k, v in counts.items())
    name = html.escape(study.study_name)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{name} report</title>", f"<h1>Study {html.escape(study.study_name)}</h1>",
             f"<p>{len(study.trials)} trials: {html.escape(states)}</p>",
             f"<p class='vs-default'>{html.escape(report.vs_default)}</p>"]
    for p in report.plots:
        parts.append(f"<h2>{html.escape(p.title)}</h2>")
        links = " · ".join(f"<a href='{html.escape(f.name)}'>{f.suffix[1:].upper()}</a>"
                           for f in p.files)
        parts.append(f"<p>{p.trials} trials behind this plot · {links}</p>")
        for f in p.files:
            if f.suffix == ".png":
                parts.append(f"<img src='{html.escape(f.name)}' style='max-width:100%'>")
    if report.skipped:
        parts.append("<h2>Not drawn</h2><ul>")
        parts += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in report.skipped.items()]
        parts.append("</ul>")
    report.index.write_text("\n".join(parts) + "\n", encoding="utf-8")
    summary = {"study": study.study_name, "trials": counts, "vs_default": report.vs_default,
               "plots": [{"name": p.name, "title": p.title, "trials": p.trials,
                          "files": [f.name for f in p.files]} for p in report.plots],
               "skipped": report.skipped}
    (out / "index.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


def write_full_report(
    study: optuna.Study, out_dir: Path, *, formats: tuple[Format, ...] = ("png", "html")
) -> Report:
    """Every plot of the report in each of `formats`, plus `index.html` (and `index.json`)
    linking them, each with the number of trials behind it.

    Raises:
        ConfigError: an unknown format, or html without plotly installed.
        VcrHpoError: the study has no trials.
    """
    bad = [f for f in formats if f not in ("png", "html")]
    if bad or not formats:
        raise ConfigError(f"--format: must be png, html or both, got {', '.join(bad) or 'none'}."
                          " Pick one of those")
    if "html" in formats and not html_available():
        raise ConfigError("--format: html needs plotly, got none installed. "
                          "pip install plotly, or use --format png")
    if not study.trials:
        raise VcrHpoError(f"study {study.study_name!r}: no trials, got 0. Run the study first")
    import warnings

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(index=out / "index.html", vs_default=study_default_comparison(study))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _optuna_plots(study, out, formats, report)
        _colour_plots(study, out, tuple(formats), report)
    _write_index(study, out, report)
    return report
