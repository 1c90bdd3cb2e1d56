"""The objective on real SQLite studies: reports, pruning, NaN and failures, user attrs."""

from __future__ import annotations

import re

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from PIL import Image

from backbones import create_backbone
from hpo.errors import ConfigError
from hpo.space import parse_search_space
from hpo.study import build_storage
from hpo.trial.objective import Objective, _reason, library_versions

pytestmark = pytest.mark.usefixtures("one_thread")  # tests._threads

TINY = {
    "synthetic_size": 80,
    "image_size": 32,
    "batch_size": 16,
    "epochs": 2,
    "device": "cpu",
    "scheduler": "none",
}


def _space(hyper: dict, *, fixed: dict | None = None, metrics=("val_acc",)):
    doc = {
        "study": {"name": "t", "metrics": list(metrics), "sampler": {"type": "Random", "seed": 0}},
        "hyperparameters": hyper,
        "fixed": {**TINY, **(fixed or {})},
    }
    return parse_search_space(yaml.safe_dump(doc), source="test.yaml")


def _study(tmp_path, space, pruner=None):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(
        storage=build_storage(url),
        study_name="t",
        directions=list(space.study.directions),
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=pruner or optuna.pruners.NopPruner(),
    )
    return study, url


@pytest.mark.parametrize("backbone", ["resnet18", "resnet10t"])
def test_user_attrs_read_back_from_sqlite(tmp_path, backbone):
    space = _space(
        {"lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
        fixed={"backbone": backbone, "fusion": "simple_concat"},
    )
    study, url = _study(tmp_path, space)
    seen = []
    study.optimize(Objective(space, on_epoch=lambda n, m: seen.append((n, m.epoch))), n_trials=1)

    (trial,) = optuna.load_study(study_name="t", storage=url).trials
    attrs = trial.user_attrs
    ref = create_backbone(backbone)
    assert trial.state == TrialState.COMPLETE
    assert attrs["feature_channels"] == ref.get_feature_channels()
    assert (
        attrs["feature_strides"]
        == ref.get_feature_strides()
        == {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
    )
    assert attrs["num_params"] > ref.num_params()  # backbone + head
    assert attrs["device"] == "cpu"
    assert attrs["versions"] == library_versions()
    assert set(attrs["versions"]) == {"vcr_hpo", "torch", "torchvision", "timm", "optuna"}
    assert len(attrs["epoch_seconds"]) == 2 and all(s > 0 for s in attrs["epoch_seconds"])
    assert len(attrs["images_per_s"]) == 2 and all(v > 0 for v in attrs["images_per_s"])
    assert "fail_reason" not in attrs
    # the value is the best epoch's val_acc; every epoch was reported
    assert set(trial.intermediate_values) == {0, 1}
    best = attrs["best_epoch"]
    assert trial.value == pytest.approx(trial.intermediate_values[best])
    assert trial.value == max(trial.intermediate_values.values())
    assert attrs["best_metrics"]["val_acc"] == pytest.approx(trial.value, abs=1e-5)
    assert seen == [(0, 0), (0, 1)]


def test_nan_loss_ends_pruned_with_reason_and_next_trial_runs(tmp_path):
    space = _space(
        {"lr": {"type": "categorical", "choices": [1.0e6, 1.0e-3]}}, fixed={"optimizer": "sgd"}
    )
    study, url = _study(tmp_path, space)
    study.enqueue_trial({"lr": 1.0e6})
    study.enqueue_trial({"lr": 1.0e-3})
    study.optimize(Objective(space), n_trials=2)

    nan_trial, next_trial = optuna.load_study(study_name="t", storage=url).trials
    assert nan_trial.state == TrialState.PRUNED
    reason = nan_trial.user_attrs["fail_reason"]
    assert reason.startswith("NonFiniteLossError: loss became")
    assert re.search(r"at epoch \d+ step \d+", reason)
    assert "lr=1e+06" in reason
    assert nan_trial.user_attrs["feature_channels"]["c5"] == 512  # set before training began
    assert next_trial.state == TrialState.COMPLETE and "fail_reason" not in next_trial.user_attrs
    assert 0 <= next_trial.value <= 1


def test_multi_objective_nan_fails_with_reason_and_values_follow_metric_order(tmp_path):
    space = _space(
        {"lr": {"type": "categorical", "choices": [1.0e6, 1.0e-3]}},
        fixed={"optimizer": "sgd"},
        metrics=("val_loss", "params_m", "latency_ms"),
    )
    assert space.study.directions == ("minimize", "minimize", "minimize")
    study, url = _study(tmp_path, space)
    study.enqueue_trial({"lr": 1.0e6})
    study.enqueue_trial({"lr": 1.0e-3})
    study.optimize(Objective(space), n_trials=2)  # no catch: NaN must not stop the study

    failed, done = optuna.load_study(study_name="t", storage=url).trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("NonFiniteLossError")
    assert done.state == TrialState.COMPLETE and done.intermediate_values == {}
    val_loss, params_m, latency = done.values
    assert val_loss == pytest.approx(done.user_attrs["best_metrics"]["val_loss"], abs=1e-5)
    assert params_m == pytest.approx(done.user_attrs["num_params"] / 1e6)
    assert 0 < latency < 10_000


def test_error_fails_trial_with_reason_and_study_goes_on_with_catch(tmp_path):
    # A folder that passes the cheap pre-flight but holds an undecodable image: a real failure
    # that only shows when the trial loads its data.
    bad = tmp_path / "cars"
    for name, rgb in (("red", (200, 20, 20)), ("blue", (20, 20, 200))):
        (bad / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), rgb).save(bad / name / f"{i}.png")
    (bad / "red" / "broken.jpg").write_bytes(b"not an image")
    space = _space(
        {"data": {"type": "categorical", "choices": [str(bad), "synthetic"]}}, fixed={"epochs": 1}
    )
    study, url = _study(tmp_path, space)
    study.enqueue_trial({"data": str(bad)})
    study.enqueue_trial({"data": "synthetic"})
    study.optimize(Objective(space), n_trials=2, catch=(Exception,))

    failed, done = optuna.load_study(study_name="t", storage=url).trials
    assert failed.state == TrialState.FAIL
    reason = failed.user_attrs["fail_reason"]
    assert reason.startswith("ConfigError: data: ") and "1 unreadable" in reason
    assert "broken.jpg" in reason
    assert done.state == TrialState.COMPLETE

    study.enqueue_trial({"data": str(bad)})
    with pytest.raises(ConfigError, match="broken.jpg"):
        study.optimize(Objective(space), n_trials=1)  # without catch Optuna re-raises


def test_pruner_stops_trial_after_report(tmp_path):
    space = _space({"lr": {"type": "float", "low": 1e-3, "high": 2e-3}}, fixed={"epochs": 3})
    study, url = _study(tmp_path, space, pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    epochs = []
    study.optimize(Objective(space, on_epoch=lambda n, m: epochs.append(m.epoch)), n_trials=1)

    (trial,) = optuna.load_study(study_name="t", storage=url).trials
    assert trial.state == TrialState.PRUNED
    assert epochs == [0] and list(trial.intermediate_values) == [0]
    assert len(trial.user_attrs["epoch_seconds"]) == 1
    assert "fail_reason" not in trial.user_attrs  # pruned by the pruner, not for a cause


def test_overrides_win_over_params_and_fixed(tmp_path):
    space = _space({"dropout": {"type": "float", "low": 0.0, "high": 0.5}}, fixed={"epochs": 3})
    study, _ = _study(tmp_path, space)
    epochs = []
    study.optimize(
        Objective(space, overrides={"epochs": 1}, on_epoch=lambda n, m: epochs.append(m.epoch)),
        n_trials=1,
    )
    assert epochs == [0]


def test_out_of_memory_reason_says_what_to_lower():
    reason = _reason(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert reason.startswith("CUDA out of memory") and "batch_size" in reason
    assert _reason(RuntimeError("boom\nsecond line")) == "RuntimeError: boom"
    assert len(_reason(ValueError("x" * 1000))) == 300
