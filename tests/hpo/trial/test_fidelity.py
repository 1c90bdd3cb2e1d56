"""`study.fidelity: seconds` / `compute`: pruner steps are seconds of training, or epochs of the
default's measured compute, on a fixed grid (hpo.trial.fidelity)."""

from __future__ import annotations

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

import hpo
from hpo.cli import main
from hpo.errors import SearchSpaceError
from hpo.space import parse_search_space
from hpo.study import SpaceChangedError, build_storage, open_study
from hpo.trial.fidelity import (
    DEFAULT_REPORT_SECONDS,
    TRAIN_EPOCHS_ATTR,
    TRAIN_SECONDS_ATTR,
    GridReports,
    grid_reports,
    refit_seconds,
    train_seconds,
)

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage")]

TINY = {"synthetic_size": 400, "image_size": 32, "epochs": 3, "device": "cpu",
        "scheduler": "none", "batch_size": 32, "pretrained": False}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # several test processes share two cores
    monkeypatch.chdir(tmp_path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    torch.set_num_threads(before)


def _doc(study: dict | None = None) -> dict:
    return {
        "study": {"name": "secs", "metric": "val_acc", "sampler": {"type": "Random", "seed": 0},
                  "fidelity": "seconds", "report_seconds": 1, **(study or {})},
        "hyperparameters": {
            "backbone": {"type": "categorical", "choices": ["resnet10t", "mobilenetv3_large_100"],
                         "default": "resnet10t"},
            "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True, "default": 3e-3}},
        "fixed": dict(TINY),
    }


def _space(**study):
    doc = _doc(study)
    doc["study"] = {k: v for k, v in doc["study"].items() if v is not None}
    return parse_search_space(yaml.safe_dump(doc), source="secs.yaml")


# ------------------------------------------------------------------------------ the grid


@pytest.mark.parametrize("every, epochs, expected", [
    # epoch 0 ends at 2.5 s: nothing known at 1 or 2; at 3, 4, 5 epoch 0's value; 5.0 is epoch 1's
    (1, [(2.5, 0.1), (2.5, 0.2)], [(3, 0.1), (4, 0.1), (5, 0.2)]),
    # a grid point on an epoch's end gets that epoch's value
    (1, [(1.0, 0.1), (1.0, 0.2), (1.0, 0.3)], [(1, 0.1), (2, 0.2), (3, 0.3)]),
    # several epochs between two points: the latest one ended carries
    (5, [(1.5, 0.1), (1.5, 0.2), (1.5, 0.3), (1.5, 0.4)], [(5, 0.3)]),
    # a long epoch passes several points with the value before it
    (2, [(1.0, 0.1), (6.5, 0.2), (1.0, 0.3)], [(2, 0.1), (4, 0.1), (6, 0.1), (8, 0.2)]),
    (10, [(3.0, 0.1), (3.0, 0.2)], []),  # a trial shorter than the grid reports nothing
])
def test_grid_reports_carry_the_value_known_at_each_point(every, epochs, expected):
    clock = GridReports(every)
    got = [r for seconds, value in epochs for r in clock.epoch_end(seconds, value)]
    assert got == expected
    assert clock.elapsed == pytest.approx(sum(s for s, _ in epochs))


def test_replayed_epochs_give_the_same_reports_then_go_on():
    """A resumed trial feeds its origin's recorded epochs first: same steps, same clock."""
    epochs = [(1.3, 0.1), (0.9, 0.4), (1.7, 0.5), (1.1, 0.6)]
    whole = GridReports(1)
    straight = [whole.epoch_end(s, v) for s, v in epochs]
    origin, retry = GridReports(1), GridReports(1)
    told = [origin.epoch_end(s, v) for s, v in epochs[:2]]
    replayed = [retry.epoch_end(s, v) for s, v in epochs[:2]]
    assert replayed == told == straight[:2]
    assert [retry.epoch_end(s, v) for s, v in epochs[2:]] == straight[2:]


def test_grid_reports_follows_the_study():
    assert grid_reports(_space(fidelity=None, report_seconds=None).study) is None
    clock = grid_reports(_space(report_seconds=7).study)
    assert isinstance(clock, GridReports) and clock.every == 7
    assert grid_reports(_space(report_seconds=None).study).every == DEFAULT_REPORT_SECONDS
    with pytest.raises(ValueError, match="whole number of seconds"):
        GridReports(0)
    compute = grid_reports(_space(fidelity="compute", report_seconds=None).study, 0.5)
    assert compute.every == 1 and compute.per_epoch == 0.5
    with pytest.raises(ValueError, match="cost ratio"):
        grid_reports(_space(fidelity="compute", report_seconds=None).study)


@pytest.mark.parametrize("ratio, expected", [
    # half the default's cost per image: a default epoch of compute every two of its epochs
    (0.5, [(1, 0.2), (2, 0.4)]),
    # the default itself: one report per epoch, at its end
    (1.0, [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]),
    # 1.5x the cost: point 1 falls inside epoch 1 (nothing known yet), point 2 inside epoch 2
    (1.5, [(2, 0.1), (3, 0.2), (4, 0.2), (5, 0.3), (6, 0.4)]),
])
def test_a_compute_clock_counts_default_epochs_whatever_the_seconds(ratio, expected):
    clock = GridReports(1, per_epoch=ratio)
    # measured seconds vary with load; a compute clock ignores them
    seconds = [9.0, 0.1, 3.0, 40.0]
    got = [r for s, v in zip(seconds, [0.1, 0.2, 0.3, 0.4]) for r in clock.epoch_end(s, v)]
    assert got == expected
    assert clock.elapsed == pytest.approx(4 * ratio)


def test_refit_seconds_from_the_trial_attrs():
    attrs = train_seconds([2.0, 1.0, 1.5])
    assert attrs == {TRAIN_SECONDS_ATTR: 4.5, TRAIN_EPOCHS_ATTR: 3}
    assert refit_seconds(attrs, 9) == pytest.approx(13.5)
    assert refit_seconds({}, 9) is None  # failed before an epoch: nothing measured


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("study, path, rule", [
    ({"fidelity": "time"}, "study.fidelity", "must be one of epochs, seconds, compute"),
    ({"fidelity": ["seconds"]}, "study.fidelity", "must be one of epochs, seconds, compute"),
    ({"report_seconds": 0}, "study.report_seconds", "must be a whole number of seconds >= 1"),
    ({"report_seconds": 2.5}, "study.report_seconds", "must be a whole number of seconds >= 1"),
    ({"report_seconds": "10"}, "study.report_seconds", "must be a whole number of seconds >= 1"),
    ({"fidelity": "epochs"}, "study.report_seconds", "applies to fidelity: seconds only"),
    ({"report_every": 0.25}, "study.report_every", "counts fractions of an epoch"),
    ({"metric": None, "metrics": ["val_acc", "latency_ms"]}, "study.fidelity",
     "Optuna cannot prune a multi-objective study"),
    ({"metric": "params_m"}, "study.fidelity", "needs a metric measured while training"),
    ({"report_seconds": 10, "pruner": {"type": "SuccessiveHalving", "min_resource": 1}},
     "study.pruner.min_resource", "must be a multiple of report_seconds (10)"),
    ({"report_seconds": 10, "pruner": {"type": "MedianPruner", "n_warmup_steps": 0.5}},
     "study.pruner.n_warmup_steps", "counts whole seconds of training"),
    ({"report_seconds": 10, "pruner": {"type": "Hyperband", "min_resource": 10,
                                       "max_resource": 25}},
     "study.pruner.max_resource", "must be a multiple of report_seconds (10)"),
    ({"report_seconds": 5, "pruner": {"type": "Patient", "patience": 1, "wrapped_pruner": {
        "type": "SuccessiveHalving", "min_resource": 2}}},
     "study.pruner.wrapped_pruner.min_resource", "must be a multiple of report_seconds (5)"),
    ({"pruner": {"type": "Paired", "base": {"type": "MedianPruner"}}},
     "study.pruner.type", "pairs per-image records at epoch steps"),
    ({"fidelity": "compute"}, "study.report_seconds", "applies to fidelity: seconds only"),
    ({"fidelity": "compute", "report_seconds": None, "report_every": 0.5},
     "study.report_every", "with fidelity: compute reports fall on its own grid"),
    ({"fidelity": "compute", "report_seconds": None,
      "pruner": {"type": "SuccessiveHalving", "min_resource": 0.5}},
     "study.pruner.min_resource", "counts whole epochs of the default's compute"),
    ({"fidelity": "compute", "report_seconds": None,
      "pruner": {"type": "Paired", "base": {"type": "MedianPruner"}}},
     "study.pruner.type", "not with fidelity: compute"),
    ({"fidelity": "compute", "report_seconds": None, "metric": "params_m"}, "study.fidelity",
     "needs a metric measured while training"),
])
def test_bad_fidelity_is_one_line(study, path, rule):
    with pytest.raises(SearchSpaceError) as info:
        _space(**study)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"secs.yaml: {path}") and rule in lines[0], lines[0]


def test_pruner_args_in_seconds_are_accepted_as_written():
    space = _space(report_seconds=10, pruner={"type": "SuccessiveHalving", "min_resource": 30.0,
                                              "reduction_factor": 3})
    assert dict(space.study.pruner.args) == {"min_resource": 30, "reduction_factor": 3}
    hb = _space(report_seconds=10, pruner={"type": "Hyperband", "min_resource": 10,
                                           "max_resource": 600})
    assert hb.study.pruner.args["max_resource"] == 600
    med = _space(pruner={"type": "MedianPruner", "n_warmup_steps": 0, "interval_steps": 3})
    assert med.study.pruner.args["interval_steps"] == 3


def test_validate_cli_exits_2_with_one_line(tmp_path, capsys):
    doc = _doc({"fidelity": "wallclock"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", "--space", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.fidelity" in err[0] and "epochs, seconds, compute" in err[0], err


def test_epoch_spaces_keep_their_fingerprint_and_a_change_of_unit_is_refused(tmp_path):
    plain = _space(fidelity=None, report_seconds=None)
    assert plain.study.fidelity == "epochs"
    assert "fidelity" not in plain.canonical()["study"]  # old studies resume as before
    secs = _space()
    assert secs.canonical()["study"]["fidelity"] == "seconds"
    assert secs.canonical()["study"]["report_seconds"] == 1
    db = build_storage(f"sqlite:///{tmp_path / 's.db'}")
    open_study(plain, db, study_name="secs")
    with pytest.raises(SpaceChangedError, match="fidelity"):  # a pruner would mix the units
        open_study(secs, db, study_name="secs")


# ------------------------------------------------------------------------------ equal time wins


def _trial(study, space, epochs: list[tuple[float, float]], ratio: float | None = None):
    """One trial told through real storage: the objective's reporting loop on given timings
    (`ratio`: with fidelity: compute, its cost per image over the default's)."""
    trial = study.ask()
    clock = grid_reports(space.study, ratio)
    try:
        for epoch, (seconds, value) in enumerate(epochs):
            if clock is None:  # epochs fidelity: what the objective reports then
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
                continue
            for step, known in clock.epoch_end(seconds, value):
                trial.report(known, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, epochs[-1][1])
    return study.trials[trial.number]


ACCURACY = [0.50, 0.60, 0.70, 0.80]  # the same per epoch for both backbones


@pytest.mark.parametrize("pruner", [
    {"type": "SuccessiveHalving", "min_resource": 2, "reduction_factor": 2},
    {"type": "MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0},
])
def test_fast_backbone_wins_its_rung_at_equal_time(tmp_path, pruner):
    """Same accuracy per epoch; one takes 1 s an epoch, the other 2 s: at 2 s of training the
    fast one has 0.60, the slow one 0.50. The slow one is pruned there, the fast one kept."""
    space = _space(pruner=pruner)
    db = build_storage(f"sqlite:///{tmp_path / 'rungs.db'}")
    study = open_study(space, db, study_name="secs")  # the pruner the space builds
    fast = _trial(study, space, [(1.0, a) for a in ACCURACY])
    slow = _trial(study, space, [(2.0, a) for a in ACCURACY])
    assert fast.state == TrialState.COMPLETE
    assert slow.state == TrialState.PRUNED, slow.intermediate_values
    assert max(slow.intermediate_values) == 2  # at the first rung / report it had a value
    assert slow.intermediate_values[2] < fast.intermediate_values[2]  # compared at equal time
    if pruner["type"] == "SuccessiveHalving":
        assert (slow.system_attrs["completed_rung_0"]
                < fast.system_attrs["completed_rung_0"])  # ranked below at the rung
    again = optuna.load_study(study_name="secs", storage=f"sqlite:///{tmp_path / 'rungs.db'}")
    assert [t.state for t in again.trials] == [TrialState.COMPLETE, TrialState.PRUNED]


@pytest.mark.parametrize("pruner", [
    {"type": "SuccessiveHalving", "min_resource": 1, "reduction_factor": 2},
    {"type": "MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0},
])
def test_cheap_backbone_wins_its_rung_at_equal_compute(tmp_path, pruner):
    """fidelity: compute. Same accuracy per epoch; one backbone costs half the default's per
    image, the other what the default costs: at one default epoch of compute the cheap one has
    trained two epochs (0.60), the other one (0.50), whatever the seconds measured (here the
    cheap one's epochs took longer on the clock). The other one is pruned there."""
    space = _space(fidelity="compute", report_seconds=None, pruner=pruner)
    db = build_storage(f"sqlite:///{tmp_path / 'rungs.db'}")
    study = open_study(space, db, study_name="secs")
    cheap = _trial(study, space, [(5.0, a) for a in ACCURACY], ratio=0.5)
    dear = _trial(study, space, [(1.0, a) for a in ACCURACY], ratio=1.0)
    assert cheap.intermediate_values == {1: 0.60, 2: 0.80}  # a report every two of its epochs
    assert cheap.state == TrialState.COMPLETE
    assert dear.state == TrialState.PRUNED, dear.intermediate_values
    assert dear.intermediate_values == {1: 0.50}  # judged at the first default epoch
    # at equal epochs the two would tie at every step: nothing to prune on
    plain = _space(fidelity=None, report_seconds=None, pruner=pruner)
    study = open_study(plain, build_storage(f"sqlite:///{tmp_path / 'e.db'}"), study_name="secs")
    assert [_trial(study, plain, [(1.0, a) for a in ACCURACY]).state for _ in range(2)] == [
        TrialState.COMPLETE] * 2


def test_the_fast_one_is_kept_when_the_slow_one_ran_first(tmp_path):
    space = _space(pruner={"type": "SuccessiveHalving", "min_resource": 2, "reduction_factor": 2})
    study = open_study(space, build_storage(f"sqlite:///{tmp_path / 'r.db'}"), study_name="secs")
    slow = _trial(study, space, [(2.0, a) for a in ACCURACY])
    fast = _trial(study, space, [(1.0, a) for a in ACCURACY])
    assert slow.state == fast.state == TrialState.COMPLETE
    assert fast.system_attrs["completed_rung_0"] > slow.system_attrs["completed_rung_0"]


# ------------------------------------------------------------------------------ a real run


def _check_grid(trial, every: int = 1) -> list[int]:
    """The trial's steps: whole seconds on the grid, none skipped, from the first grid point
    after its first epoch's end to the last one its clock passed (its recorded seconds)."""
    steps = sorted(trial.intermediate_values)
    assert all(isinstance(s, int) and s % every == 0 for s in steps), steps
    seconds = trial.user_attrs["epoch_seconds"]
    total = trial.user_attrs[TRAIN_SECONDS_ATTR]
    assert trial.user_attrs[TRAIN_EPOCHS_ATTR] == len(seconds)
    assert total == pytest.approx(sum(seconds), abs=0.01)
    ends = [sum(seconds[: i + 1]) for i in range(len(seconds))]
    if all(abs(e - round(e)) > 0.005 for e in ends):  # stored to the ms: no point on a boundary
        assert steps == [g for g in range(every, int(total) + 1, every) if g >= ends[0]], (
            steps, seconds)
    return steps


def _real_space():
    """Small real trials: resnet10t, 512 images, 3 epochs (an epoch passes a 1 s grid point on an
    idle core: with 128 images three epochs could end inside the first second)."""
    doc = _doc()
    del doc["hyperparameters"]["backbone"]
    doc["fixed"].update({"backbone": "resnet10t", "synthetic_size": 720,
                         "max_train_samples": 512})
    return parse_search_space(yaml.safe_dump(doc), source="secs.yaml")


@pytest.mark.slow
def test_a_real_run_reports_seconds_on_one_grid(tmp_path):
    space = _real_space()
    result = hpo.run_study(space, storage=f"sqlite:///{tmp_path / 'run.db'}", n_trials=2,
                           threads=1)
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    grids = [_check_grid(t) for t in trials]
    assert all(grids), grids  # each trial trained past a grid point
    # the last epoch's value is reported only where the grid meets its end; the others carry
    for t in trials:
        assert t.intermediate_values[max(t.intermediate_values)] <= 1.0
        assert t.user_attrs[TRAIN_SECONDS_ATTR] >= max(t.intermediate_values)
        assert t.user_attrs[TRAIN_SECONDS_ATTR] < max(t.intermediate_values) + 1
    common = set(grids[0]) & set(grids[1])
    assert common, grids  # both compared at the same seconds
    assert refit_seconds(trials[0].user_attrs, 9) == pytest.approx(
        trials[0].user_attrs[TRAIN_SECONDS_ATTR] / 3 * 9)


@pytest.mark.parametrize("length", ["compute", "epochs"])
def test_a_real_run_reports_default_epochs_of_compute(tmp_path, length):
    """fidelity: compute on real trials: the default reports at 1, 2, 3 (one default epoch per
    epoch); a backbone of another cost reports at the default epochs its measured cost ratio
    passes, with trial_length: compute (its epochs fill the default's compute) or not."""
    from hpo.attrs import ATTR_STEP_COSTS, STEP_COST

    doc = _doc({"fidelity": "compute", "report_seconds": None, "trial_length": length})
    doc["study"] = {k: v for k, v in doc["study"].items() if v is not None}
    doc["fixed"].update({"synthetic_size": 200, "max_train_samples": 96})
    space = parse_search_space(yaml.safe_dump(doc), source="secs.yaml")
    url = f"sqlite:///{tmp_path / 'compute.db'}"
    hpo.run_study(space, storage=url, n_trials=1, threads=1)  # trial 0: the default
    study = optuna.load_study(study_name="secs", storage=url)
    study.enqueue_trial({"backbone": "mobilenetv3_large_100", "lr": 3e-3})
    result = hpo.run_study(space, storage=url, study_name="secs", n_trials=2, threads=1)
    default, other = result.study.trials
    assert [default.state, other.state] == [TrialState.COMPLETE] * 2
    assert default.params["backbone"] == "resnet10t"
    assert sorted(default.intermediate_values) == [1, 2, 3]  # one default epoch per epoch
    ratio = other.user_attrs[STEP_COST] / default.user_attrs[STEP_COST]
    costs = result.study.user_attrs[ATTR_STEP_COSTS]
    assert sorted(costs.values()) == sorted({default.user_attrs[STEP_COST],
                                            other.user_attrs[STEP_COST]})
    epochs = len(other.user_attrs["epoch_seconds"])
    if length == "epochs":
        assert epochs == 3
    passed = [g for g in range(1, int(epochs * ratio + 1e-9) + 1) if g >= ratio - 1e-9]
    assert sorted(other.intermediate_values) == passed, (ratio, epochs)


@pytest.mark.slow
def test_a_resumed_trial_reports_its_origins_steps_then_goes_on(tmp_path, monkeypatch):
    """Interrupted after 2 epochs, retried from its checkpoint: the retry replays the origin's
    recorded seconds, so it reports the origin's steps and values, and its clock goes on."""
    monkeypatch.setenv("VCR_HPO_CHECKPOINT_RATIO", "0")  # every epoch: tiny epochs cost less
    from hpo.study import RunInterrupted
    from hpo.trial.artifacts import artifact_store
    from hpo.trial.objective import Objective

    space = _real_space()
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    study = open_study(space, build_storage(url), study_name="secs", n_trials=1)
    trial = study.ask()

    def stop(number, m):
        if m.epoch == 2:  # after training epoch 2, before its reports and checkpoint
            raise RunInterrupted(2)

    with pytest.raises(RunInterrupted):
        Objective(space, on_epoch=stop, artifacts=artifact_store(url, "secs"))(trial)
    trial.set_user_attr("interrupted", "SIGINT")
    study.tell(trial, state=TrialState.FAIL)
    origin = study.trials[trial.number]
    assert origin.intermediate_values  # its clock passed a grid point in two epochs

    result = hpo.run_study(space, storage=url, study_name="secs", n_trials=1, threads=1)
    (retry,) = [t for t in result.study.trials if t.state != TrialState.FAIL]
    assert retry.user_attrs["resumed_from_epoch"] == 2
    last = max(origin.intermediate_values)
    assert {s: v for s, v in retry.intermediate_values.items() if s <= last} \
        == origin.intermediate_values
    steps = sorted(retry.intermediate_values)
    assert steps == list(range(steps[0], steps[-1] + 1))  # one grid, no gap at the resume
    assert len(retry.user_attrs["epoch_seconds"]) == 1  # trained the last epoch only
    assert retry.user_attrs[TRAIN_EPOCHS_ATTR] == 3  # charged for the origin's epochs too
    paid = sum(origin.user_attrs["epoch_seconds"][:2]) + retry.user_attrs["epoch_seconds"][0]
    assert retry.user_attrs[TRAIN_SECONDS_ATTR] == pytest.approx(paid, abs=0.01)
    assert steps[-1] == int(retry.user_attrs[TRAIN_SECONDS_ATTR]) or \
        abs(paid - round(paid)) < 0.01


@pytest.mark.slow
def test_a_resumed_trial_on_compute_rungs_replays_its_origins_clock(tmp_path, monkeypatch):
    """fidelity: compute. A trial whose batch size costs another amount per image than the
    default's is interrupted after 2 epochs and retried from its checkpoint: the retry reports
    its origin's steps and values, then the grid points its third epoch passes, on the clock of
    its measured cost ratio (not of the seconds either run took)."""
    monkeypatch.setenv("VCR_HPO_CHECKPOINT_RATIO", "0")  # every epoch: tiny epochs cost less
    from hpo.attrs import STEP_COST
    from hpo.study import RunInterrupted
    from hpo.trial.artifacts import artifact_store, study_location, study_scope
    from hpo.trial.objective import Objective

    doc = _doc({"fidelity": "compute", "report_seconds": None})
    doc["study"] = {k: v for k, v in doc["study"].items() if v is not None}
    del doc["hyperparameters"]["backbone"]
    doc["hyperparameters"]["batch_size"] = {"type": "categorical", "choices": [32, 8],
                                            "default": 32}
    doc["fixed"].pop("batch_size")
    doc["fixed"].update({"backbone": "resnet10t", "synthetic_size": 200, "max_train_samples": 96})
    space = parse_search_space(yaml.safe_dump(doc), source="secs.yaml")
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    hpo.run_study(space, storage=url, n_trials=1, threads=1)  # trial 0: the default
    study = open_study(space, build_storage(url), study_name="secs", n_trials=2)
    study.enqueue_trial({"batch_size": 8, "lr": 3e-3})
    trial = study.ask()

    def stop(number, m):
        if m.epoch == 2:  # after training epoch 2, before its reports and checkpoint
            raise RunInterrupted(2)

    store = artifact_store(url, "secs", study_location(study, url), scope=study_scope(study))
    with pytest.raises(RunInterrupted):  # the store the run gave the study (its scope)
        Objective(space, on_epoch=stop, artifacts=store)(trial)
    trial.set_user_attr("interrupted", "SIGINT")
    study.tell(trial, state=TrialState.FAIL)
    origin = study.trials[trial.number]
    assert origin.params["batch_size"] == 8

    result = hpo.run_study(space, storage=url, study_name="secs", n_trials=2, threads=1)
    default = result.study.trials[0]
    (retry,) = [t for t in result.study.trials[1:] if t.state != TrialState.FAIL]
    assert retry.user_attrs.get("resumed_from_epoch") == 2, {
        k: v for k, v in retry.user_attrs.items() if "resume" in k or "retr" in k or "note" in k}
    ratio = retry.user_attrs[STEP_COST] / default.user_attrs[STEP_COST]
    assert origin.user_attrs[STEP_COST] == retry.user_attrs[STEP_COST]  # kept in the study
    assert abs(ratio - 1) > 0.05, ratio  # another cost than the default's: a real test
    on_grid = [g for g in range(1, int(3 * ratio + 1e-9) + 1) if g >= ratio - 1e-9]
    assert sorted(origin.intermediate_values) == [g for g in on_grid if g <= 2 * ratio + 1e-9]
    assert sorted(retry.intermediate_values) == on_grid, ratio
    assert {s: v for s, v in retry.intermediate_values.items()
            if s in origin.intermediate_values} == origin.intermediate_values
