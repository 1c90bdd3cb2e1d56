"""Out of memory as a constraint: infeasible trials are COMPLETE with a violated constraint, never
best, visible as such; TPE learns to avoid them because they are COMPLETE (not FAILed), and the
constraint keeps them below pruned trials (a fixed memory budget stands in for a GPU)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import hpo
from hpo.cli import main
from hpo.constraints import (
    INFEASIBLE_ATTR,
    constraint_values,
    infeasible_values,
    is_infeasible,
    is_out_of_memory,
)
from hpo.study import build_storage, run_trials, study_status, top_trial_ids, top_trials
from hpo.trial.memory import MEMORY_CAP_ENV, MemoryBudgetError

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# resnet10t at 32 px: the preflight estimates ~76 MiB + 0.64 MiB per image of the batch, so a
# 96 MiB budget makes batch_size > 32 infeasible: about half of [2, 64].
_SPACE = """\
study:
  name: oom
  metric: val_acc
  n_trials: 20
  sampler: {{type: TPE, seed: {seed}}}
  pruner: null
hyperparameters:
  batch_size: {{type: int, low: 2, high: 64}}
  lr: {{type: float, low: 0.001, high: 0.1, log: true}}
fixed:
  backbone: resnet10t
  epochs: 1
  image_size: 32
  max_train_samples: 64
  synthetic_size: 96
  device: cpu
"""
_CAP_MB = 96
_LIMIT = 32  # batch sizes above this exceed the budget (checked in the test)


@pytest.fixture(autouse=True)
def _here(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. "
                                         "DefaultCPUAllocator: can't allocate memory: you tried "
                                         "to allocate 1099511627776 bytes"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(MemoryBudgetError("over the cap"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an allocator's error type
    try:  # a library that wraps the allocator's refusal in its own error
        try:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        except RuntimeError as inner:
            raise ValueError("weights do not match") from inner
    except ValueError as wrapped:
        assert is_out_of_memory(wrapped)
    assert infeasible_values(["maximize", "minimize"]) == (-math.inf, math.inf)


def test_a_trial_over_the_budget_is_infeasible_never_best_and_says_why(monkeypatch, capsys):
    Path("s.yaml").write_text(_SPACE.format(seed=0))
    url = "sqlite:///oom.db"
    monkeypatch.setenv(MEMORY_CAP_ENV, "1")  # 1 MiB: every config is over it
    result = hpo.run_study("s.yaml", storage=url, n_trials=2, threads=1)
    assert result.best is None and result.counts["COMPLETE"] == 2
    study = optuna.load_study(study_name="oom", storage=url)
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and t.values == [-math.inf]
        assert t.system_attrs["constraints"] == [1.0] and t.constraints == {"0": 1.0}
        assert t.user_attrs[INFEASIBLE_ATTR] == "out of memory"
        assert "over $VCR_HPO_MEMORY_CAP_MB=1" in t.user_attrs["fail_reason"]
        assert is_infeasible(t)
    with pytest.raises(ValueError, match="No feasible trials"):  # Optuna reads the constraint
        _ = study.best_trial
    monkeypatch.delenv(MEMORY_CAP_ENV)
    result = hpo.run_study("s.yaml", storage=url, n_trials=3, threads=1)  # one feasible trial
    study = optuna.load_study(study_name="oom", storage=url)
    good = study.trials[2]
    assert good.constraints == {"0": 0.0} and not is_infeasible(good)
    assert [t.number for t in top_trials(study)] == [2]
    assert [t.number for t in top_trials(study, 5)] == [2]  # the SQL ranks the same
    assert result.best.number == 2 and study.best_trial.number == 2
    storage = build_storage(url, heartbeat_interval=None, grace_period=None)
    st = study_status(storage, "oom")
    assert st.infeasible == 2 and [t.number for t in st.top] == [2]
    capsys.readouterr()
    assert main(["status", "--storage", url]) == 0
    assert "(2 infeasible: out of memory)" in capsys.readouterr().out


def test_sql_ranking_skips_an_infeasible_trial_with_a_finite_value(tmp_path):
    """Even a trial whose value looks best is never ranked once it is marked infeasible."""
    storage = build_storage(f"sqlite:///{tmp_path / 'r.db'}", heartbeat_interval=None,
                            grace_period=None)
    study = optuna.create_study(storage=storage, study_name="r", direction="maximize")
    for value, bad in ((0.5, False), (0.99, True), (0.7, False)):
        trial = study.ask()
        if bad:
            trial.set_user_attr(INFEASIBLE_ATTR, "out of memory")
        study.tell(trial, value)
    assert [t.number for t in top_trials(study)] == [2, 0]
    ids = top_trial_ids(storage, study._study_id, 5, maximize=True)
    assert [storage.get_trial(i).number for i in ids] == [2, 0]


def _tpe_infeasible_proposals(seed: int, constrained: bool) -> int:
    """Infeasible proposals among 20 TPE trials after 10 random ones, in a study where 3 of 4
    feasible trials are pruned after one report (as under a pruner) and batches over _LIMIT run
    out of memory. The infeasible ones are told as the objective tells them (worst value and
    `constraint_values`); `constrained=False` gives them the feasible constraint list instead."""
    from optuna.distributions import IntDistribution

    from hpo.study._optuna import set_constraints

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10))
    rng = random.Random(seed)
    over = 0
    for i in range(30):
        trial = study.ask({"batch_size": IntDistribution(2, 64)})
        batch = trial.params["batch_size"]
        if batch > _LIMIT:
            over += i >= 10
            set_constraints(trial, constraint_values("out of memory" if constrained else None))
            study.tell(trial, -math.inf)
        elif rng.random() < 0.75:
            trial.report(batch / _LIMIT, 0)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            set_constraints(trial, constraint_values(None))
            study.tell(trial, batch / _LIMIT)
    return over


def test_the_constraint_ranks_out_of_memory_trials_below_pruned_ones_for_tpe():
    """The -inf value alone already ranks an infeasible trial below every feasible COMPLETE one,
    so without pruning the constraint changes nothing for TPE. With most trials pruned, TPE's
    best group takes COMPLETE trials first: a -inf trial without the violated constraint lands
    in it and TPE proposes near it; with the constraint it ranks below every pruned trial."""
    with_c = [_tpe_infeasible_proposals(seed, True) for seed in range(8)]
    without = [_tpe_infeasible_proposals(seed, False) for seed in range(8)]
    print(f"infeasible proposals in trials 10-29, seeds 0-7: with the constraint {with_c}, "
          f"without {without}")
    assert sum(with_c) <= sum(without) - 10, (with_c, without)


def _infeasible_share(seed: int, constrained: bool, monkeypatch) -> tuple[int, int, list]:
    """Run 20 TPE trials under the budget; (infeasible among trials 10-19, their count, best)."""
    from hpo.trial.objective import Objective

    monkeypatch.setenv(MEMORY_CAP_ENV, str(_CAP_MB))
    Path("s.yaml").write_text(_SPACE.format(seed=seed))
    space = hpo.load_space("s.yaml")
    storage = build_storage(f"sqlite:///c{seed}{constrained}.db", heartbeat_interval=None,
                            grace_period=None)
    study = optuna.create_study(storage=storage, study_name="c", direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.NopPruner())
    objective = Objective(space)

    def unconstrained(trial):  # what Optuna samplers saw before: the OOM trial FAILs
        value = objective(trial)
        if trial.user_attrs.get(INFEASIBLE_ATTR):
            raise MemoryError(trial.user_attrs["fail_reason"])
        return value

    def twenty(study, frozen):  # 20 trials whatever their state (FAILed ones never count)
        if len(study.trials) >= 20:
            study.stop()

    run_trials(study, objective if constrained else unconstrained, n_trials=20,
               callbacks=[twenty], max_failures_in_a_row=None)
    trials = sorted(study.trials, key=lambda t: t.number)
    over = [t.params["batch_size"] > _LIMIT for t in trials]
    assert all(o == bool(t.user_attrs.get(INFEASIBLE_ATTR)) for o, t in zip(over, trials))
    best = top_trials(study, 1)
    return sum(over[10:20]), len(over[10:20]), best


@pytest.mark.slow
def test_tpe_proposes_fewer_infeasible_configs_when_oom_trials_are_complete_not_failed(monkeypatch):
    """What the gain comes from: an out-of-memory trial told COMPLETE with the worst value (and
    the constraint) against the same trial FAILed, which no sampler sees. Without pruning the
    constraint itself adds nothing for TPE here (the -inf value already ranks the trial last);
    see test_the_constraint_ranks_out_of_memory_trials_below_pruned_ones_for_tpe."""
    with_c = without = 0
    for seed in (0, 1):
        n, total, best = _infeasible_share(seed, True, monkeypatch)
        assert total == 10 and best and not is_infeasible(best[0])
        assert best[0].params["batch_size"] <= _LIMIT
        with_c += n
        n, _, best = _infeasible_share(seed, False, monkeypatch)
        without += n
        assert best and best[0].params["batch_size"] <= _LIMIT
    print(f"infeasible proposals in trials 10-19, seeds 0 and 1: told COMPLETE {with_c}/20, "
          f"FAILed {without}/20")
    assert with_c <= without - 3 and with_c <= 0.6 * without, (with_c, without)
