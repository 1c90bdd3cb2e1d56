"""One run plan, built once: `plan_run` places the workers and checks every override; the CLI,
`run_study(plan)` and the worker processes run that plan without planning or checking again."""

from __future__ import annotations

import json
from types import SimpleNamespace

import optuna
import pytest
import torch

import hpo
import hpo.config
import hpo.run.api
import hpo.run.devices
from hpo.cli import main
from hpo.errors import ConfigError
from hpo.run.api import RunPlan, plan_run, run_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(autouse=True)
def _here(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(hpo.run.devices.FAKE_GPUS_ENV, raising=False)


def _count(monkeypatch, module, name: str, calls: list) -> None:
    """Wrap `module.name` so each call appends its args to `calls`, then runs the real one."""
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


def _flag_checks(monkeypatch) -> list[str]:
    """The `where` of every check_field call made for a command-line flag (`--set K`, `--data`)."""
    wheres: list[str] = []
    real = hpo.config.check_field

    def counted(name, value, *, where="config"):
        if where.startswith("--"):
            wheres.append(where)
        return real(name, value, where=where)

    monkeypatch.setattr(hpo.config, "check_field", counted)
    return wheres


def test_cli_run_plans_once_and_checks_each_override_once(tiny_space, tmp_path, monkeypatch):
    plans, placements = [], []
    _count(monkeypatch, hpo.run.api, "plan_run", plans)
    _count(monkeypatch, hpo.run.devices, "device_plan", placements)
    wheres = _flag_checks(monkeypatch)
    ran = []

    def fake_run_study(*args, **kwargs):  # what the CLI hands down, nothing run
        ran.append((args, kwargs))
        return SimpleNamespace(reason="target reached")

    monkeypatch.setattr(hpo.run.api, "run_study", fake_run_study)
    url = f"sqlite:///{tmp_path / 'once.db'}"
    assert main(["run", "--space", str(tiny_space(1)), "--storage", url, "--set", "epochs=1",
                 "--data", "synthetic", "--workers", "2", "--trial-isolation", "process",
                 "--threads", "3", "--quiet"]) == 0
    assert len(plans) == 1 and len(placements) == 1
    assert sorted(wheres) == ["--data", "--set epochs"]  # each override checked once
    (args, kwargs), = ran
    plan, = args
    assert isinstance(plan, RunPlan) and set(kwargs) == {"allow_space_change", "progress"}
    assert [p.index for p in plan.placements] == [0, 1] and plan.workers == 2
    assert (plan.isolation, plan.threads) == ("process", 3)
    assert dict(plan.overrides) == {"epochs": 1, "data": "synthetic"}


def test_override_messages_name_the_flag_that_gave_them(tiny_space, capsys):
    space = str(tiny_space(1))
    for argv, expect in ((["--set", "device=tpu"], "--set device: device: must be auto"),
                         (["--device", "tpu"], "--device: device: must be auto"),
                         (["--set", "epochs=0"], "--set epochs: epochs: must lie in [1, inf)")):
        assert main(["run", "--space", space, *argv]) == 2
        assert expect in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"^--set epochs: epochs: must be an integer"):
        plan_run(space, overrides={"epochs": "two"})


def test_run_study_runs_a_plan_as_it_is(tiny_space, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    plan = plan_run(tiny_space(1), storage=url, n_trials=1, threads=1)
    with pytest.raises(TypeError, match="the plan holds n_trials, workers already"):
        run_study(plan, n_trials=2, workers=2)
    assert not (tmp_path / "plan.db").exists()

    def planned_again(*args, **kwargs):
        raise AssertionError("planned again")

    monkeypatch.setattr(hpo.run.api, "plan_run", planned_again)
    monkeypatch.setattr(hpo.run.devices, "device_plan", planned_again)
    result = run_study(plan)
    assert result.plan is plan and result.finished == 1 and result.reason == "target reached"


# Loaded by every worker process through PYTHONPATH: writes, per process, how often it planned
# a run or placed workers, and which flags it checked. It only observes.
_OBSERVER = """\
import json, os, atexit
import hpo.run.api, hpo.config, hpo.run.devices
_seen = {"plan_run": 0, "device_plan": 0, "flag_checks": []}
def _wrap(module, name, note):
    real = getattr(module, name)
    def wrapped(*args, **kwargs):
        note(args, kwargs)
        return real(*args, **kwargs)
    setattr(module, name, wrapped)
def _plan(a, k): _seen["plan_run"] += 1
def _place(a, k): _seen["device_plan"] += 1
def _check(a, k):
    if k.get("where", "").startswith("--"):
        _seen["flag_checks"].append(k["where"])
_wrap(hpo.run.api, "plan_run", _plan)
_wrap(hpo.run.devices, "device_plan", _place)
_wrap(hpo.config, "check_field", _check)
def _write():
    with open(os.path.join(os.environ["VCR_HPO_TEST_OBSERVE"], f"{os.getpid()}.json"), "w") as f:
        json.dump(_seen, f)
atexit.register(_write)
"""


@pytest.mark.slow
def test_worker_processes_run_the_parents_plan_without_planning_again(tiny_space, tmp_path,
                                                                      monkeypatch, observe_workers):
    """A real run with 2 worker processes: the parent plans once and places the workers once;
    each worker runs its plan as it is (no plan_run, no device plan, no override check)."""
    seen = observe_workers(_OBSERVER)
    plans, placements = [], []
    _count(monkeypatch, hpo.run.api, "plan_run", plans)
    _count(monkeypatch, hpo.run.devices, "device_plan", placements)
    wheres = _flag_checks(monkeypatch)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    result = run_study(tiny_space(1), storage=url, n_trials=2, workers=2, threads=1,
                       overrides={"epochs": 1})
    assert result.finished >= 2 and result.plan.workers == 2
    assert (len(plans), len(placements), wheres) == (1, 1, ["--set epochs"])
    workers = [json.loads(f.read_text()) for f in seen.glob("*.json")]
    assert len(workers) == 2, workers
    assert all(w == {"plan_run": 0, "device_plan": 0, "flag_checks": []} for w in workers), workers
    study = optuna.load_study(study_name="tiny", storage=url)
    assert all(t.params for t in study.trials)
