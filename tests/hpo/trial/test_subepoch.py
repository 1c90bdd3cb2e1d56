"""Reports within an epoch (`study.report_every`): steps, pruning, validation, resume."""

from __future__ import annotations

import io

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

import hpo
from hpo.algorithms import AlgorithmSpec, build_pruner
from hpo.cli import main
from hpo.config import TrainConfig
from hpo.errors import SearchSpaceError
from hpo.space import parse_search_space
from hpo.study import SpaceChangedError, build_storage, open_study
from hpo.train import build_state, train_epoch, train_model
from hpo.trial.objective import Objective
from hpo.trial.subepoch import SubEpochReports, proxy_args, report_batches, scale_pruner

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

TINY = {"synthetic_size": 200, "image_size": 32, "epochs": 2, "device": "cpu",
        "scheduler": "none", "backbone": "resnet10t", "pretrained": False}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # several test processes share two cores
    monkeypatch.chdir(tmp_path)
    yield
    torch.set_num_threads(before)


def _doc(study: dict | None = None, fixed: dict | None = None, hyper: dict | None = None) -> dict:
    return {
        "study": {"name": "sub", "metric": "val_acc", "sampler": {"type": "Random", "seed": 0},
                  "report_every": 0.25, **(study or {})},
        "hyperparameters": hyper or {"lr": {"type": "float", "low": 1e-4, "high": 1e-2,
                                            "log": True, "default": 3e-3}},
        "fixed": {**TINY, **(fixed or {})},
    }


def _space(**kw):
    return parse_search_space(yaml.safe_dump(_doc(**kw)), source="sub.yaml")


def _collect(cfg: TrainConfig, every=0.25, **train_kw):
    """Train with mid-epoch reports; [(step, value, 'mid'|'end')] in the order reported."""
    got: list[tuple[int, float, str]] = []
    r = SubEpochReports(every, 64, "val_acc", lambda step, v: got.append((step, v, "mid")))
    train_model(cfg, on_start=r.start, on_batch=r.on_batch,
                on_epoch=lambda m: got.append((r.epoch_step(m.epoch), m.val_acc, "end")),
                **train_kw)
    return got


# ------------------------------------------------------------------------------ the schedule


@pytest.mark.parametrize("every, steps, n, expected", [
    (0.25, 10, 320, {3: 80, 5: 160, 8: 240}),  # batch 32: after 3 batches 96 >= 80 images
    (0.5, 4, 100, {2: 50}),
    (1.0, 10, 320, {}),                          # the epoch end only
    (0.3, 10, 100, {3: 30, 6: 60, 9: 90}),       # 0.3 * 3 = 0.8999...: still below the end
    (0.25, 2, 64, {1: 16}),                      # 0.5 falls on batch 1 too: reported once
    (0.1, 1, 32, {}),                            # one batch: nothing before the epoch end
])
def test_report_batches_table(every, steps, n, expected):
    assert report_batches(every, steps, n) == expected


def test_report_steps_do_not_depend_on_batch_size():
    """A 200-image source splits into a training split of n; the steps are k/4 * n for any batch."""
    for batch, steps in ((16, 9), (32, 4), (64, 2)):
        points = report_batches(0.25, steps, 159)
        assert set(points.values()) <= {40, 80, 119}
    assert report_batches(0.25, 9, 159) == {3: 40, 5: 80, 7: 119}
    assert report_batches(0.25, 4, 159) == {1: 40, 2: 80, 3: 119}


def test_scale_pruner_turns_epochs_into_images():
    sha = AlgorithmSpec("SuccessiveHalving", {"min_resource": 0.25, "reduction_factor": 3})
    assert dict(scale_pruner(sha, 400).args) == {"min_resource": 100, "reduction_factor": 3}
    hb = AlgorithmSpec("Hyperband", {"min_resource": 1, "max_resource": "auto"})
    assert dict(scale_pruner(hb, 400).args) == {"min_resource": 400, "max_resource": "auto"}
    med = AlgorithmSpec("MedianPruner", {"n_warmup_steps": 0, "n_startup_trials": 2})
    assert dict(scale_pruner(med, 400).args) == {"n_warmup_steps": 0, "n_startup_trials": 2}
    nested = AlgorithmSpec("Patient", {"patience": 2, "wrapped_pruner": sha})
    scaled = scale_pruner(nested, 400)
    assert scaled.args["patience"] == 2  # patience counts reports, not images
    assert dict(scaled.args["wrapped_pruner"].args)["min_resource"] == 100
    assert scale_pruner(sha, 2).args["min_resource"] == 1  # never 0 images
    build_pruner(scaled)  # Optuna accepts what comes out
    assert proxy_args("MedianPruner", {"n_warmup_steps": 0.5}) == ({"n_warmup_steps": 500}, [])


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("study, path, rule", [
    ({"report_every": 0}, "study.report_every", "must be a fraction of an epoch in (0, 1]"),
    ({"report_every": 1.5}, "study.report_every", "must be a fraction of an epoch in (0, 1]"),
    ({"report_every": -0.25}, "study.report_every", "must be a fraction of an epoch in (0, 1]"),
    ({"report_every": "0.25"}, "study.report_every", "must be a fraction of an epoch in (0, 1]"),
    ({"report_every": True}, "study.report_every", "must be a fraction of an epoch in (0, 1]"),
    ({"report_every": [0.25]}, "study.report_every", "must be a fraction of an epoch in (0, 1]"),
    ({"report_every": 0.5, "report_val_images": 0}, "study.report_val_images",
     "must be a whole number of images >= 1"),
    ({"report_every": 0.5, "report_val_images": 2.5}, "study.report_val_images",
     "must be a whole number of images >= 1"),
    ({"report_every": None, "report_val_images": 64}, "study.report_val_images",
     "applies to reports within an epoch only"),
    ({"metric": None, "metrics": ["val_acc", "latency_ms"], "pruner": None},
     "study.report_every", "Optuna cannot prune a multi-objective study"),
    ({"metric": "params_m"}, "study.report_every", "needs a metric measured while training"),
    ({"pruner": {"type": "MedianPruner", "n_warmup_steps": "one"}}, "study.pruner.n_warmup_steps",
     "must be an integer"),
    ({"pruner": {"type": "MedianPruner", "n_warmup_steps": -1}}, "study.pruner",
     "cannot be negative"),
])
def test_bad_report_every_is_one_line(study, path, rule):
    doc = _doc(study=study)
    doc["study"] = {k: v for k, v in doc["study"].items() if v is not None or k == "report_every"}
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(yaml.safe_dump(doc), source="sub.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"sub.yaml: {path}") and rule in lines[0], lines[0]


def test_fractional_pruner_epochs_need_report_every():
    doc = _doc(study={"pruner": {"type": "SuccessiveHalving", "min_resource": 0.25}})
    assert parse_search_space(yaml.safe_dump(doc)).study.pruner.args["min_resource"] == 0.25
    del doc["study"]["report_every"]
    with pytest.raises(SearchSpaceError, match="min_resource"):
        parse_search_space(yaml.safe_dump(doc))


def test_validate_cli_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_doc(study={"report_every": 0})))
    assert main(["validate", "--space", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.report_every" in err[0] and "got 0" in err[0], err


def test_spaces_without_report_every_keep_their_fingerprint():
    doc = _doc()
    del doc["study"]["report_every"]
    plain = parse_search_space(yaml.safe_dump(doc))
    assert "report_every" not in plain.canonical()["study"]  # old studies resume as before
    with_it = _space()
    assert with_it.canonical()["study"]["report_every"] == 0.25
    assert with_it.canonical()["study"]["report_val_images"] == 512
    assert with_it.fingerprint != plain.fingerprint


def test_changing_report_every_on_resume_is_refused(tmp_path):
    """Steps change unit with report_every: a pruner would compare epochs with images."""
    db = build_storage(f"sqlite:///{tmp_path / 's.db'}")
    open_study(_space(), db, study_name="sub")
    open_study(_space(), db, study_name="sub")  # same space: resumes
    with pytest.raises(SpaceChangedError, match=r"study.report_every: 0.25 -> 0.5"):
        open_study(_space(study={"report_every": 0.5}), db, study_name="sub")


# ------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_steps_are_images_seen_and_equal_across_batch_sizes():
    runs = {b: _collect(TrainConfig.from_dict({**TINY, "batch_size": b})) for b in (16, 32)}
    steps = {b: [s for s, _, _ in got] for b, got in runs.items()}
    n = steps[16][3]  # the first epoch end: the training split's size
    assert steps[16] == steps[32] == [round(n / 4), round(n / 2), round(3 * n / 4), n,
                                      n + round(n / 4), n + round(n / 2), n + round(3 * n / 4),
                                      2 * n]
    assert [k for _, _, k in runs[16]] == ["mid", "mid", "mid", "end"] * 2


@pytest.mark.slow
def test_reports_leave_training_and_the_epoch_end_value_unchanged():
    """Scoring the subset mid-epoch draws no random number and keeps train mode: same run."""
    cfg = TrainConfig.from_dict({**TINY, "batch_size": 16, "dropout": 0.3, "augment": True})
    with_reports = [(s, v) for s, v, k in _collect(cfg) if k == "end"]
    plain = []
    train_model(cfg, on_epoch=lambda m: plain.append(m.val_acc))
    assert [v for _, v in with_reports] == plain


@pytest.mark.slow
def test_resumed_trial_reports_the_same_steps():
    """A trial resumed at an epoch end (train_model start=) reports what an uninterrupted one does."""
    cfg = TrainConfig.from_dict({**TINY, "batch_size": 16, "epochs": 3})
    whole = _collect(cfg)

    first: list[tuple[int, float, str]] = []
    r = SubEpochReports(0.25, 64, "val_acc", lambda step, v: first.append((step, v, "mid")))
    state = build_state(cfg)
    r.start(state.info)
    m = train_epoch(state, on_batch=r.on_batch)
    first.append((r.epoch_step(m.epoch), m.val_acc, "end"))
    buf = io.BytesIO()
    torch.save(state.state_dict(), buf)
    del state

    again = build_state(cfg)
    buf.seek(0)
    again.load_state_dict(torch.load(buf, weights_only=True))
    rest = _collect(cfg, start=again)
    assert [s for s, _, _ in first + rest] == [s for s, _, _ in whole]
    assert first + rest == whole  # values too: the CPU resume is exact


@pytest.mark.slow
def test_objective_reports_images_and_returns_the_epoch_end_value(tmp_path):
    space = _space(fixed={"epochs": 1, "batch_size": 32})
    study = optuna.create_study(storage=build_storage(f"sqlite:///{tmp_path / 'o.db'}"),
                                direction="maximize")
    study.optimize(Objective(space), n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE
    steps = sorted(t.intermediate_values)
    n = steps[-1]
    assert steps == [round(n / 4), round(n / 2), round(3 * n / 4), n]
    assert t.value == t.intermediate_values[n]  # the full validation at the epoch end
    assert t.user_attrs["report_seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("pruner", [
    {"type": "MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0},
    {"type": "SuccessiveHalving", "min_resource": 0.25, "reduction_factor": 2},
])
def test_bad_lr_is_pruned_before_its_first_epoch_ends(tmp_path, pruner):
    space = _space(
        study={"pruner": pruner, "report_every": 0.25},
        fixed={"epochs": 2, "batch_size": 16, "synthetic_size": 400, "optimizer": "sgd",
               "momentum": 0.9},
        hyper={"lr": {"type": "float", "low": 1e-7, "high": 0.1, "log": True, "default": 0.05}})
    url = f"sqlite:///{tmp_path / 'p.db'}"
    first = hpo.run_study(space, storage=url, n_trials=1, threads=1)
    assert first.study.trials[0].state == TrialState.COMPLETE  # the baseline (default lr)
    first.study.enqueue_trial({"lr": 1e-7})
    result = hpo.run_study(space, storage=url, n_trials=2, threads=1)
    good, bad = result.study.trials
    n = max(good.intermediate_values) // 2  # steps of an epoch end
    assert bad.params["lr"] == 1e-7
    assert bad.state == TrialState.PRUNED, bad.intermediate_values
    assert "fail_reason" not in bad.user_attrs  # the pruner's decision, not a NaN loss
    assert max(bad.intermediate_values) < n  # before its first epoch ended
