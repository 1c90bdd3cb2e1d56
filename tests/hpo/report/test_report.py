"""`vcr-hpo report` for a colour task: the numbers behind each plot, the files and index.html."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.attrs import ATTR_SPACE_YAML
from hpo.cli import main
from hpo.report import (
    NA_LABEL,
    NA_POSITION,
    parallel_data,
    pareto_front,
    per_backbone,
    tradeoffs,
    write_full_report,
)
from hpo.report._optuna_vis import MIN_IMPORTANCE_TRIALS, write_optuna_plots

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SPACE = """\
study: {name: colours, metric: val_acc, direction: maximize}
hyperparameters:
  backbone: {type: categorical, choices: [resnet18, resnet50]}
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  loss_fn: {type: categorical, choices: [cross_entropy, focal]}
  focal_gamma: {type: float, low: 0.5, high: 4.0, when: {loss_fn: focal}}
fixed: {epochs: 2, image_size: 32}
"""
DISTS = {"backbone": CategoricalDistribution(["resnet18", "resnet50"]),
         "lr": FloatDistribution(1e-4, 1e-1, log=True),
         "loss_fn": CategoricalDistribution(["cross_entropy", "focal"]),
         "focal_gamma": FloatDistribution(0.5, 4.0)}
PARAMS = {"resnet18": 11_200_000, "resnet50": 23_500_000}
CLASSES = ["white", "silver", "grey"]
# (backbone, lr, loss_fn, focal_gamma or None, val_acc)
ROWS = [("resnet18", 1e-3, "cross_entropy", None, 0.61),
        ("resnet50", 3e-3, "focal", 2.0, 0.70),
        ("resnet18", 1e-2, "focal", 1.0, 0.66),
        ("resnet50", 1e-4, "cross_entropy", None, 0.52),
        ("resnet18", 3e-2, "cross_entropy", None, 0.58)]


def _study(tmp_path, rows=ROWS, pruned=1):
    study = optuna.create_study(study_name="colours", direction="maximize",
                                storage=f"sqlite:///{tmp_path / 'c.db'}")
    study.set_metric_names(["val_acc"])
    study.set_user_attr(ATTR_SPACE_YAML, SPACE)
    for i, (bb, lr, loss, gamma, acc) in enumerate(rows):
        params = {"backbone": bb, "lr": lr, "loss_fn": loss}
        if gamma is not None:
            params["focal_gamma"] = gamma
        right = round(acc * 30)
        matrix = [[right // 3 + (1 if k < right % 3 else 0) if j == k else 0 for j in range(3)]
                  for k in range(3)]
        matrix[0][1] += 30 - right  # the misses: white taken for silver
        study.add_trial(create_trial(
            params=params, distributions={k: DISTS[k] for k in params}, value=acc,
            user_attrs={"num_params": PARAMS[bb] + i,
                        "confusion": {"epoch": 1, "class_names": CLASSES, "matrix": matrix}}))
    for _ in range(pruned):
        study.add_trial(create_trial(params={"backbone": "resnet18"},
                                     distributions={"backbone": DISTS["backbone"]},
                                     state=TrialState.PRUNED))
    return study


def test_parallel_data_keeps_trials_without_the_conditional_parameter(tmp_path):
    d = parallel_data(_study(tmp_path))
    assert d.trials == (0, 1, 2, 3, 4)  # every COMPLETE trial, none dropped
    axes = {a.name: a for a in d.axes}
    assert list(axes) == ["backbone", "lr", "loss_fn", "focal_gamma", "val_acc"]
    gamma = axes["focal_gamma"]
    assert gamma.missing == 3 and NA_LABEL in gamma.tick_labels
    assert [p == NA_POSITION for p in gamma.positions] == [True, False, False, True, True]
    assert gamma.positions[1] == 1.0 and gamma.positions[2] == 0.0  # 2.0 high, 1.0 low
    assert axes["backbone"].tick_labels == ("resnet18", "resnet50")
    assert axes["backbone"].missing == 0
    # lr on a log axis: 1e-3 between 1e-4 and 3e-2 at log position
    lr = axes["lr"].positions
    assert lr[3] == 0.0 and lr[4] == 1.0 and lr[0] == pytest.approx(1 / 2.4771, rel=1e-3)
    assert axes["val_acc"].positions[1] == 1.0


def test_pareto_front_and_tradeoffs(tmp_path):
    # (accuracy up, cost down): (0.7, 5) beats (0.6, 6); (0.5, 1) is cheapest; ties both stay
    assert pareto_front([(0.7, 5), (0.6, 6), (0.5, 1), (0.7, 5), (0.4, 2)], True) == [0, 2, 3]
    assert pareto_front([(0.2, 5), (0.3, 6), (0.3, 4)], False) == [0, 2]  # minimise both
    (t,) = tradeoffs(_study(tmp_path))  # latency not measured: only num_params
    assert t.cost == "num_params" and t.trials == (0, 1, 2, 3, 4)
    # resnet18 trials 0, 2, 4 cost 11.2M + i, resnet50 trials 1, 3 cost 23.5M + i
    assert sorted(t.trials[i] for i in t.front) == [0, 1, 2]


def test_best_score_per_backbone_counts_trials(tmp_path):
    pb = per_backbone(_study(tmp_path))
    assert pb.backbones == ("resnet50", "resnet18") and pb.best == (0.70, 0.66)
    assert pb.best_trial == (1, 2) and pb.trials == (2, 3) and pb.objective == "val_acc"


@pytest.mark.parametrize("fmt", ["png", "html", "both"])
def test_report_writes_every_plot_with_its_count_and_one_index(tmp_path, capsys, fmt):
    _study(tmp_path)
    out = tmp_path / "report"
    assert main(["report", "--storage", f"sqlite:///{tmp_path / 'c.db'}", "-o", str(out),
                 "--format", fmt]) == 0
    exts = ["png", "html"] if fmt == "both" else [fmt]
    names = {p.name for p in out.iterdir()}
    for ext in exts:
        for stem in ("history-5trials", "intermediate", "confusion-trial1", "backbones-5trials",
                     "num_params-5trials", "parallel-5trials"):
            if stem == "intermediate":
                continue  # no trial reported intermediate values
            assert f"{stem}.{ext}" in names, (stem, ext, sorted(names))
    index = (out / "index.html").read_text()
    for name in names - {"index.html", "index.json", "plotly.min.js"}:
        assert f"href='{name}'" in index, name
    assert "parallel coordinates (5 COMPLETE trials; 3 lack a conditional parameter" in index
    assert "best trial #1: confusion matrix (best of 5 COMPLETE trials)" in index
    assert "val_acc vs num_params, Pareto front marked (5 COMPLETE trials, 3 on the front)" \
        in index
    assert "latency_ms: latency_ms not measured" in index
    summary = json.loads((out / "index.json").read_text())
    assert {p["name"]: p["trials"] for p in summary["plots"]} == {
        "history": 5, "confusion": 5, "backbones": 5, "num_params": 5, "parallel": 5}
    assert summary["trials"] == {"COMPLETE": 5, "PRUNED": 1}
    if "html" in exts:
        par = (out / "parallel-5trials.html").read_text().replace("\\u002f", "/")  # JSON escape
        assert '"n/a"' in par and "focal_gamma (3 n/a)" in par and "(5 COMPLETE trials" in par
        assert (out / "plotly.min.js").is_file()  # shared, not inlined in each plot
        assert len(par) < 200_000
    if "png" in exts:
        assert (out / "parallel-5trials.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(out / "index.html")


def test_rerun_with_more_trials_replaces_the_old_files(tmp_path):
    study = _study(tmp_path)
    write_full_report(study, tmp_path / "r", formats=("png",))
    study.add_trial(create_trial(params={"backbone": "resnet50"},
                                 distributions={"backbone": DISTS["backbone"]}, value=0.9,
                                 user_attrs={"num_params": 1}))
    report = write_full_report(study, tmp_path / "r", formats=("png",))
    names = sorted(p.name for p in (tmp_path / "r").glob("*.png"))
    assert not [n for n in names if re.search(r"-5trials", n)], names
    assert "parallel-6trials.png" in names and "confusion-trial1.png" not in names
    assert report.skipped["confusion"].startswith("best trial #6 has no user attr confusion")


@pytest.mark.parametrize("n, drawn", [(9, False), (10, True), (12, True)])
def test_report_draws_importances_from_10_complete_trials_on(n, drawn, tmp_path):
    assert MIN_IMPORTANCE_TRIALS == 10
    study = optuna.create_study(direction="maximize")
    dists = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64])}
    for i in range(n):
        lr = 10 ** (-4 + 3 * i / n)
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr, "batch_size": [16, 32, 64][i % 3]}, distributions=dists,
            value=float(i) / n, intermediate_values={0: 0.1} if i < 4 else {}))
    (tmp_path / "importances-12trials.html").write_text("from an earlier report")
    written, skipped = write_optuna_plots(study, tmp_path, fmt="html")
    names = sorted(p.name for p in written)
    assert names == sorted([f"history-{n}trials.html", "intermediate-4trials.html"]
                           + ([f"importances-{n}trials.html"] if drawn else []))
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # the stale file is gone
    if drawn:
        html = (tmp_path / f"importances-{n}trials.html").read_text()
        assert f"({n} COMPLETE trials)" in html
    else:
        assert skipped["importances"] == ("needs at least 10 COMPLETE trials for a stable "
                                          "ranking, got 9")
