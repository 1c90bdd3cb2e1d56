"""Warm start (`--warm-start SOURCE[:k]`): parsing, fitting, enqueueing once, refusals."""

from __future__ import annotations

import optuna
import pytest
import torch
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

import hpo
from hpo.cli import main
from hpo.errors import ConfigError
from hpo.outputs.configs import write_config
from hpo.run.warm_start import (
    ATTR_WARM_START,
    enqueue_warm_start,
    fit_params,
    load_warm_start,
    parse_warm_start,
)
from hpo.space import parse_search_space
from hpo.study import build_storage, open_study

pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning"),  # study.ask below
]

FIXED = {"backbone": "resnet10t", "epochs": 1, "image_size": 32, "max_train_samples": 32,
         "synthetic_size": 64, "batch_size": 32, "device": "cpu", "pretrained": False}
HYPER = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
    "momentum": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "sgd"}},
}
# The source study's trials (lr, optimizer, momentum, value); ranked: 3, 1, 4, 0, 2 (5 is pruned)
SOURCE = [
    (1e-3, "adamw", None, 0.50),
    (5e-3, "sgd", 0.9, 0.70),
    (2e-4, "adamw", None, 0.30),
    (3e-2, "sgd", 0.95, 0.90),
    (2e-2, "adamw", None, 0.60),
    (9e-2, "adamw", None, None),
]


@pytest.fixture(autouse=True)
def _here(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()


def _space(path, hyper=None, name="confirm", **study):
    doc = {"study": {"name": name, "metric": "val_acc", "n_trials": 2,
                     "sampler": {"type": "Random", "seed": 0}, **study},
           "hyperparameters": hyper or HYPER, "fixed": FIXED}
    path.write_text(yaml.safe_dump(doc))
    return parse_search_space(path.read_text(), source=str(path))


def _source(url="sqlite:///studies/screen.db", name="screen", trials=SOURCE):
    """A finished study made with Optuna's public API (no training needed)."""
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    for lr, opt, mom, value in trials:
        params = {"lr": lr, "optimizer": opt}
        dists = {"lr": FloatDistribution(1e-5, 1.0, log=True),
                 "optimizer": CategoricalDistribution(["adamw", "sgd"])}
        if mom is not None:
            params["momentum"], dists["momentum"] = mom, FloatDistribution(0.5, 0.99)
        state = TrialState.COMPLETE if value is not None else TrialState.PRUNED
        study.add_trial(create_trial(params=params, distributions=dists, value=value, state=state))
    return study


def _load(space, text, storage=None):
    from hpo.study import default_storage_url

    return load_warm_start(text, space, storage=storage, run_url=storage or default_storage_url(
        space.study.name), run_study=space.study.name)


# ------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text, study, url, k, file", [
    ("screen", "screen", None, 5, None),
    ("screen:3", "screen", None, 3, None),
    ("sqlite:///studies/screen.db#screen:2", "screen", "sqlite:///studies/screen.db", 2, None),
    ("sqlite:///x.db#screen", "screen", "sqlite:///x.db", 5, None),
    ("postgresql://u@host:5432/db#s1:4", "s1", "postgresql://u@host:5432/db", 4, None),
    ("out/best.yaml", None, None, 1, "out/best.yaml"),
])
def test_parse_forms(text, study, url, k, file):
    src = parse_warm_start(text)
    assert (src.study, src.url, src.k, None if src.file is None else str(src.file)) == \
        (study, url, k, file)


@pytest.mark.parametrize("text, rule", [
    ("screen:0", "k must be a whole number >= 1"),
    ("screen:x", "k must be a whole number >= 1"),
    ("screen:-2", "k must be a whole number >= 1"),
    ("best.yaml:3", "a config file holds one configuration"),
    ("sqlite:///studies/screen.db", "a storage URL needs '#STUDY'"),
    ("", "needs a source"),
    ("bad name!", "not a study name"),
    ("mongodb://h/db#screen", "unsupported database"),
])
def test_parse_refuses_with_one_line(text, rule):
    with pytest.raises(ConfigError) as info:
        parse_warm_start(text)
    assert str(info.value).startswith("--warm-start: ") and rule in str(info.value)
    assert len(str(info.value).splitlines()) == 1


# ------------------------------------------------------------------------------ fitting


def test_top_k_in_rank_order(tmp_path):
    _source()
    warm = _load(_space(tmp_path / "c.yaml"), "screen:3")
    assert list(warm.configs) == [
        {"lr": 3e-2, "optimizer": "sgd", "momentum": 0.95},
        {"lr": 5e-3, "optimizer": "sgd", "momentum": 0.9},
        {"lr": 2e-2, "optimizer": "adamw"},
    ]
    assert warm.notes == ()


def test_default_k_is_five_and_pruned_trials_never_count(tmp_path):
    _source()
    warm = _load(_space(tmp_path / "c.yaml"), "screen")
    assert [c["lr"] for c in warm.configs] == [3e-2, 5e-3, 2e-2, 1e-3, 2e-4]


def test_out_of_range_and_choice_configs_are_dropped_and_named(tmp_path):
    _source()
    narrow = {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
              "optimizer": {"type": "categorical", "choices": ["adamw", "adam"]}}
    warm = _load(_space(tmp_path / "c.yaml", narrow), "screen:5")
    assert list(warm.configs) == [{"lr": 1e-3, "optimizer": "adamw"}]
    assert warm.notes == (
        ("warning: warm start: config #1 dropped (lr=0.03 is outside [0.001, 0.01]; "
        "optimizer='sgd' is not a choice ['adamw', 'adam'])"),
        ("warning: warm start: config #2 dropped (optimizer='sgd' is not a choice "
        "['adamw', 'adam'])"),
        "warning: warm start: config #3 dropped (lr=0.02 is outside [0.001, 0.01])",
        "warning: warm start: config #5 dropped (lr=0.0002 is outside [0.001, 0.01])",
    )


def test_params_not_searched_or_switched_off_are_left_out_and_named(tmp_path):
    space = _space(tmp_path / "c.yaml", {
        "lr": HYPER["lr"],
        "optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
        "momentum": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "adamw"}},
    })
    fitted, bad, left_out = fit_params(space, {"lr": 1e-3, "optimizer": "sgd", "momentum": 0.9,
                                               "dropout": 0.1})
    assert fitted == {"lr": 1e-3, "optimizer": "sgd"} and bad == []
    assert left_out == ["dropout", "momentum"]
    _source()
    warm = _load(space, "screen:1")
    assert warm.notes == (("warning: warm start: config #1 without momentum (not searched here or "
                          "switched off by when:)"),)


def test_step_and_int_rules():
    space = parse_search_space(yaml.safe_dump({
        "study": {"name": "s"}, "fixed": FIXED,
        "hyperparameters": {"dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
                            "warmup_epochs": {"type": "int", "low": 0, "high": 3}}}))
    assert fit_params(space, {"dropout": 0.3, "warmup_epochs": 2.0})[0] == {
        "dropout": 0.3, "warmup_epochs": 2}
    assert fit_params(space, {"dropout": 0.25})[1] == ["dropout=0.25 is off the step 0.1 from 0"]
    assert fit_params(space, {"warmup_epochs": 1.5})[1] == ["warmup_epochs=1.5 is not a whole number"]


def test_best_yaml_source(tmp_path):
    from hpo.config import TrainConfig

    path = write_config(TrainConfig.from_dict({**FIXED, "lr": 0.02, "optimizer": "sgd",
                                               "momentum": 0.85, "image_size": 64}),
                        tmp_path / "best.yaml")
    warm = _load(_space(tmp_path / "c.yaml"), str(path))
    assert list(warm.configs) == [{"lr": 0.02, "optimizer": "sgd", "momentum": 0.85}]


# ------------------------------------------------------------------------------ enqueueing


def test_enqueued_once_in_order_and_not_again_on_resume(tmp_path):
    _source()
    space = _space(tmp_path / "c.yaml")
    warm = _load(space, "screen:3")
    db = build_storage("sqlite:///studies/confirm.db")
    study = open_study(space, db, study_name="confirm")
    assert enqueue_warm_start(study, warm) == [0, 1, 2]
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.user_attrs["warm_start"] for t in waiting] == [
        "screen:3 #1", "screen:3 #2", "screen:3 #3"]
    asked = [study.ask() for _ in waiting]  # the params a trial gets are the enqueued ones
    assert [space.suggest(t) for t in asked] == list(warm.configs)
    for t in asked:
        study.tell(t, state=TrialState.FAIL)
    again = open_study(space, db, study_name="confirm")
    assert enqueue_warm_start(again, warm) == []
    assert len(again.trials) == 3 and not again.get_trials(states=(TrialState.WAITING,))
    assert again.user_attrs[ATTR_WARM_START] == {"source": "screen:3", "trials": [0, 1, 2]}


def test_a_config_the_study_holds_is_not_enqueued_again(tmp_path):
    """The screen's best is often the `default:` baseline, which the confirm study runs first."""
    _source()
    hyper = {**HYPER, "lr": {**HYPER["lr"], "default": 3e-2}, "optimizer": {
        **HYPER["optimizer"], "default": "sgd"}, "momentum": {**HYPER["momentum"], "default": 0.95}}
    space = _space(tmp_path / "c.yaml", hyper)
    warm = _load(space, "screen:2")
    study = open_study(space, build_storage("sqlite:///studies/confirm.db"), study_name="confirm")
    assert len(study.trials) == 1  # the baseline: lr 3e-2, sgd, 0.95 = the screen's best
    assert enqueue_warm_start(study, warm) == [1]
    assert [t.user_attrs.get("warm_start") for t in study.trials] == [None, "screen:2 #2"]


def test_source_in_an_explicit_storage_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'all.db'}"
    _source(url=url, name="screen")
    space = _space(tmp_path / "c.yaml")
    assert len(_load(space, f"{url}#screen:2").configs) == 2
    assert len(_load(space, "screen:2", storage=url).configs) == 2  # bare name: the run's storage


# ------------------------------------------------------------------------------ refusals


def _files(tmp_path):
    return sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("setup, arg, rule", [
    ("none", "screen:3", "no study file studies/screen.db"),
    ("source", "other:3", "no study file studies/other.db"),
    ("source", "sqlite:///studies/screen.db#other", "no study 'other' in"),
    ("garbage", "screen", "cannot read the source study 'screen'"),
    ("source", "screen:0", "k must be a whole number >= 1"),
    ("pruned", "screen", "has no COMPLETE trial"),
    ("narrow", "screen:2", "no configuration of 'screen:2' fits"),
    ("none", "missing.yaml", "no such config file"),
    ("source", "confirm", "must name another study"),
])
def test_refused_source_exits_2_and_writes_nothing(tmp_path, capsys, setup, arg, rule):
    hyper = HYPER
    if setup in ("source", "narrow"):
        _source()
    elif setup == "garbage":
        (tmp_path / "studies" / "screen.db").write_bytes(b"not a database" * 100)
    elif setup == "pruned":
        _source(trials=[(1e-3, "adamw", None, None)])
    if setup == "narrow":
        hyper = {**HYPER, "lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}
    if setup == "source" and arg == "confirm":  # the target exists and is the source
        _source(url="sqlite:///studies/confirm.db", name="confirm")
    _space(tmp_path / "c.yaml", hyper)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "studies").iterdir()}
    files = _files(tmp_path)
    assert main(["run", "--space", "c.yaml", "--warm-start", arg, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --warm-start: ") and rule in err[0], err
    assert _files(tmp_path) == files  # no new study file
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "studies").iterdir()} == before


def test_refused_on_an_existing_target_adds_no_trial(tmp_path, capsys):
    _source()
    space = _space(tmp_path / "c.yaml")
    open_study(space, build_storage("sqlite:///studies/confirm.db"), study_name="confirm")
    assert main(["run", "--space", "c.yaml", "--warm-start", "screen:x", "--quiet"]) == 2
    study = optuna.load_study(study_name="confirm", storage="sqlite:///studies/confirm.db")
    assert study.trials == [] and ATTR_WARM_START not in study.user_attrs


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_screen_then_confirm_with_two_commands(tmp_path, capsys):
    """README: screen at 32 px, then confirm at 48 px starting from the screen's top 2."""
    _space(tmp_path / "s.yaml", name="screen")
    _space(tmp_path / "c.yaml", name="confirm")
    assert main(["run", "--space", "s.yaml", "--n-trials", "3", "--quiet", "--threads", "1"]) == 0
    screen = optuna.load_study(study_name="screen", storage="sqlite:///studies/screen.db")
    top = [t.params for t in hpo.study.top_trials(screen, 2)]
    assert main(["run", "--space", "c.yaml", "--n-trials", "3", "--threads", "1",
                 "--warm-start", "screen:2", "--set", "image_size=48"]) == 0
    err = capsys.readouterr().err
    assert "warm start: 2 configuration(s) from screen:2 enqueued" in err
    confirm = optuna.load_study(study_name="confirm", storage="sqlite:///studies/confirm.db")
    trials = sorted(confirm.trials, key=lambda t: t.number)
    assert [t.params for t in trials[:2]] == top
    assert len(trials) == 3
    # a resume enqueues nothing again
    assert main(["run", "--space", "c.yaml", "--n-trials", "4", "--quiet", "--threads", "1",
                 "--warm-start", "screen:2", "--set", "image_size=48"]) == 0
    confirm = optuna.load_study(study_name="confirm", storage="sqlite:///studies/confirm.db")
    assert [t.user_attrs.get("warm_start") for t in sorted(confirm.trials, key=lambda t: t.number)
            ] == ["screen:2 #1", "screen:2 #2", None, None]
