"""The start-up (`study.portfolio: k`, `study.neighbours: k`): the shipped file, projection, the
default's one-change neighbours, enqueue once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from hpo.cli import main
from hpo.errors import VcrHpoError
from hpo.run.portfolio import (
    ATTR_NEIGHBOURS,
    ATTR_PORTFOLIO,
    PORTFOLIO_FILE,
    backbone_family,
    describe,
    describe_neighbours,
    load_portfolio,
    nearest_backbone,
    plan_neighbours,
    plan_portfolio,
    project_entry,
    read_portfolio,
)
from hpo.run.warm_start import enqueue_warm_start, fit_params
from hpo.space import SearchSpaceError, load_search_space, parse_search_space
from hpo.study import build_storage, open_study
from hpo.study._resume import resume_view

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "search_spaces" / PORTFOLIO_FILE
SEED_TEAM = Path(__file__).parents[1] / "spaces" / "seed_team_288.yaml"

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _space(hyper: str, study: str = "") -> object:
    text = f"study: {{name: p, n_trials: 3{', ' + study if study else ''}}}\nhyperparameters:\n{hyper}"
    return parse_search_space(text, source="<test>")


# ------------------------------------------------------------------------------ the file


def test_shipped_portfolio_loads_validates_and_fits_the_demo_space():
    entries = load_portfolio()
    assert len(entries) >= 4
    demo = load_search_space(ROOT / "search_spaces" / "hyperparameters.yaml")
    for entry in entries:
        demo.config_for(entry)  # every value a valid trainer value
        fitted, bad, left_out = fit_params(demo, entry)  # drawn from the demo space
        assert fitted == entry and not bad and not left_out
    assert demo.default_params() not in entries  # trial 0 runs anyway
    assert len({tuple(sorted(e.items())) for e in entries}) == len(entries)


def test_shipped_portfolio_header_holds_its_provenance():
    head = [line for line in SHIPPED.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(head)
    for needle in ("Built by: nice -n 5 python bench/build_portfolio.py", "Date: ",
                   "raw output: bench/results/", "Candidates:", "RandomSampler(seed=",
                   "Tasks (", "synthetic:colour=", "never scikit-learn digits"):
        assert needle in text, needle
    raw = ROOT / text.split("raw output: ", 1)[1].split()[0]
    kept = raw.read_text()  # the build's output is committed: its command and every entry
    assert kept.splitlines()[1].startswith("$ python bench/build_portfolio.py")
    command = text.split("Built by: nice -n 5 python ", 1)[1].splitlines()[0]
    assert kept.splitlines()[1] == f"$ python {command}"
    scores = [line for line in SHIPPED.read_text().splitlines()
              if line.startswith("  - ") and "mean normalised best-so-far" in line]
    assert len(scores) == len(load_portfolio())


@pytest.mark.parametrize("text, rule", [
    ("portfolio: 3\n", "must be a non-empty list of configs"),
    ("portfolio: []\n", "must be a non-empty list of configs"),
    ("other: []\n", "must be a non-empty list of configs"),
    ("portfolio: [[1, 2]]\n", "portfolio[0]: must be a mapping of trainer fields"),
    ("portfolio: [{lr: 0.1}, {backbone: resnet99}]\n", "portfolio[1]: backbone"),
    ("portfolio: [{lrate: 0.1}]\n", "not a trainer field, got 'lrate'"),
    ("portfolio: [{lr: -1}]\n", "portfolio[0]: lr: must lie in"),
    ("portfolio: [{lr: 0.1\n", "must be a readable YAML file"),
])
def test_a_bad_portfolio_file_is_one_line(tmp_path, text, rule):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(VcrHpoError) as info:  # ConfigError; an unknown name: UnknownNameError
        read_portfolio(path)
    assert rule in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ projection

_BB = "  backbone: {type: categorical, choices: %s}\n"
_LR = "  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"


@pytest.mark.parametrize("hyper, entry, expected, moved", [
    # clip into the range (log scale: the bound)
    (_LR, {"lr": 0.05}, {"lr": 0.01}, "lr 0.05 -> 0.01"),
    (_LR, {"lr": 1e-6}, {"lr": 1e-4}, "lr 1e-06 -> 0.0001"),
    (_LR, {"lr": 3e-3}, {"lr": 3e-3}, None),
    # snap to the step, after clipping
    ("  dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}\n", {"dropout": 0.33},
     {"dropout": 0.3}, "dropout 0.33 -> 0.3"),
    ("  dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}\n", {"dropout": 0.9},
     {"dropout": 0.5}, "dropout 0.9 -> 0.5"),
    ("  warmup_epochs: {type: int, low: 0, high: 8, step: 2}\n", {"warmup_epochs": 5.2},
     {"warmup_epochs": 6}, "warmup_epochs 5.2 -> 6"),
    ("  warmup_epochs: {type: int, low: 1, high: 64, log: true}\n", {"warmup_epochs": 100},
     {"warmup_epochs": 64}, "warmup_epochs 100 -> 64"),
    # nearest member of the backbone's family, else the smallest of its kin
    (_BB % "[resnet18, resnet34]", {"backbone": "resnet10t"}, {"backbone": "resnet18"},
     "backbone resnet10t -> resnet18 (nearest resnet)"),
    (_BB % "[resnet18, resnet34]", {"backbone": "resnet50"}, {"backbone": "resnet34"},
     "backbone resnet50 -> resnet34"),
    (_BB % "[efficientnet_b3, efficientnet_b0, convnext_tiny]",
     {"backbone": "mobilenetv3_large_100"}, {"backbone": "efficientnet_b0"},
     "smallest mbconv kin of mobilenetv3"),
    (_BB % "[efficientnet_b2, convnext_tiny]", {"backbone": "resnet18"},
     {"backbone": "convnext_tiny"}, "smallest residual kin of resnet"),
    # numeric choices: the nearest; names: exact only
    ("  batch_size: {type: categorical, choices: [16, 24]}\n", {"batch_size": 64},
     {"batch_size": 24}, "batch_size 64 -> 24"),
    # conditionals: a child only where its `when:` holds
    (("  loss_fn: {type: categorical, choices: [cross_entropy, focal]}\n"
     "  focal_gamma: {type: float, low: 1.0, high: 3.0, when: {loss_fn: focal}}\n"),
     {"loss_fn": "cross_entropy", "focal_gamma": 2.0}, {"loss_fn": "cross_entropy"}, None),
    (("  loss_fn: {type: categorical, choices: [cross_entropy, focal]}\n"
     "  focal_gamma: {type: float, low: 1.0, high: 3.0, when: {loss_fn: focal}}\n"),
     {"loss_fn": "focal", "focal_gamma": 0.5}, {"loss_fn": "focal", "focal_gamma": 1.0},
     "focal_gamma 0.5 -> 1"),
    # a name this space does not search is left out (its fixed value holds)
    (_LR, {"lr": 3e-3, "momentum": 0.9, "dropout": 0.2}, {"lr": 3e-3}, None),
])
def test_projection(hyper, entry, expected, moved):
    space = _space(hyper)
    params, notes, why = project_entry(space, entry)
    assert why is None and params == expected
    assert (moved in "; ".join(notes)) if moved else notes == []
    assert fit_params(space, params)[1] == []  # the projection fits the space exactly


@pytest.mark.parametrize("hyper, entry, why", [
    (_BB % "[resnet18, resnet34]", {"backbone": "mobilenetv3_large_100"},
     "backbone mobilenetv3_large_100: no mobilenetv3 backbone nor mbconv kin among"),
    (_BB % "[convnext_tiny, resnet18]", {"backbone": "efficientnet_b0"},
     "no efficientnet backbone nor mbconv kin"),
    ("  optimizer: {type: categorical, choices: [adamw, adam]}\n", {"optimizer": "sgd"},
     "optimizer sgd is not a choice ['adamw', 'adam']"),
    ("  loss_fn: {type: categorical, choices: [cross_entropy, focal]}\n",
     {"loss_fn": "smooth_modulation"}, "loss_fn smooth_modulation is not a choice"),
    ("  scheduler: {type: categorical, choices: [cosine, none]}\n  " + _LR.strip() + "\n",
     {"scheduler": "step", "lr": 1e-3}, "scheduler step is not a choice"),
    (_LR, {"momentum": 0.9}, "sets nothing this space searches"),
])
def test_projection_drops_what_cannot_be_projected(hyper, entry, why):
    params, _, reason = project_entry(_space(hyper), entry)
    assert params is None and why in reason


def test_family_comes_from_the_registry_and_the_stem_for_timm():
    assert backbone_family("resnet18") == backbone_family("resnet10t") == "resnet"
    assert backbone_family("efficientnet_b3") == "efficientnet"
    assert backbone_family("mobilenetv3_large_100") == "mobilenetv3"
    assert backbone_family("convnext_tiny") == "convnext"
    # names outside this registry still get a family (the spaces only offer registered ones)
    assert nearest_backbone("mobilenetv3_large_100", ["mobilenetv3_small_100", "resnet18"]) == \
        ("mobilenetv3_small_100", "nearest mobilenetv3")


def test_plan_drops_duplicates_and_trial0_with_notes():
    space = _space("  backbone: {type: categorical, choices: [resnet18, resnet34], "
                   "default: resnet18}\n  lr: {type: float, low: 1.0e-4, high: 1.0e-2, "
                   "log: true, default: 1.0e-3}\n")
    entries = [
        {"backbone": "resnet18", "lr": 1e-3},              # = trial 0
        {"backbone": "resnet10t", "lr": 0.05},             # -> resnet18, 0.01
        {"backbone": "resnet18", "lr": 0.03},              # -> resnet18, 0.01: a duplicate
        {"backbone": "mobilenetv3_large_100", "lr": 1e-3},  # no family member
        {"backbone": "resnet34", "lr": 2e-3, "dropout": 0.1},
        {"backbone": "resnet34", "lr": 5e-3},              # beyond k
    ]
    plan = plan_portfolio(space, 5, entries)
    assert plan.configs == ({"backbone": "resnet18", "lr": 0.01},
                            {"backbone": "resnet34", "lr": 2e-3})
    line = describe(plan, 5)
    assert "\n" not in line
    assert line.startswith("portfolio: 2 of 5 entries enqueued after trial 0: #2 (backbone "
                           "resnet10t -> resnet18 (nearest resnet); lr 0.05 -> 0.01), #5")
    for part in ("#1 dropped (equals trial 0)", "#3 dropped (equals #2)",
                 "#4 dropped (backbone mobilenetv3_large_100: no mobilenetv3 backbone",
                 "left out (not searched here): dropout"):
        assert part in line, part


def test_seed_team_space_gets_a_sensible_projection():
    """convnext_tiny and efficientnet_b0..b3 at 288 px, pretrained; optimizer fixed (not run)."""
    space = load_search_space(SEED_TEAM)
    assert space.study.portfolio == 4
    shipped = plan_portfolio(space)
    assert shipped.configs, describe(shipped, 4)
    for params in shipped.configs:
        assert fit_params(space, params)[1] == []
        assert params["backbone"] in ("convnext_tiny", "efficientnet_b0")
        assert 1e-5 <= params["lr"] <= 1e-3 and params["batch_size"] in (16, 24)
        assert "optimizer" not in params and "dropout" not in params
        assert ("focal_gamma" in params) == (params["loss_fn"] == "focal")
    entries = [
        {"backbone": "resnet10t", "lr": 3e-3, "batch_size": 32, "optimizer": "adamw",
         "dropout": 0.0, "loss_fn": "cross_entropy"},
        {"backbone": "mobilenetv3_large_100", "lr": 2e-4, "batch_size": 64, "optimizer": "sgd",
         "momentum": 0.9, "dropout": 0.3, "loss_fn": "focal", "focal_gamma": 2.7},
    ]
    plan = plan_portfolio(space, 2, entries)
    assert plan.configs == (
        {"backbone": "convnext_tiny", "lr": 1e-3, "batch_size": 24, "loss_fn": "cross_entropy"},
        {"backbone": "efficientnet_b0", "lr": 2e-4, "batch_size": 24, "loss_fn": "focal",
         "focal_gamma": 2.5},
    )
    assert "left out (not searched here): dropout, momentum, optimizer" in describe(plan, 2)


# ------------------------------------------------------------------------------ the study key


@pytest.mark.parametrize("value, rule", [
    (-1, "must be a whole number in [0, "), ("four", "must be a whole number in [0, "),
    (True, "must be a whole number in [0, "), (1.5, "must be a whole number in [0, "),
    (99, "(entries in the shipped portfolio)"),
])
def test_portfolio_key_is_validated(value, rule):
    with pytest.raises(SearchSpaceError) as info:
        _space(_LR, f"portfolio: {yaml.safe_dump(value).splitlines()[0]}")
    assert "study.portfolio" in str(info.value) and rule in str(info.value)


def test_portfolio_key_off_keeps_fingerprints_and_a_resume_may_change_it():
    off = [_space(_LR), _space(_LR, "portfolio: 0"), _space(_LR, "portfolio: null")]
    assert {s.study.portfolio for s in off} == {0}
    assert len({s.fingerprint for s in off}) == 1
    assert "portfolio" not in off[0].study.canonical()
    on = _space(_LR, "portfolio: 3")
    assert on.study.canonical()["portfolio"] == 3 and on.fingerprint != off[0].fingerprint
    assert resume_view(on.canonical(), {}) == resume_view(off[0].canonical(), {})


# ------------------------------------------------------------------------------ enqueue


_FIXED = {"backbone": "resnet10t", "epochs": 1, "image_size": 32, "max_train_samples": 24,
          "synthetic_size": 40, "device": "cpu", "pretrained": False}
_HYPER = {
    "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True, "default": 3e-3},
    "batch_size": {"type": "categorical", "choices": [32, 64], "default": 32},
    "optimizer": {"type": "categorical", "choices": ["adamw", "sgd"], "default": "adamw"},
    "momentum": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "sgd"}},
}


def _study_space(path: Path, k: int = 3):
    doc = {"study": {"name": "pf", "metric": "val_acc", "n_trials": 2, "portfolio": k,
                     "sampler": {"type": "TPE", "seed": 0, "n_startup_trials": 2}},
           "hyperparameters": _HYPER, "fixed": _FIXED}
    path.write_text(yaml.safe_dump(doc))
    return load_search_space(path)


def test_enqueued_once_after_trial0_and_not_again_on_resume(tmp_path):
    space = _study_space(tmp_path / "s.yaml")
    plan = plan_portfolio(space)
    assert plan.configs
    db = build_storage(f"sqlite:///{tmp_path / 'pf.db'}")
    study = open_study(space, db, study_name="pf")
    numbers = enqueue_warm_start(study, plan)
    assert numbers == list(range(1, 1 + len(plan.configs)))
    waiting = sorted(study.get_trials(states=(TrialState.WAITING,)), key=lambda t: t.number)
    assert waiting[0].user_attrs == {"baseline": True}  # trial 0: the default, first
    assert [t.user_attrs["portfolio"] for t in waiting[1:]] == [
        f"portfolio #{i}" for i in range(1, len(plan.configs) + 1)]
    assert [t.system_attrs["fixed_params"] for t in waiting[1:]] == list(plan.configs)
    again = open_study(space, build_storage(f"sqlite:///{tmp_path / 'pf.db'}"), study_name="pf")
    assert enqueue_warm_start(again, plan_portfolio(space)) == []
    assert len(again.trials) == 1 + len(plan.configs)
    assert again.user_attrs[ATTR_PORTFOLIO] == {"source": "portfolio", "trials": numbers}


@pytest.mark.slow  # trains 3 tiny trials
def test_run_prints_one_line_and_trains_default_then_portfolio(tmp_path, capsys, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    space = _study_space(tmp_path / "s.yaml", k=2)
    expected = plan_portfolio(space).configs
    assert main(["run", "--space", "s.yaml", "--n-trials", "2", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("portfolio:")]
    assert len(lines) == 1 and lines[0].startswith(
        f"portfolio: {len(expected)} of 2 entries enqueued after trial 0")
    study = optuna.load_study(study_name="pf", storage="sqlite:///studies/pf.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert trials[0].user_attrs.get("baseline") and trials[0].params == space.default_params()
    assert trials[1].params == expected[0] and trials[1].state == TrialState.COMPLETE
    # a resume neither enqueues nor prints again what is already in the study
    assert main(["run", "--space", "s.yaml", "--n-trials", "3", "--quiet", "--threads", "1"]) == 0
    study = optuna.load_study(study_name="pf", storage="sqlite:///studies/pf.db")
    tagged = [t.number for t in study.trials if "portfolio" in t.user_attrs]
    assert tagged == list(range(1, 1 + len(expected)))


# ------------------------------------------------------------------------------ neighbours


def _demo(k: int):
    text = (ROOT / "search_spaces" / "hyperparameters.yaml").read_text()
    assert "\n  neighbours: 7\n" in text  # the demo ships them
    return parse_search_space(text.replace("\n  neighbours: 7\n", f"\n  neighbours: {k}\n"),
                              source="<demo>")


def test_neighbours_of_the_demo_default_one_change_each_parameter_once_first():
    space = _demo(20)
    base = space.baseline()
    plan = plan_neighbours(space)
    assert plan.notes == ("backbone resnet10t", "lr 0.000720843", "batch_size 64", "dropout 0.1",
                          "loss_fn focal", "optimizer sgd", "backbone mobilenetv3_large_100",
                          "lr 0.0124854")
    for params, note in zip(plan.configs, plan.notes):
        name = note.split()[0]
        changed = {n for n in params if params[n] != base.get(n)}
        child = {"loss_fn": {"focal_gamma"}, "optimizer": {"momentum"}}.get(name, set())
        assert changed == {name} | child  # one move; a child it switches on: its baseline
        for c in child:
            assert params[c] == space.param(c).baseline()
    assert plan.configs[1]["lr"] == pytest.approx(3e-3 / 300 ** 0.25)  # a quarter of the log range
    assert plan_neighbours(space, 3).notes == plan.notes[:3]  # the first k, in that order
    assert describe_neighbours(plan_neighbours(space, 3), 3) == (
        "neighbours: 3 of 3 one-change neighbours of trial 0, queued once per study after it: "
        "backbone resnet10t, lr 0.000720843, batch_size 64")


@pytest.mark.parametrize("hyper, expected", [
    ("  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 1.0e-3}\n",
     [1e-3 * 10 ** 0.5, 1e-3 / 10 ** 0.5]),  # the default at the (geometric) middle: up first
    ("  lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true, default: 3.0e-3}\n",
     [3e-3 / 300 ** 0.25, 3e-3 * 300 ** 0.25]),  # above the middle: down first
    ("  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 1.0e-4}\n",
     [1e-4 * 10 ** 0.5]),  # at a bound: one way only
    ("  dropout: {type: float, low: 0.0, high: 0.5, step: 0.1, default: 0.4}\n", [0.3, 0.5]),
    ("  warmup_epochs: {type: int, low: 1, high: 3, default: 1}\n", [2]),  # under a step: one
    ("  warmup_epochs: {type: int, low: 0, high: 100, default: 90}\n", [65, 100]),  # middle 1st
    (("  backbone: {type: categorical, choices: [resnet10t, resnet18, resnet34], default: "
      "resnet18}\n"), ["resnet10t", "resnet34"]),
])
def test_neighbour_moves(hyper, expected):
    space = _space(hyper)
    name = space.params[0].name
    got = [c[name] for c in plan_neighbours(space, 10).configs]
    assert got == pytest.approx(expected)


def test_neighbours_of_a_child_on_in_the_default_and_one_the_change_switches_off():
    space = _space("  optimizer: {type: categorical, choices: [sgd, adamw], default: sgd}\n"
                   "  momentum: {type: float, low: 0.8, high: 0.96, default: 0.88, when: "
                   "{optimizer: sgd}}\n")
    configs = plan_neighbours(space, 10).configs
    assert configs == ({"optimizer": "adamw"}, {"optimizer": "sgd", "momentum": pytest.approx(0.92)},
                       {"optimizer": "sgd", "momentum": pytest.approx(0.84)})


@pytest.mark.parametrize("value", [-1, "four", True, 1.5])
def test_neighbours_key_is_validated(value):
    with pytest.raises(SearchSpaceError) as info:
        _space(_LR, f"neighbours: {yaml.safe_dump(value).splitlines()[0]}")
    assert "study.neighbours" in str(info.value) and "must be a whole number >= 0" in str(info.value)


def test_neighbours_key_off_keeps_fingerprints_and_a_resume_may_change_it():
    off = [_space(_LR), _space(_LR, "neighbours: 0"), _space(_LR, "neighbours: null")]
    assert {s.study.neighbours for s in off} == {0} and len({s.fingerprint for s in off}) == 1
    on = _space(_LR, "neighbours: 2")
    assert on.study.canonical()["neighbours"] == 2 and on.fingerprint != off[0].fingerprint
    assert resume_view(on.canonical(), {}) == resume_view(off[0].canonical(), {})


@pytest.mark.slow  # trains 4 tiny trials
def test_run_trains_default_portfolio_then_neighbours_once(tmp_path, capsys, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    doc = {"study": {"name": "nb", "metric": "val_acc", "n_trials": 4, "portfolio": 1,
                     "neighbours": 2, "sampler": {"type": "TPE", "seed": 0}},
           "hyperparameters": _HYPER, "fixed": _FIXED}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    space = load_search_space(tmp_path / "s.yaml")
    expected = plan_neighbours(space).configs
    assert main(["run", "--space", "s.yaml", "--threads", "1"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("neighbours:")]
    assert lines == [describe_neighbours(plan_neighbours(space), 2)]
    study = optuna.load_study(study_name="nb", storage="sqlite:///studies/nb.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert trials[0].params == space.default_params() and "portfolio" in trials[1].user_attrs
    assert [t.params for t in trials[2:]] == list(expected)
    assert [t.user_attrs["neighbour"] for t in trials[2:]] == ["neighbours #1", "neighbours #2"]
    assert study.user_attrs[ATTR_NEIGHBOURS] == {"source": "neighbours", "trials": [2, 3]}
    assert main(["run", "--space", "s.yaml", "--n-trials", "5", "--quiet", "--threads", "1"]) == 0
    study = optuna.load_study(study_name="nb", storage="sqlite:///studies/nb.db")
    assert [t.number for t in study.trials if "neighbour" in t.user_attrs] == [2, 3]
