"""`study.trial_length: compute`: every trial trains the measured compute of the default's epochs
(hpo.trial.equal_compute)."""

from __future__ import annotations

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

import hpo
from hpo.attrs import ATTR_STEP_COSTS, EPOCH_SECONDS, STEP_COST, TRIAL_EPOCHS
from hpo.cli import main
from hpo.errors import SearchSpaceError
from hpo.outputs.configs import trial_config
from hpo.space import parse_search_space
from hpo.study import build_storage, open_study
from hpo.train import step_seconds
from hpo.trial.equal_compute import MAX_FACTOR, cost_key, equal_compute_epochs, trial_epochs

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

TINY = {"synthetic_size": 96, "image_size": 32, "epochs": 2, "device": "cpu",
        "batch_size": 32, "pretrained": False}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    torch.set_num_threads(before)


def _doc(**study) -> dict:
    return {
        "study": {"name": "eq", "metric": "val_acc", "sampler": {"type": "Random", "seed": 3},
                  "trial_length": "compute", **study},
        "hyperparameters": {
            "backbone": {"type": "categorical", "choices": ["resnet18", "resnet10t"],
                         "default": "resnet18"},
            "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True, "default": 3e-3}},
        "fixed": dict(TINY),
    }


def _space(**study):
    doc = _doc(**study)
    doc["study"] = {k: v for k, v in doc["study"].items() if v is not None}
    return parse_search_space(yaml.safe_dump(doc), source="eq.yaml")


# ------------------------------------------------------------------------------ the rule


@pytest.mark.parametrize(("epochs", "default", "cost", "warmup", "expected"), [
    (3, 2.0, 1.0, 0, 6),      # half the cost per image: twice the epochs
    (3, 1.0, 2.0, 0, 2),      # twice the cost: 1.5 epochs, rounded half up
    (3, 1.0, 1.0, 0, 3),      # the default itself
    (3, 1.0, 10.0, 0, 1),     # never below one epoch
    (3, 1.0, 10.0, 2, 3),     # nor below warmup_epochs + 1
    (3, 100.0, 1.0, 0, 3 * MAX_FACTOR),  # nor above MAX_FACTOR x the default's
    (10, 1.0, 0.58, 0, 17),
])
def test_epochs_follow_the_cost_ratio(epochs, default, cost, warmup, expected):
    assert equal_compute_epochs(epochs, default, cost, warmup_epochs=warmup) == expected


def test_costs_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        equal_compute_epochs(3, 0.0, 1.0)


class _Study:  # what trial_epochs reads and writes of an optuna.Study
    def __init__(self, attrs=None):
        self.user_attrs = dict(attrs or {})

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def test_costs_are_measured_once_per_key_and_kept():
    space = _space()
    default = space.config_for(space.baseline())
    fast = space.config_for({**space.baseline(), "backbone": "resnet10t"})
    measured = []

    def measure(cfg):
        measured.append(cfg.backbone)
        return {"resnet18": 2e-3, "resnet10t": 1e-3}[cfg.backbone]

    study = _Study()
    assert trial_epochs(study, fast, default, measure) == 4
    assert trial_epochs(study, fast, default, measure) == 4
    assert trial_epochs(study, default, default, measure) == 2
    assert sorted(measured) == ["resnet10t", "resnet18"]  # each key once
    assert study.user_attrs[ATTR_STEP_COSTS] == {cost_key(default): 2e-3, cost_key(fast): 1e-3}


def test_another_workers_costs_win_over_a_second_measurement():
    space = _space()
    default = space.config_for(space.baseline())
    fast = space.config_for({**space.baseline(), "backbone": "resnet10t"})

    class Racing(_Study):  # another worker stored its measurement meanwhile
        @property
        def user_attrs(self):
            return self._attrs

        @user_attrs.setter
        def user_attrs(self, value):
            self._attrs = value

    study = Racing()
    calls = []

    def measure(cfg):
        calls.append(cfg.backbone)
        if len(calls) == 2:
            study._attrs = {ATTR_STEP_COSTS: {cost_key(fast): 0.5e-3}}
        return {"resnet18": 2e-3, "resnet10t": 1e-3}[cfg.backbone]

    assert trial_epochs(study, fast, default, measure) == 8  # 2 x 2e-3 / 0.5e-3
    assert study.user_attrs[ATTR_STEP_COSTS][cost_key(fast)] == 0.5e-3


def test_the_key_names_what_a_step_costs():
    space = _space()
    cfg = space.config_for(space.baseline())
    key = cost_key(cfg)
    assert key.startswith("resnet18|batch 32|32px|") and key.endswith("|cpu")
    for change in ({"backbone": "resnet10t"}, {"batch_size": 64}, {"image_size": 64},
                   {"freeze_backbone": True}, {"fusion": "simple_concat"}):
        assert cost_key(cfg.replace(**change)) != key, change
    assert cost_key(cfg.replace(lr=0.01, seed=5)) == key  # the step costs the same


def test_step_seconds_measures_a_real_step():
    space = _space()
    got = step_seconds(space.config_for(space.baseline()))
    assert 0 < got < 5  # seconds per image of resnet18 at 32 px on a CPU


# ------------------------------------------------------------------------------ the grammar


def test_trial_length_is_in_the_fingerprint_only_when_set():
    plain = _space(trial_length=None)
    assert plain.study.trial_length == "epochs"
    assert "trial_length" not in plain.canonical()["study"]  # older studies resume unchanged
    assert _space().canonical()["study"]["trial_length"] == "compute"
    assert _space().fingerprint != plain.fingerprint


def test_choose_is_left_out_of_the_fingerprint():
    """study.choose picks among finished trials: switching it resumes the same study."""
    chosen = _space(choose="cheapest_within_1se")
    assert chosen.study.choose == "cheapest_within_1se" and _space().study.choose == "best"
    assert "choose" not in chosen.canonical()["study"]
    assert chosen.fingerprint == _space().fingerprint


@pytest.mark.parametrize(("doc_change", "path", "rule"), [
    ({"study": {"trial_length": "time"}}, "study.trial_length", "must be one of epochs, compute"),
    ({"study": {"trial_length": [1]}}, "study.trial_length", "must be one of epochs, compute"),
    ({"epochs_param": True}, "hyperparameters.epochs", "is set per trial by trial_length"),
])
def test_bad_trial_length_is_one_line(doc_change, path, rule):
    doc = _doc()
    doc["study"].update(doc_change.get("study", {}))
    if doc_change.get("epochs_param"):
        doc["fixed"].pop("epochs")
        doc["hyperparameters"]["epochs"] = {"type": "int", "low": 1, "high": 4, "default": 2}
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(yaml.safe_dump(doc), source="eq.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"eq.yaml: {path}") and rule in lines[0], lines[0]


def test_validate_cli_exits_2_with_one_line(tmp_path, capsys):
    doc = _doc(trial_length="seconds")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", "--space", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.trial_length" in err[0] and "epochs, compute" in err[0], err


# ------------------------------------------------------------------------------ a real run


def test_a_cheaper_backbone_trains_more_epochs_and_exports_them(tmp_path):
    """Costs kept in the study (as an earlier run left them): resnet10t at half the cost per
    image trains twice the default's epochs, records them, and its exported config has them."""
    space = _space()
    url = f"sqlite:///{tmp_path / 'eq.db'}"
    study = open_study(space, build_storage(url), study_name="eq")
    default = space.config_for(space.baseline())
    fast = space.config_for({**space.baseline(), "backbone": "resnet10t"})
    kept = {cost_key(default): 2e-3, cost_key(fast): 1e-3}
    study.set_user_attr(ATTR_STEP_COSTS, kept)
    result = hpo.run_study(space, storage=url, study_name="eq", n_trials=4, threads=1)
    trials = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    seen = {t.params["backbone"] for t in trials}
    assert seen == {"resnet18", "resnet10t"}, seen  # the seed draws both
    for t in trials:
        want = 2 if t.params["backbone"] == "resnet18" else 4
        assert t.user_attrs[TRIAL_EPOCHS] == want
        assert len(t.user_attrs[EPOCH_SECONDS]) == want  # it trained them
        assert trial_config(result.study, t).epochs == want
        assert t.user_attrs[STEP_COST] == kept[cost_key(trial_config(result.study, t))]
    assert result.study.user_attrs[ATTR_STEP_COSTS] == kept  # nothing measured again


def test_a_run_measures_each_configs_cost_once(tmp_path):
    space = _space()
    url = f"sqlite:///{tmp_path / 'eq.db'}"
    result = hpo.run_study(space, storage=url, study_name="eq", n_trials=3, threads=1)
    costs = result.study.user_attrs[ATTR_STEP_COSTS]
    keys = {cost_key(trial_config(result.study, t)) for t in result.study.trials}
    assert set(costs) == keys and all(v > 0 for v in costs.values()), costs
    for t in result.study.trials:
        cfg = trial_config(result.study, t)
        default = space.config_for(space.baseline())
        assert t.user_attrs[TRIAL_EPOCHS] == equal_compute_epochs(
            2, costs[cost_key(default)], costs[cost_key(cfg)])


def test_epochs_spaces_train_the_configs_epochs(tmp_path):
    space = _space(trial_length=None)
    result = hpo.run_study(space, storage=f"sqlite:///{tmp_path / 'e.db'}", study_name="eq",
                           n_trials=2, threads=1)
    assert ATTR_STEP_COSTS not in result.study.user_attrs
    for t in result.study.trials:
        assert TRIAL_EPOCHS not in t.user_attrs and len(t.user_attrs[EPOCH_SECONDS]) == 2
