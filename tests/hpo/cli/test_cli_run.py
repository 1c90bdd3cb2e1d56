"""`vcr-hpo run` in-process on real SQLite files: run, rerun, top-up, resume checks, bad input."""

from __future__ import annotations

import hashlib
import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpo.cli import main
from hpo.space import load_search_space
from hpo.study import sampler_seed

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)  # the default storage is ./studies/<study>.db


def _load(name="tiny", path="studies/tiny.db"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path}")


def _finished(study):
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # trains a tiny study, then tops it up
def test_run_rerun_and_top_up(tiny_space, tmp_path, capsys):
    space_file = tiny_space()
    space = load_search_space(space_file)
    assert main(["run", "--space", str(space_file)]) == 0
    out, err = capsys.readouterr()
    study = _load()
    assert len(study.trials) == 3 and len(_finished(study)) == 3
    assert study.trials[0].params == space.default_params()  # the baseline comes first
    attrs = study.user_attrs
    assert attrs["space_yaml"] == space_file.read_text()
    assert attrs["space_fingerprint"] == space.fingerprint
    assert attrs["space_canonical"] == json.loads(json.dumps(space.canonical()))
    assert attrs["vcr_hpo_version"] and attrs["baseline_enqueued"] is True
    assert study.metric_names == ["val_acc"]
    assert "3/3 trials" in err and "best trial #" in out and "best per backbone" in out
    for t in study.trials:  # the objective's metadata reached the storage
        assert set(t.user_attrs["feature_channels"]) == {"c2", "c3", "c4", "c5"}
        assert sorted(t.intermediate_values) == [0, 1]

    before = _digest(tmp_path / "studies/tiny.db")
    assert main(["run", "--space", str(space_file)]) == 0  # at the target: adds nothing
    assert len(_load().trials) == 3
    assert _digest(tmp_path / "studies/tiny.db") == before

    assert main(["run", "--space", str(space_file), "--n-trials", "5"]) == 0  # tops up
    study = _load()
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert len(_finished(study)) == 5 and study.user_attrs["n_trials"] == 5
    assert sum(1 for t in study.trials if t.params == space.default_params()) == 1  # baseline once
    # the resumed, seeded sampler drew new configurations instead of replaying trials 1-2
    early = {t.params["lr"] for t in study.trials[:3]}
    assert not early & {t.params["lr"] for t in study.trials[3:]}
    assert sampler_seed(7, 3, 0) != 7


def test_changed_space_is_refused_with_a_diff(tiny_space, tmp_path, capsys):
    space_file = tiny_space(epochs=1)
    assert main(["run", "--space", str(space_file), "--n-trials", "1"]) == 0
    db = tmp_path / "studies/tiny.db"
    before = _digest(db)
    text = space_file.read_text()
    space_file.write_text(text.replace("high: 1.0e-2", "high: 2.0e-2").replace(
        "choices: [resnet10t, mobilenetv3_large_100]", "choices: [resnet10t, resnet18]"))
    capsys.readouterr()
    assert main(["run", "--space", str(space_file), "--n-trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "started with another search space" in err and "--allow-space-change" in err
    assert "~ params.lr.high: 0.01 -> 0.02" in err
    assert '~ params.backbone.choices: ["resnet10t", "mobilenetv3_large_100"] -> ' \
           '["resnet10t", "resnet18"]' in err
    assert "Traceback" not in err
    assert len(_load().trials) == 1 and _digest(db) == before  # zero new trials, nothing written

    # the budget is not the space: a new n_trials in the YAML is a top-up, not a change
    space_file.write_text(text.replace("n_trials: 3", "n_trials: 1"))
    assert main(["run", "--space", str(space_file)]) == 0

    space_file.write_text(text.replace("high: 1.0e-2", "high: 2.0e-2"))
    assert main(["run", "--space", str(space_file), "--n-trials", "1", "--allow-space-change"]) == 0
    assert _load().user_attrs["space_canonical"]["params"]["lr"]["high"] == 0.02


def test_direction_mismatch_with_an_existing_study_exits_2(tiny_space, tmp_path, capsys):
    (tmp_path / "studies").mkdir()
    optuna.create_study(study_name="tiny", storage="sqlite:///studies/tiny.db", direction="minimize")
    before = _digest(tmp_path / "studies/tiny.db")
    assert main(["run", "--space", str(tiny_space())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimises ['minimize'], the space asks ['maximize']" in err[0]
    assert _digest(tmp_path / "studies/tiny.db") == before and not _load().trials


@pytest.mark.parametrize("args, expect", [
    (["--set", "bogus=1"], "--set bogus: bogus: not a trainer field"),
    (["--set", "epochs=abc"], "--set epochs: epochs: must be an integer"),
    (["--set", "epochs"], "--set: must be key=value"),
    (["--set", "lr=0.1"], "--set lr: is searched by the space"),
    (["--set", "backbone=resnet99"], "resnet99"),
    (["--data", "no/such/folder"], "no/such/folder"),
    (["--device", "tpu"], "--device: device: must be auto, cpu, cuda or cuda:N"),
    (["--storage", "sqlite:///no/such/dir/x.db"], "folder of the SQLite file does not exist"),
    (["--storage", "sqlite:///:memory:"], "in-memory SQLite"),
    (["--storage", "redis://localhost/0"], "unsupported database"),
    (["--study-name", "a/b"], "--study-name: must be a name of letters"),
    (["--n-trials", "0"], "--n-trials: must be > 0"),
    (["--workers", "x"], "--workers: must be a number > 0 or auto"),
    (["--space", "missing.yaml"], "search space file not found"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, expect, tiny_space, tmp_path, capsys):
    argv = ["run", "--space", str(tiny_space()), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert expect in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("env, expect", [
    ({"VCR_HPO_GRACE": "soon"}, "$VCR_HPO_GRACE: must be a whole number"),
    ({"VCR_HPO_HEARTBEAT": "5", "VCR_HPO_GRACE": "5"}, "must exceed the heartbeat interval"),
])
def test_bad_heartbeat_settings_exit_2(env, expect, tiny_space, tmp_path, capsys, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["run", "--space", str(tiny_space())]) == 2
    assert expect in capsys.readouterr().err
    assert not (tmp_path / "studies").exists()


def test_bad_space_lists_errors_and_creates_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: {name: bad}\nhyperparameters:\n  lr: {type: float, low: 1, high: 0}\n")
    assert main(["run", "--space", str(bad)]) == 2
    assert "lr" in capsys.readouterr().err
    assert not (tmp_path / "studies").exists()
