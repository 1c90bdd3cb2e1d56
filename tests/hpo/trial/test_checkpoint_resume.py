"""Resume mid-trial in-process: an interrupted trial's retry continues from its checkpoint, and
a missing, corrupt or foreign checkpoint falls back to a fresh start with a note."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

import hpo
from hpo.study import RunInterrupted, build_storage, open_study
from hpo.trial.artifacts import artifact_store
from hpo.trial.checkpoint import checkpoint_key, kept_weights
from hpo.trial.objective import Objective

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage")]

EPOCHS = 3


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("VCR_HPO_CHECKPOINT_RATIO", "0")  # every epoch: tiny epochs cost less
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    torch.set_num_threads(threads)


def _interrupted(tmp_path, tiny_space, name: str, at_epoch: int = 2):
    """A study whose first (baseline) trial was interrupted after `at_epoch` saved epochs."""
    space = hpo.load_space(tiny_space(epochs=EPOCHS))
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    study = open_study(space, build_storage(url), study_name=name, n_trials=1)
    store = artifact_store(url, name)
    trial = study.ask()

    def stop(number, m):
        if m.epoch == at_epoch:  # after training epoch at_epoch, before its checkpoint
            raise RunInterrupted(2)

    with pytest.raises(RunInterrupted):
        Objective(space, on_epoch=stop, artifacts=store)(trial)
    trial.set_user_attr("interrupted", "SIGINT")
    study.tell(trial, state=TrialState.FAIL)
    assert torch.load(store.base_path / checkpoint_key(trial.number),
                      weights_only=True)["state"]["epoch"] == at_epoch
    return space, url, store, trial.number


def _resume(space, url, name):
    result = hpo.run_study(space, storage=url, study_name=name, n_trials=1, threads=1)
    (retry,) = [t for t in result.study.trials if t.state != TrialState.FAIL]
    return result, retry


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The baseline trial of the tiny space, trained uninterrupted."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2]))
    from conftest import TINY_SPACE

    root = tmp_path_factory.mktemp("ref")
    (root / "tiny.yaml").write_text(TINY_SPACE.replace("{epochs}", str(EPOCHS)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = hpo.run_study(root / "tiny.yaml", storage=f"sqlite:///{root / 'r.db'}",
                               n_trials=1, threads=1)
    finally:
        torch.set_num_threads(threads)
    return result.best


def test_retry_resumes_from_the_checkpoint_and_ends_like_an_uninterrupted_trial(
        tmp_path, tiny_space, reference):
    space, url, store, origin = _interrupted(tmp_path, tiny_space, "ok")
    result, retry = _resume(space, url, "ok")
    assert retry.params == reference.params
    assert retry.user_attrs["resumed_from_epoch"] == 2
    assert retry.user_attrs["resumed_from_trial"] == origin
    assert len(retry.user_attrs["epoch_seconds"]) == EPOCHS - 2  # trained the rest only
    assert retry.intermediate_values == reference.intermediate_values  # one continuous curve
    assert retry.value == reference.value
    assert retry.user_attrs["best_metrics"] == reference.user_attrs["best_metrics"]
    assert not list((store.base_path / "checkpoints").iterdir())  # dropped when it ended
    assert sorted(kept_weights(result.study)) == [retry.number]
    assert result.study.user_attrs["artifacts"] == str(store.base_path)  # found without a flag


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_checkpoint_starts_afresh_with_a_note(
        damage, tmp_path, tiny_space, reference):
    space, url, store, origin = _interrupted(tmp_path, tiny_space, damage)
    path = store.base_path / checkpoint_key(origin)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:4096])
    _, retry = _resume(space, url, damage)
    assert "resumed_from_epoch" not in retry.user_attrs
    note = retry.user_attrs["resume_note"]
    expected = (f"no checkpoint of trial {origin}" if damage == "missing"
                else f"checkpoint of trial {origin} is unreadable")
    assert note.startswith(expected) and note.endswith("trained from epoch 0")
    assert len(retry.user_attrs["epoch_seconds"]) == EPOCHS
    assert retry.value == reference.value  # a fresh start is the same seeded run


def test_checkpoint_of_other_params_is_not_used(tmp_path, tiny_space):
    space, url, _, origin = _interrupted(tmp_path, tiny_space, "other")
    study = optuna.load_study(study_name="other", storage=url)
    old = study.trials[origin]
    params = {**old.params, "lr": 0.005}
    # a retry that names the trial but carries other params (a hand-edited or buggy queue)
    study.add_trial(create_trial(state=TrialState.WAITING, params=params,
                                 distributions=old.distributions,
                                 system_attrs={"failed_trial": origin, "retry_history": [origin]}))
    study.set_user_attr("requeued_interrupted", [origin])  # the real retry is not queued again
    _, retry = _resume(space, url, "other")
    assert retry.params == params
    assert "resumed_from_epoch" not in retry.user_attrs
    assert "of another space, params or config: not used" in retry.user_attrs["resume_note"]
    assert len(retry.user_attrs["epoch_seconds"]) == EPOCHS


def test_best_writes_the_kept_weights_and_train_starts_from_them(tiny_study, tmp_path, capsys):
    from hpo.cli import main
    from hpo.outputs.configs import best_trial

    url, name, _ = tiny_study
    study = optuna.load_study(study_name=name, storage=url)
    best = best_trial(study)
    assert sorted(kept_weights(study)) == sorted({best.number} | {  # best of each backbone
        min((t for t in study.trials if t.state == TrialState.COMPLETE
             and t.params["backbone"] == b), key=lambda t: (-t.value, t.number)).number
        for b in {t.params["backbone"] for t in study.trials if t.state == TrialState.COMPLETE}})
    out = tmp_path / "best.yaml"
    assert main(["best", "--storage", url, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"weights of trial #{best.number} -> {tmp_path / 'best.pt'}" in printed
    blob = torch.load(tmp_path / "best.pt", weights_only=True)
    assert blob["trial"] == best.number and blob["params"] == best.params

    assert main(["train", "--config", str(out), "--init-weights", str(tmp_path / "best.pt"),
                 "--out", str(tmp_path / "run"), "--set", "epochs=1"]) == 0
    assert "starting from" in capsys.readouterr().err
    other = "resnet10t" if best.params["backbone"] != "resnet10t" else "mobilenetv3_large_100"
    assert main(["train", "--config", str(out), "--init-weights", str(tmp_path / "best.pt"),
                 "--set", f"backbone={other}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --init-weights: weights of another model")


def test_two_studies_of_one_name_beside_two_databases_keep_their_own_checkpoints(
        tmp_path, tiny_space):
    """a.db and b.db both hold `vcr-demo` and share `vcr-demo-artifacts`: b's trial 0 runs and
    ends (its checkpoint written each epoch, then dropped) while a's trial 0 waits to resume; a's
    retry still resumes from its own checkpoint, and each study keeps its own weights."""
    from hpo.trial.artifacts import record_location, study_location
    from hpo.trial.checkpoint import read_weights

    space = hpo.load_space(tiny_space(epochs=EPOCHS))
    urls = {db: f"sqlite:///{tmp_path / db}.db" for db in ("a", "b")}
    study_a = open_study(space, build_storage(urls["a"]), study_name="vcr-demo", n_trials=1)
    location = study_location(study_a, urls["a"])
    store_a = artifact_store(urls["a"], "vcr-demo", location,
                             scope=record_location(study_a, location))  # as a run opens it
    trial = study_a.ask()

    def stop(number, m):
        if m.epoch == 2:
            raise RunInterrupted(2)

    with pytest.raises(RunInterrupted):
        Objective(space, on_epoch=stop, artifacts=store_a)(trial)
    trial.set_user_attr("interrupted", "SIGINT")
    study_a.tell(trial, state=TrialState.FAIL)

    done_b = hpo.run_study(space, storage=urls["b"], study_name="vcr-demo", n_trials=1,
                           threads=1)
    (trial_b,) = done_b.study.trials
    assert trial_b.number == trial.number == 0 and trial_b.state == TrialState.COMPLETE
    assert done_b.study.user_attrs["artifacts"] == location  # the one shared folder

    done_a, retry = _resume(space, urls["a"], "vcr-demo")
    assert retry.user_attrs.get("resumed_from_epoch") == 2, retry.user_attrs.get("resume_note")
    assert retry.user_attrs["resumed_from_trial"] == 0
    for db, study, own in (("a", done_a.study, retry), ("b", done_b.study, trial_b)):
        path = read_weights(store_a, study, own.number, tmp_path / f"{db}-weights.pt")
        assert path is not None, f"{db}.db: its weights were lost"
        blob = torch.load(path, weights_only=True)
        assert blob["identity"] == own.user_attrs["checkpoint_identity"]  # its own model
    assert not list((store_a.base_path / "checkpoints").rglob("*.pt"))  # each dropped its own
