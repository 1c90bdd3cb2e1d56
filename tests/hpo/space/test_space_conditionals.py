"""Conditional parameters on real studies: suggested exactly when their `when` holds."""

from __future__ import annotations

import math

import optuna
import pytest

from hpo.algorithms import build_sampler
from hpo.space import load_search_space, parse_search_space

SPACE = """
study: {name: cond, sampler: {type: TPE, seed: 7, n_startup_trials: 20}}
hyperparameters:
  loss_fn:     {type: categorical, choices: [cross_entropy, focal, smooth_modulation], default: focal}
  focal_gamma: {type: float, low: 0.5, high: 4.0, when: {loss_fn: focal}}
  focal_alpha: {type: categorical, choices: [null, 0.25, 0.75], when: {loss_fn: focal}}
  label_smoothing: {type: float, low: 0.0, high: 0.3, when: {focal_alpha: 0.75}}   # a chain
  tau:         {type: float, low: 0.1, high: 2.0, when: {loss_fn: smooth_modulation}}
  optimizer:   {type: categorical, choices: [sgd, adam, adamw]}
  momentum:    {type: float, low: 0.8, high: 0.99, when: {optimizer: [sgd]}}
  weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true, when: {optimizer: [adam, adamw]}}
  lr:          {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
"""


def _holds(name: str, p: dict) -> bool:
    """The conditions written above, restated independently of the parser."""
    return {
        "focal_gamma": p.get("loss_fn") == "focal",
        "focal_alpha": p.get("loss_fn") == "focal",
        "label_smoothing": p.get("loss_fn") == "focal" and "focal_alpha" in p and p["focal_alpha"] == 0.75,
        "tau": p.get("loss_fn") == "smooth_modulation",
        "momentum": p.get("optimizer") == "sgd",
        "weight_decay": p.get("optimizer") in ("adam", "adamw"),
    }.get(name, True)


def _run(space, storage, n_trials):
    study = optuna.create_study(storage=storage, study_name="cond", sampler=build_sampler(space),
                                direction="maximize")
    study.enqueue_trial(space.default_params())

    def objective(trial):
        p = space.suggest(trial)
        # Rewards some conditional branches so TPE's later trials do not all look alike.
        return math.log(p["lr"]) + (p.get("focal_gamma", 0.0) + p.get("momentum", 0.0))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    return study


def _check(space, trials, n_trials):
    assert len(trials) == n_trials and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    seen = {name: [0, 0] for name in ("focal_gamma", "focal_alpha", "label_smoothing", "tau", "momentum",
                                      "weight_decay")}
    for t in trials:
        p = t.params
        for name in (q.name for q in space.params):
            assert (name in p) == _holds(name, p), (t.number, name, p)
        assert space.active(p) == set(p)
        for name, counts in seen.items():
            counts[name in p] += 1
    # Every conditional parameter was both on and off at some point: the test exercised both ways.
    assert all(on > 0 and off > 0 for off, on in seen.values()), seen
    assert trials[0].params == space.default_params()  # the enqueued baseline came first


def test_conditionals_over_200_tpe_trials():
    """200 trials of seeded TPE (in-memory storage: TPE on SQLite re-reads every trial each time)."""
    space = parse_search_space(SPACE, source="cond.yaml")
    _check(space, _run(space, None, 200).trials, 200)


def test_conditionals_persist_on_sqlite(tmp_path):
    space = parse_search_space(SPACE, source="cond.yaml")
    url = f"sqlite:///{tmp_path / 'cond.db'}"
    _run(space, url, 30)
    _check(space, optuna.load_study(study_name="cond", storage=url).trials, 30)


@pytest.mark.parametrize("sampler", ["Random", "QMC"])
def test_conditionals_hold_for_other_samplers(sampler):
    space = parse_search_space(SPACE.replace("type: TPE, seed: 7, n_startup_trials: 20",
                                             f"type: {sampler}, seed: 3"), source="cond.yaml")
    study = optuna.create_study(sampler=build_sampler(space))
    study.optimize(lambda t: len(space.suggest(t)), n_trials=60)
    for t in study.trials:
        assert all((q.name in t.params) == _holds(q.name, t.params) for q in space.params)


def test_shipped_spaces_conditionals_match_their_when():
    for name in ("hyperparameters.yaml", "vcr_full.yaml"):
        space = load_search_space(name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        study.optimize(lambda t, s=space: 0.0 if s.suggest(t) else 1.0, n_trials=40)
        for t in study.trials:
            for p in space.params:
                expect = all(parent in t.params and t.params[parent] in allowed
                             for parent, allowed in p.when.items())
                assert (p.name in t.params) == expect
            space.config_for(t.params)  # every suggested combination is a valid TrainConfig
