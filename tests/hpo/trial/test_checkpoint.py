"""Checkpoints and kept weights without training: identity, fallbacks, top-k, the grammar key."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.attrs import CHECKPOINT_IDENTITY
from hpo.errors import ConfigError, SearchSpaceError
from hpo.space import parse_search_space
from hpo.trial.artifacts import artifact_store
from hpo.trial.checkpoint import (
    checkpoint_identity,
    checkpoint_key,
    drop_checkpoints,
    find_checkpoint,
    keep_best_weights,
    kept_weights,
    load_init_weights,
    retry_origins,
    save_checkpoint,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SPACE = """\
study: {{name: t, metric: val_acc, n_trials: {n}{keep}}}
hyperparameters:
  backbone: {{type: categorical, choices: [resnet10t, mobilenetv3_large_100]}}
  lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
fixed: {{epochs: 2, image_size: 32}}
"""


def _space(n: int = 3, keep: str = ""):
    return parse_search_space(SPACE.format(n=n, keep=keep), source="<test>")


def _identity(space, params, overrides=None):
    overrides = overrides or {}
    return checkpoint_identity(space, overrides, params, space.config_for(params, overrides))


P = {"backbone": "resnet10t", "lr": 0.003}


def test_identity_follows_params_seed_space_and_overrides_but_not_the_budget():
    base = _identity(_space(), P)
    assert base == _identity(_space(), dict(P))
    assert base == _identity(_space(n=50), P)  # a top-up of n_trials keeps checkpoints usable
    assert base != _identity(_space(), {**P, "lr": 0.004})
    assert base != _identity(_space(), P, {"seed": 1})
    assert base != _identity(_space(), P, {"epochs": 3})
    other = parse_search_space(SPACE.format(n=3, keep="").replace("1.0e-2", "2.0e-2"), source="<t>")
    assert base != _identity(other, P)


def test_retry_origins_are_newest_first():
    assert retry_origins({"failed_trial": 0, "retry_history": [0, 3, 5]}) == [5, 3, 0]
    assert retry_origins({}) == []


@pytest.fixture
def store(tmp_path):
    return artifact_store(f"sqlite:///{tmp_path / 's.db'}", "s")


def test_find_checkpoint_uses_the_newest_matching_one(store):
    save_checkpoint(store, 0, "id-a", {"epoch": 1})
    save_checkpoint(store, 3, "id-a", {"epoch": 2})
    found = find_checkpoint(store, [3, 0], "id-a")
    assert (found.origin, found.state["epoch"], found.note) == (3, 2, None)


def test_missing_checkpoint_gives_a_note(store):
    found = find_checkpoint(store, [4], "id-a")
    assert found.state is None
    assert found.note == "no checkpoint of trial 4; trained from epoch 0"


def test_corrupt_checkpoint_gives_a_note_not_a_crash(store):
    save_checkpoint(store, 2, "id-a", {"epoch": 2, "w": torch.zeros(1000)})
    path = store.base_path / checkpoint_key(2)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # torn by a dying disk
    found = find_checkpoint(store, [2], "id-a")
    assert found.state is None
    assert found.note.startswith("checkpoint of trial 2 is unreadable (")
    assert found.note.endswith("; trained from epoch 0")


def test_checkpoint_of_other_params_is_never_used(store):
    save_checkpoint(store, 1, "id-other", {"epoch": 2})
    found = find_checkpoint(store, [1], "id-a")
    assert found.state is None
    assert "of another space, params or config: not used" in found.note


def test_an_older_usable_checkpoint_is_used_when_the_newest_is_missing(store):
    save_checkpoint(store, 0, "id-a", {"epoch": 1})
    found = find_checkpoint(store, [6, 0], "id-a")
    assert (found.origin, found.state["epoch"]) == (0, 1)


def test_drop_checkpoints_counts_what_existed(store):
    save_checkpoint(store, 0, "x", {})
    assert drop_checkpoints(store, [0, 0, 9]) == 1
    assert not (store.base_path / checkpoint_key(0)).exists()


# --------------------------------------------------------------------------- kept weights


def _finished(study, number_values, store, backbone_of):
    """Trials told COMPLETE with a checkpoint each; the keep callback runs after each, in order."""
    keep = keep_best_weights(store, top=1, per_backbone=1)
    dists = {"backbone": CategoricalDistribution(["resnet10t", "mobilenetv3_large_100"]),
             "lr": FloatDistribution(1e-3, 1e-2, log=True)}
    for value in number_values:
        n = len(study.trials)
        save_checkpoint(store, n, "id", {"epoch": 2, "config": {"backbone": backbone_of(n)},
                                         "model": {"w": torch.full((2,), float(n))}})
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, distributions=dists,
                                     params={"backbone": backbone_of(n), "lr": 0.003},
                                     user_attrs={CHECKPOINT_IDENTITY: "id"}))
        keep(study, study.trials[-1])


def test_top1_per_study_and_per_backbone_keep_two_files_and_delete_the_rest(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    store = artifact_store(url, "s")
    backbone = {0: "resnet10t", 1: "resnet10t", 2: "mobilenetv3_large_100", 3: "resnet10t",
                4: "mobilenetv3_large_100"}
    _finished(study, [0.3, 0.5, 0.2, 0.4, 0.25], store, backbone.__getitem__)
    kept = kept_weights(study)
    assert sorted(kept) == [1, 4]  # best overall (resnet10t) and best mobilenet
    files = sorted(p.name for p in store.base_path.iterdir() if p.is_file())
    assert files == sorted(m.artifact_id for m in kept.values())  # the others' files are gone
    assert list((store.base_path / "checkpoints").iterdir()) == []  # every checkpoint dropped
    blob = torch.load(store.base_path / kept[4].artifact_id, weights_only=True)
    assert blob["trial"] == 4 and torch.equal(blob["model"]["w"], torch.full((2,), 4.0))


def test_weights_are_kept_only_from_the_trials_own_checkpoint(tmp_path):
    """Two studies of one name beside two databases share `<name>-artifacts`: a trial whose
    number holds the other study's checkpoint (it wrote none of its own) keeps nothing, never
    the other model; a trial's own checkpoint is kept."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {"lr": FloatDistribution(1e-3, 1e-2, log=True)}
    stores, studies = [], []
    for db in ("a", "b"):
        url = f"sqlite:///{tmp_path / db}.db"
        studies.append(optuna.create_study(storage=url, study_name="s", direction="maximize"))
        stores.append(artifact_store(url, "s"))
    assert stores[0].base_path == stores[1].base_path  # the shared folder
    save_checkpoint(stores[0], 0, "identity-a", {"epoch": 1, "model": {"w": torch.ones(2)}})
    studies[1].add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, distributions=dists,
                                      params={"lr": 0.003},
                                      user_attrs={CHECKPOINT_IDENTITY: "identity-b"}))
    keep_best_weights(stores[1])(studies[1], studies[1].trials[0])
    assert kept_weights(studies[1]) == {}  # a's model is not b's
    save_checkpoint(stores[0], 0, "identity-a", {"epoch": 2, "model": {"w": torch.ones(2)}})
    studies[0].add_trial(create_trial(state=TrialState.COMPLETE, value=0.5, distributions=dists,
                                      params={"lr": 0.003},
                                      user_attrs={CHECKPOINT_IDENTITY: "identity-a"}))
    keep_best_weights(stores[0])(studies[0], studies[0].trials[0])
    blob = torch.load(stores[0].base_path / kept_weights(studies[0])[0].artifact_id,
                      weights_only=True)
    assert blob["identity"] == "identity-a" and torch.equal(blob["model"]["w"], torch.ones(2))


def test_interrupted_trial_keeps_its_checkpoint(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="s")
    store = artifact_store(url, "s")
    save_checkpoint(store, 0, "id", {"epoch": 1})
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"interrupted": "SIGINT"}))
    keep_best_weights(store)(study, study.trials[0])
    assert (store.base_path / checkpoint_key(0)).is_file()
    study.add_trial(create_trial(state=TrialState.PRUNED, value=None))
    save_checkpoint(store, 1, "id", {"epoch": 1})
    keep_best_weights(store)(study, study.trials[1])
    assert not (store.base_path / checkpoint_key(1)).exists()
    assert kept_weights(study) == {}


# --------------------------------------------------------------------------- grammar, init weights


def test_keep_weights_key_parses_and_defaults():
    assert _space().study.keep_weights == (1, 1)
    assert _space(keep=", keep_weights: {top: 3, per_backbone: 0}").study.keep_weights == (3, 0)
    assert "keep_weights" not in _space().canonical()["study"]  # old fingerprints stay


@pytest.mark.parametrize("keep, path, rule", [
    ("keep_weights: 2", "study.keep_weights", "must be a mapping"),
    ("keep_weights: {top: -1}", "study.keep_weights.top", "must be a whole number >= 0"),
    ("keep_weights: {top: true}", "study.keep_weights.top", "must be a whole number >= 0"),
    ("keep_weights: {tpo: 1}", "study.keep_weights.tpo", "did you mean"),
])
def test_keep_weights_key_errors_name_the_path(keep, path, rule):
    with pytest.raises(SearchSpaceError) as info:
        _space(keep=", " + keep)
    (line,) = [e for e in info.value.errors if path in e]
    assert rule in line.lower()


def test_init_weights_refuses_other_models_and_junk(tmp_path):
    space = _space()
    cfg = space.config_for(P)
    good = tmp_path / "w.pt"
    torch.save({"format": 1, "config": cfg.to_dict(), "model": {"w": torch.ones(1)}}, good)
    assert torch.equal(load_init_weights(good, cfg)["w"], torch.ones(1))
    other = cfg.replace(backbone="mobilenetv3_large_100")
    with pytest.raises(ConfigError, match="^--init-weights: weights of another model, got "
                                          "backbone='resnet10t'"):
        load_init_weights(good, other)
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(ConfigError, match="not a readable weights file"):
        load_init_weights(tmp_path / "junk.pt", cfg)
    with pytest.raises(ConfigError, match="no such file"):
        load_init_weights(tmp_path / "none.pt", cfg)


class _SignalsWhilePickled:
    """Sends SIGTERM to this process while torch.save pickles it (a signal mid-checkpoint)."""

    def __reduce__(self):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGTERM)
        return (int, (7,))


def test_a_signal_during_a_checkpoint_write_interrupts_after_it_not_inside_torch(store):
    from hpo.study import RunInterrupted, interrupt_on_signals

    big = torch.zeros(2_000_000)
    with pytest.raises(RunInterrupted), interrupt_on_signals():
        # torch.save turns an exception raised inside its writer into RuntimeError: the run
        # would record an ordinary failure and lose the interruption
        save_checkpoint(store, 0, "id", {"a": big, "b": _SignalsWhilePickled(), "c": big})
    state = torch.load(store.base_path / checkpoint_key(0), weights_only=False)["state"]
    assert state["b"] == 7 and state["c"].shape == big.shape  # and the write completed


# --------------------------------------------------------------------------- scopes


def test_a_new_study_gets_one_scope_of_its_own_and_an_old_one_keeps_its_keys(tmp_path):
    """Studies sharing a store: each new one's checkpoints go in a folder of its own; a study
    that ran trials before scopes keeps none, so its checkpoints are found where they are."""
    from hpo.trial.artifacts import ATTR_SCOPE, record_location, study_scope

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = str(tmp_path / "shared-artifacts")
    studies = [optuna.create_study(storage=f"sqlite:///{tmp_path / db}.db", study_name="s")
               for db in ("a", "b", "old")]
    studies[1].enqueue_trial({})  # a queued trial has not started: still new
    scopes = [record_location(s, where) for s in studies[:2]]
    assert all(scopes) and scopes[0] != scopes[1]
    assert [record_location(s, where) for s in studies[:2]] == scopes  # drawn once
    assert [study_scope(s) for s in studies[:2]] == scopes
    assert studies[0].user_attrs[ATTR_SCOPE] == scopes[0]
    stores = [artifact_store("", "s", where, scope=scope) for scope in scopes]
    for i, store in enumerate(stores):
        save_checkpoint(store, 0, f"id-{i}", {"epoch": i})
    assert drop_checkpoints(stores[1], [0]) == 1
    assert find_checkpoint(stores[0], [0], "id-0").state == {"epoch": 0}  # b's drop spared a's
    old = studies[2]
    old.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"interrupted": "SIGINT"}))
    assert record_location(old, where) == "" and study_scope(old) == ""
    legacy = artifact_store("", "s", where)
    save_checkpoint(legacy, 0, "id-old", {"epoch": 5})
    assert (legacy.base_path / checkpoint_key(0)).is_file()  # the key it always had
    assert find_checkpoint(stores[0], [0], "id-0").state == {"epoch": 0}
