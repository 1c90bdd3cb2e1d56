"""Trial isolation: each trial in a forked child; a child that is killed, exhausts its memory,
dies silently or stalls fails alone, and the next trial, in a fresh child, is healthy."""

from __future__ import annotations

import math
import os
import resource
import signal
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import hpo
from hpo.run.isolation import IsolatedObjective, TrialProcessStalled
from hpo.study import build_storage, run_trials
from hpo.trial.objective import Objective

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

_SPACE = """\
study:
  name: iso
  metric: val_acc
  n_trials: 3
  sampler: {type: Random, seed: 0}
  pruner: {type: MedianPruner, n_startup_trials: 1}
  trial_isolation: process
hyperparameters:
  lr: {type: float, low: 0.001, high: 0.01, log: true}
fixed:
  backbone: resnet10t
  epochs: 2
  image_size: 32
  max_train_samples: 32
  synthetic_size: 64
  batch_size: 16
  device: cpu
"""


@pytest.fixture(autouse=True)
def _here(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)


class Misbehaving:
    """The real objective, except that trial 0 (and 1) do what `plan` says first, in the child."""

    def __init__(self, space, plan):
        self.inner = Objective(space)
        self.space, self.on_epoch, self.plan = space, None, plan

    def __call__(self, trial):
        what = self.plan.get(trial.number)
        if what == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if what == "exhaust":  # the child's address space is capped just above what it holds
            cap = _address_space() + (16 << 20)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            torch.ones(1 << 30, dtype=torch.uint8)  # 1 GiB: the allocator must refuse it
        if what == "leak":
            leaked.append(torch.ones(64 << 20, dtype=torch.uint8))  # a module-level leak
        return self.inner(trial)


leaked: list = []


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


def _space_and_study(tmp_path, name: str):
    """The test space (written to the working folder) and a fresh seeded study on SQLite."""
    Path("s.yaml").write_text(_SPACE)
    storage = build_storage(f"sqlite:///{tmp_path / name}.db", heartbeat_interval=None,
                            grace_period=None)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    return hpo.load_space("s.yaml"), study


@pytest.mark.slow
def test_a_killed_or_exhausted_trial_leaves_the_next_trial_healthy(tmp_path):
    space, study = _space_and_study(tmp_path, "iso")
    objective = IsolatedObjective(Misbehaving(space, {0: "sigkill", 1: "exhaust", 2: "leak"}))
    run_trials(study, objective, n_trials=3, max_failures_in_a_row=None)
    trials = sorted(study.trials, key=lambda t: t.number)
    killed, exhausted, leaky, healthy = trials[:4]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"].startswith("trial process killed by SIGKILL")
    # The allocator refused the child's 1 GiB: its trial fails with the reason, in the child.
    assert exhausted.state == TrialState.FAIL
    assert "allocate" in exhausted.user_attrs["fail_reason"].lower()
    for t in (leaky, healthy):  # trained in fresh children: finite values, every epoch reported
        assert t.state == TrialState.COMPLETE and math.isfinite(t.values[0])
        assert sorted(t.intermediate_values) == [0, 1] and t.constraints == {"0": 0.0}
        assert t.user_attrs["device"] == "cpu" and "fail_reason" not in t.user_attrs
    assert leaked == []  # the leak stayed in its child
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY
    assert len({t.params["lr"] for t in trials}) == len(trials)  # the sampler did not replay


@pytest.mark.slow
def test_trial_isolation_from_the_space_runs_the_study(tmp_path):
    """`trial_isolation: process` in the study block: the whole run, params asked in the parent."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Path("s.yaml").write_text(_SPACE)
    result = hpo.run_study("s.yaml", storage=url, n_trials=2, threads=1)
    assert result.finished == 2
    study = optuna.load_study(study_name="iso", storage=url)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(sorted(t.intermediate_values) for t in study.trials)
    # the child's figures reach the trial through the parent (artifacts beside the study)
    from optuna.artifacts import get_all_artifact_meta

    for t in study.trials:
        names = {m.filename for m in get_all_artifact_meta(t, storage=study._storage)}
        assert {"confusion_matrix.png", "confusion_matrix.json"} <= names, names


def test_trial_isolation_key_is_validated():
    from hpo.errors import SearchSpaceError

    Path("bad.yaml").write_text(_SPACE.replace("trial_isolation: process",
                                               "trial_isolation: proces"))
    with pytest.raises(SearchSpaceError) as err:
        hpo.load_space("bad.yaml")
    assert ("bad.yaml: study.trial_isolation (line 7): must be one of none, process, got "
            "'proces'. Did you mean 'process'?") in str(err.value)
    Path("ok.yaml").write_text(_SPACE)
    off = _SPACE.replace("  trial_isolation: process\n", "")
    Path("off.yaml").write_text(off)
    on, plain = hpo.load_space("ok.yaml"), hpo.load_space("off.yaml")
    assert on.study.trial_isolation == "process" and plain.study.trial_isolation == "none"
    assert on.fingerprint == plain.fingerprint  # how a trial runs is not what it means


class Light:
    """A real objective without training (a few ms a trial): trial 0 does what `what` says first."""

    def __init__(self, space, what):
        self.space, self.on_epoch, self.what = space, None, what

    def __call__(self, trial):
        if trial.number == 0:
            self.what()
        return trial.params["lr"]


def _light_study(tmp_path, what, *, stall_timeout, n_trials=1):
    """Run trials of `Light(what)` isolated until `n_trials` finished; the trials by number."""
    space, study = _space_and_study(tmp_path, "light")
    objective = IsolatedObjective(Light(space, what), stall_timeout=stall_timeout)
    run_trials(study, objective, n_trials=n_trials, max_failures_in_a_row=None)
    return sorted(study.trials, key=lambda t: t.number)


def _sleep_forever():
    time.sleep(3600)  # alive, silent, no CPU: a deadlock looks like this from outside


@pytest.mark.timeout(30)
def test_a_stalled_child_is_killed_with_its_stack_and_the_next_trial_runs(tmp_path):
    start = time.monotonic()
    stalled, healthy = _light_study(tmp_path, _sleep_forever, stall_timeout=1.5)
    assert time.monotonic() - start < 10  # 1.5 s of silence, then the stack dump and the kill
    assert stalled.state == TrialState.FAIL
    reason = stalled.user_attrs["fail_reason"]
    assert reason.startswith("trial process stalled: sent nothing and used no CPU for 1.5 s "
                             "(study.trial_stall_timeout), killed; it was at File "), reason
    assert "line" in reason and reason.endswith("in _sleep_forever")
    assert "_child_main" in stalled.user_attrs["stall_traceback"]
    assert healthy.state == TrialState.COMPLETE and healthy.values == [healthy.params["lr"]]


def _exit_7():
    os._exit(7)


def _sigkill():
    os.kill(os.getpid(), signal.SIGKILL)


def _exit_leaving_a_child_on_the_pipe():
    """Die while a child of ours (fork, no exec) keeps every inherited descriptor for 20 s."""
    pid = os.fork()
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    Path("grandchild.pid").write_text(str(pid))
    os._exit(5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("what", "reason"), [
    (_exit_7, "trial process exited with code 7 before reporting a result"),
    (_sigkill, "trial process killed by SIGKILL"),
    (_exit_leaving_a_child_on_the_pipe, "trial process exited with code 5 before reporting"),
], ids=["exit", "sigkill", "pipe-held-open"])
def test_a_child_that_dies_without_a_word_fails_with_its_cause(tmp_path, what, reason):
    start = time.monotonic()
    try:
        dead, healthy = _light_study(tmp_path, what, stall_timeout=None)
    finally:
        if Path("grandchild.pid").exists():
            os.kill(int(Path("grandchild.pid").read_text()), signal.SIGKILL)
    # noticed from its exit status, not from the pipe (which its child holds open) nor a timeout
    assert time.monotonic() - start < 10
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"].startswith(reason), dead.user_attrs["fail_reason"]
    assert healthy.state == TrialState.COMPLETE


def test_a_stall_timeout_must_be_positive():
    with pytest.raises(ValueError, match="stall_timeout: must be positive seconds or None, got 0"):
        IsolatedObjective(Light(None, None), stall_timeout=0)
    with pytest.raises(TypeError):  # keyword only
        IsolatedObjective(Light(None, None), 60)
    assert issubclass(TrialProcessStalled, hpo.run.isolation.TrialProcessDied)


def _convolve():
    with torch.no_grad():
        torch.nn.Conv2d(3, 16, 3)(torch.randn(8, 3, 64, 64))


@pytest.mark.timeout(60)
def test_a_child_forked_after_openmp_ran_in_the_worker_computes_with_threads(tmp_path):
    """GNU OpenMP keeps its thread pool per thread and has no fork handler: a child forked from
    the thread that ran a parallel region on 2 threads waited forever at its own first one."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _convolve()  # the worker's main thread now owns a pool of 2 OpenMP threads
        trial = _light_study(tmp_path, _convolve, stall_timeout=10)[0]
    finally:
        torch.set_num_threads(before)
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")


def test_trial_stall_timeout_key_defaults_and_is_left_out_of_the_fingerprint():
    from hpo.space import STALL_TIMEOUT

    Path("ok.yaml").write_text(_SPACE)
    Path("set.yaml").write_text(_SPACE.replace("  trial_isolation: process\n",
                                               "  trial_isolation: process\n"
                                               "  trial_stall_timeout: 90\n"))
    Path("off.yaml").write_text(_SPACE.replace("  trial_isolation: process\n",
                                               "  trial_isolation: process\n"
                                               "  trial_stall_timeout: null\n"))
    ok, set_, off = (hpo.load_space(f) for f in ("ok.yaml", "set.yaml", "off.yaml"))
    assert (ok.study.trial_stall_timeout, set_.study.trial_stall_timeout,
            off.study.trial_stall_timeout) == (STALL_TIMEOUT, 90.0, None)
    assert ok.fingerprint == set_.fingerprint == off.fingerprint  # how a trial runs
