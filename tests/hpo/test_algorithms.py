"""Sampler and pruner registries: every entry builds from a minimal spec and runs a real study."""

from __future__ import annotations

import itertools

import optuna
import pytest

from hpo.algorithms import (
    ALIASES,
    PRUNERS,
    SAMPLERS,
    build_pruner,
    build_sampler,
    canonical_algorithm_name,
    check_algorithm_args,
)
from hpo.space import AlgorithmSpec, parse_search_space

# Arguments a pruner cannot do without; everything else builds from {type: NAME}.
MINIMAL_PRUNER_ARGS = {"Percentile": {"percentile": 50.0}, "Patient": {"patience": 1},  # no wrapped pruner
                       "Threshold": {"lower": 0.0}}
FINITE = """
study: {{sampler: {sampler}}}
hyperparameters:
  backbone: {{type: categorical, choices: [resnet18, resnet34]}}
  epochs:   {{type: int, low: 1, high: 3}}
  dropout:  {{type: float, low: 0.0, high: 0.2, step: 0.1}}
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(sampler: str):
    return parse_search_space(FINITE.format(sampler=sampler), source="a.yaml")


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_builds_and_runs(name):
    space = _space(f"{{type: {name}, seed: 0}}")
    sampler = build_sampler(space)
    assert isinstance(sampler, SAMPLERS.get(name))
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: space.suggest(t)["epochs"] + space.suggest(t)["dropout"], n_trials=4)
    assert len(study.trials) == 4
    for t in study.trials:
        assert set(t.params) == {"backbone", "epochs", "dropout"}
        assert t.params["dropout"] in (0.0, 0.1, 0.2)


@pytest.mark.parametrize("name", PRUNERS.names())
def test_every_pruner_builds_from_minimal_spec(name):
    spec = AlgorithmSpec(name, MINIMAL_PRUNER_ARGS.get(name, {}))
    assert check_algorithm_args("pruner", name, spec.args) == []
    assert isinstance(build_pruner(spec), PRUNERS.get(name))


def test_no_pruner_is_nop():
    assert isinstance(build_pruner(None), optuna.pruners.NopPruner)


def test_patient_wraps_nested_pruner():
    space = parse_search_space(
        "study: {pruner: {type: Patient, patience: 2, wrapped_pruner: {type: Median, n_warmup_steps: 1}}}\n"
        "hyperparameters:\n  lr: {type: float, low: 0.01, high: 0.1}\n")
    pruner = build_pruner(space.study.pruner)
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)


def test_median_pruner_prunes_a_bad_trial():
    space = parse_search_space("study: {direction: maximize, pruner: {type: MedianPruner, n_startup_trials: 1,"
                               " n_warmup_steps: 0}}\nhyperparameters:\n  lr: {type: float, low: 0.01, high: 0.1}\n")
    study = optuna.create_study(direction="maximize", pruner=build_pruner(space.study.pruner))

    def objective(trial):
        good = trial.number == 0
        for step in range(3):
            trial.report(1.0 if good else 0.0, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 1.0 if good else 0.0

    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]


def test_grid_gets_the_finite_grid_and_exhausts_it():
    space = _space("Grid")
    study = optuna.create_study(sampler=build_sampler(space, seed=5))
    study.optimize(lambda t: sum(v for v in space.suggest(t).values() if not isinstance(v, str)), n_trials=50)
    combos = {(t.params["backbone"], t.params["epochs"], round(t.params["dropout"], 6)) for t in study.trials}
    assert len(study.trials) == 18  # Grid stops the study once every point ran
    assert combos == set(itertools.product(["resnet18", "resnet34"], [1, 2, 3], [0.0, 0.1, 0.2]))


def test_seed_argument_overrides_spec_seed():
    space = _space("{type: Random, seed: 1}")

    def draws(sampler):
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: space.suggest(t)["epochs"], n_trials=8)
        return [tuple(sorted(t.params.items())) for t in study.trials]

    assert draws(build_sampler(space)) == draws(build_sampler(space, seed=1))
    assert draws(build_sampler(space, seed=2)) != draws(build_sampler(space, seed=1))
    assert build_sampler(space, seed=2)._rng.rng.get_state()[1][0] != build_sampler(space)._rng.rng.get_state()[1][0]


def test_aliases_resolve_to_registry_names():
    assert canonical_algorithm_name("sampler", "TPESampler") == "TPE"
    assert canonical_algorithm_name("pruner", "HyperbandPruner") == "Hyperband"
    assert all(v in SAMPLERS or v in PRUNERS for v in ALIASES.values())
    assert not set(ALIASES) & (set(SAMPLERS.names()) | set(PRUNERS.names()))


@pytest.mark.parametrize("kind,name,args,arg,rule", [
    ("sampler", "TPE", {"n_startup": 3}, "n_startup", "not an argument of TPESampler"),
    ("sampler", "TPE", {"seed": "x"}, "seed", "must be an integer or null"),
    ("sampler", "TPE", {"seed": 1.5}, "seed", "must be an integer or null"),
    ("sampler", "TPE", {"multivariate": 1}, "multivariate", "must be null or true/false"),
    ("sampler", "TPE", {"constraints_func": None}, "constraints_func", "takes a Python object"),
    ("sampler", "Grid", {"search_space": None}, "search_space", "Grid sets search_space itself"),
    ("sampler", "QMC", {"qmc_type": "bad"}, None, "QMCSampler rejects these arguments"),
    ("sampler", "Nope", {}, "type", "unknown sampler"),
    ("pruner", "Percentile", {}, "percentile", "PercentilePruner requires percentile"),
    ("pruner", "Wilcoxon", {"p_threshold": 2.0}, None, "WilcoxonPruner rejects these arguments"),
    ("pruner", "Hyperband", {"max_resource": "auto", "min_resource": True}, "min_resource", "must be an integer"),
])
def test_check_algorithm_args_reports(kind, name, args, arg, rule):
    problems = check_algorithm_args(kind, name, args)
    assert any(p.arg == arg and rule in p.rule for p in problems), problems


def test_check_algorithm_args_accepts_every_scalar_default():
    """Each YAML-settable argument accepts its own default value (the checker's type map is right)."""
    import inspect

    for reg, kind in ((SAMPLERS, "sampler"), (PRUNERS, "pruner")):
        for name in reg.names():
            for arg, p in inspect.signature(reg.get(name)).parameters.items():
                if p.default is inspect.Parameter.empty or callable(p.default):
                    continue
                extra = MINIMAL_PRUNER_ARGS.get(name, {}) if kind == "pruner" else {}
                problems = [q for q in check_algorithm_args(kind, name, {**extra, arg: p.default})
                            if q.arg == arg and "must be" in q.rule]
                assert not problems, (name, arg, problems)
