"""The noise-aware Paired pruner on real SQLite studies with a real folder artifact store."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.pruners import MedianPruner
from optuna.trial import TrialState

from hpo.algorithms import AlgorithmSpec, build_pruner
from hpo.cli import main
from hpo.errors import SearchSpaceError
from hpo.pruners import PAIRED_NOTE_ATTR, PairedPruner
from hpo.records import val_key
from hpo.space import parse_search_space
from hpo.trial.artifacts import ATTR_ARTIFACTS, artifact_store
from hpo.trial.record_store import attach_records, store_of, write_record

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

N = 200  # validation images: one accuracy's standard error is about 2.8 points
KEY = val_key(np.arange(N) % 10)
STEP = 1


def _study(tmp_path, *, record_location=True):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    location = str(tmp_path / "art")
    if record_location:
        study.set_user_attr(ATTR_ARTIFACTS, location)  # what a run records (hpo.run.api)
    return study, url, artifact_store(url, "p", location)


def _trial(study, store, correct, *, finish=True):
    """A trial that reported its accuracy at steps 0 and STEP, with a record at each."""
    trial = study.ask()
    for step in (0, STEP):
        loss = np.where(correct, 0.3, 1.5).astype(np.float32)
        write_record(trial, store, step, correct, loss, KEY)
        trial.report(float(correct.mean()), step)
    if finish:
        study.tell(trial, float(correct.mean()))
    return trial


def _flip(correct, rng, *, up=0, down=0):
    out = correct.copy()
    out[rng.choice(np.flatnonzero(~correct), up, replace=False)] = True
    out[rng.choice(np.flatnonzero(correct), down, replace=False)] = False
    return out


@pytest.fixture
def rung(tmp_path):
    """Three finished trials near 80% on the same 200 images (the middle one is the median)."""
    study, url, store = _study(tmp_path)
    rng = np.random.default_rng(0)
    ref = np.zeros(N, bool)
    ref[rng.choice(N, 160, replace=False)] = True  # 80.0%
    for up, down in ((0, 4), (0, 0), (4, 0)):
        _trial(study, store, _flip(ref, rng, up=up, down=down))
    return study, url, store, ref, rng


def _frozen(study, trial):
    return study._storage.get_trial(trial._trial_id)


BASE = {"n_startup_trials": 0, "n_warmup_steps": 0}


def test_keeps_a_trial_behind_by_noise_stops_one_truly_behind(rung):
    study, _url, store, ref, rng = rung
    noisy = _trial(study, store, _flip(ref, rng, up=6, down=9), finish=False)  # -1.5 points
    bad = _trial(study, store, _flip(ref, rng, up=2, down=30), finish=False)  # -14 points
    base = MedianPruner(**BASE)
    assert base.prune(study, _frozen(study, noisy)) and base.prune(study, _frozen(study, bad))
    paired = PairedPruner(MedianPruner(**BASE), alpha=0.05)
    attach_records(paired, store)
    assert paired.prune(study, _frozen(study, noisy)) is False
    assert paired.prune(study, _frozen(study, bad)) is True
    note = _frozen(study, noisy).user_attrs[PAIRED_NOTE_ATTR]
    assert note.startswith("step 1: kept (behind by noise): -1.5 points against trial 1 (median")
    assert "paired on 200 images (correctness)" in note
    assert _frozen(study, bad).user_attrs[PAIRED_NOTE_ATTR].startswith(
        "step 1: pruned: -14.0 points against trial 1")


def test_another_process_reads_the_records_through_the_study_store(rung):
    """A worker builds its own pruner from the spec and opens the store the run recorded in
    the study (as `hpo.run.api` does in every process): it sees the others' records."""
    study, url, store, ref, rng = rung
    noisy = _trial(study, store, _flip(ref, rng, up=6, down=9), finish=False)
    fresh = optuna.load_study(study_name="p", storage=url)
    pruner = build_pruner(AlgorithmSpec("Paired", {"base": AlgorithmSpec("MedianPruner", BASE)}))
    assert isinstance(pruner, PairedPruner) and pruner.records is None
    assert pruner.prune(fresh, _frozen(fresh, noisy)) is True  # no records: the base decides
    attach_records(pruner, store_of(fresh.user_attrs))
    assert pruner.prune(fresh, _frozen(fresh, noisy)) is False


def test_base_keeps_means_kept_and_no_record_means_the_base_decides(rung):
    study, _url, store, ref, rng = rung
    ahead = _trial(study, store, _flip(ref, rng, up=20), finish=False)
    pruner = PairedPruner(MedianPruner(**BASE))
    attach_records(pruner, store)
    assert pruner.prune(study, _frozen(study, ahead)) is False
    # a trial without a record at the step: the base decides, and the note says why
    bare = study.ask()
    bare.report(0.5, STEP)
    assert pruner.prune(study, _frozen(study, bare)) is True
    assert "this trial has no record at this step" in \
        _frozen(study, bare).user_attrs[PAIRED_NOTE_ATTR]


def test_on_loss_compares_per_image_losses(rung):
    study, _url, store, ref, _rng = rung
    trial = study.ask()
    loss = np.where(ref, 0.3, 1.5).astype(np.float32) + 0.4  # every image's loss is worse
    write_record(trial, store, STEP, ref, loss, KEY)
    trial.report(0.79, STEP)
    by_correct = PairedPruner(MedianPruner(**BASE), compare="correct")
    by_loss = PairedPruner(MedianPruner(**BASE), compare="loss")
    attach_records(by_correct, store)
    attach_records(by_loss, store)
    assert by_correct.prune(study, _frozen(study, trial)) is False  # same images right
    assert by_loss.prune(study, _frozen(study, trial)) is True


@pytest.mark.parametrize("spec, where, rule", [
    ("{type: Paired, alpha: 1.5}", "study.pruner.alpha", "must lie in (0, 1), got 1.5"),
    ("{type: Paired, alpha: 0}", "study.pruner.alpha", "must lie in (0, 1), got 0"),
    ("{type: Paired, base: {type: Nope}}", "study.pruner.base.type", "unknown pruner, got 'Nope'"),
    ("{type: Paired, compare: bits}", "study.pruner.compare",
     "must be one of auto, correct, loss, got 'bits'"),
    ("{type: Paired, beta: 1}", "study.pruner.beta", "not an argument of PairedPruner"),
])
def test_bad_paired_specs_are_one_line_errors(spec, where, rule):
    text = f"study: {{pruner: {spec}}}\nhyperparameters:\n  lr: {{type: float, low: 0.001, high: 0.1}}\n"
    with pytest.raises(SearchSpaceError) as err:
        parse_search_space(text, source="s.yaml")
    line = str(err.value)
    assert line.startswith(f"s.yaml: {where}") and rule in line and "\n" not in line


def test_paired_spec_parses_builds_and_validates(tmp_path, capsys):
    text = ("study: {pruner: {type: Paired, base: {type: SuccessiveHalving, min_resource: 1}, "
            "alpha: 0.1}}\nhyperparameters:\n  lr: {type: float, low: 0.001, high: 0.1}\n")
    space = parse_search_space(text, source="s.yaml")
    assert space.study.pruner == AlgorithmSpec(
        "Paired", {"base": AlgorithmSpec("SuccessiveHalving", {"min_resource": 1}), "alpha": 0.1})
    pruner = build_pruner(space.study.pruner)
    assert isinstance(pruner.base, optuna.pruners.SuccessiveHalvingPruner)
    assert pruner.alpha == 0.1 and pruner.compare == "auto"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("alpha: 0.1", "alpha: 2"))
    assert main(["validate", "--space", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "study.pruner.alpha" in err and "must lie in (0, 1), got 2" in err
    with pytest.raises(ValueError, match="alpha must lie in"):
        PairedPruner(alpha=-1)


def test_reference_is_the_median_trial_at_the_step(rung):
    """With trials at 78, 80 and 82%, a trial at 79% is tested against trial 1 (80%)."""
    study, _url, store, ref, rng = rung
    values = sorted((t.intermediate_values[STEP], t.number) for t in study.trials
                    if t.state == TrialState.COMPLETE)
    assert [n for _, n in values] == [0, 1, 2]
    trial = _trial(study, store, _flip(ref, rng, up=0, down=2), finish=False)
    pruner = PairedPruner(MedianPruner(**BASE))
    attach_records(pruner, store)
    pruner.prune(study, _frozen(study, trial))
    assert "against trial 1 (median at this step)" in \
        _frozen(study, trial).user_attrs[PAIRED_NOTE_ATTR]
