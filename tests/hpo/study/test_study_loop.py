"""The run loop on real SQLite storages: exact n_trials, top-ups, retries, interruptions, locks."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import ConfigError
from hpo.study import (
    DatabaseLockedError,
    RunInterrupted,
    TooManyFailuresError,
    build_storage,
    busy_cores,
    check_storage_url,
    claim_trial,
    count_states,
    cpu_threads,
    default_storage_url,
    requeue_interrupted,
    resume_view,
    run_one_trial,
    run_trials,
    sampler_seed,
    space_diff,
    stale_running,
    top_trial_ids,
    translate_storage_errors,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _study(tmp_path, name="s", direction="maximize", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = build_storage(f"sqlite:///{tmp_path / 'study.db'}", **kw)
    return optuna.create_study(storage=storage, study_name=name, direction=direction,
                               sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True)


def _objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    if x < -0.8:
        raise optuna.TrialPruned()
    return 1.0 - x * x


def test_run_trials_counts_finished_trials_over_the_whole_study(tmp_path):
    study = _study(tmp_path)
    assert run_trials(study, _objective, n_trials=3).ran == 3
    assert run_trials(study, _objective, n_trials=3).ran == 0  # rerun at the target adds nothing
    assert run_trials(study, _objective, n_trials=5).ran == 2  # a higher target tops up
    counts = count_states(study._storage, study._study_id)
    assert counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] == 5
    assert sorted(t.number for t in study.trials) == list(range(5))


def test_failed_trial_is_recorded_and_the_study_goes_on(tmp_path):
    study = _study(tmp_path)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 1:
            raise RuntimeError("CUDA out of memory (simulated by the objective)")
        return x

    assert run_trials(study, objective, n_trials=3).ran == 4  # the failure does not count
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [1]
    assert failed[0].user_attrs["fail_reason"].startswith("RuntimeError: CUDA out of memory")


def test_a_run_whose_trials_all_fail_stops_with_the_reason(tmp_path):
    study = _study(tmp_path)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number >= 2:  # e.g. every config runs out of memory on this machine
            raise RuntimeError(f"can't allocate memory (trial {trial.number})")
        return x

    with pytest.raises(TooManyFailuresError) as info:
        run_trials(study, objective, n_trials=50, max_failures_in_a_row=4)
    assert "the last 4 trials failed" in str(info.value)
    assert "can't allocate memory (trial 5)" in str(info.value)
    counts = count_states(study._storage, study._study_id)
    assert counts[TrialState.COMPLETE] == 2 and counts[TrialState.FAIL] == 4
    # one success resets the count: a failure every other trial never stops the run
    study2 = _study(tmp_path, name="alternating")
    assert run_trials(study2, lambda t: 1 / (t.number % 2), n_trials=5, max_failures_in_a_row=2).ran == 10


def test_interrupted_trial_is_failed_and_queued_again_exactly_once(tmp_path):
    study = _study(tmp_path)

    def interrupted(trial):
        trial.suggest_float("x", -1.0, 1.0)
        trial.report(0.5, 0)
        raise RunInterrupted(signal.SIGTERM)

    trial = claim_trial(study, 3)
    with pytest.raises(RunInterrupted) as info:
        run_one_trial(study, trial, interrupted)
    assert info.value.exit_code == 143
    first = study.trials[0]
    assert first.state == TrialState.FAIL
    assert first.user_attrs["interrupted"] == "SIGTERM"
    assert requeue_interrupted(study) == [0]
    assert requeue_interrupted(study) == []  # once
    run_trials(study, _objective, n_trials=3)
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == 0]
    assert len(retried) == 1
    assert retried[0].params == first.params and retried[0].state == TrialState.COMPLETE
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried[0]) == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_stale_running_trial_is_failed_and_retried_with_same_params(tmp_path):
    import time

    study = _study(tmp_path, heartbeat_interval=1, grace_period=1)
    orphan = study.ask()  # claimed by a "worker" that then died: one heartbeat, then silence
    orphan.suggest_float("x", -1.0, 1.0)
    study._storage.record_heartbeat(orphan._trial_id)
    time.sleep(2.2)
    assert [n for n, _ in stale_running(study._storage, study._study_id, 1)] == [0]
    run_trials(study, _objective, n_trials=2)
    trials = study.trials
    assert trials[0].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].params == orphan.params
    assert count_states(study._storage, study._study_id)[TrialState.COMPLETE] == 2


def test_top_trial_ids_ranks_in_sql(tmp_path):
    for direction, expect in (("maximize", [3, 1]), ("minimize", [0, 2])):
        study = _study(tmp_path, name=direction, direction=direction)
        for v in (0.1, 0.8, 0.3, 0.9):
            study.add_trial(optuna.trial.create_trial(value=v))
        ids = top_trial_ids(study._storage, study._study_id, 2, maximize=direction == "maximize")
        assert [study._storage.get_trial(i).number for i in ids] == expect


def test_sampler_seed_differs_after_resume_and_per_worker():
    assert sampler_seed(None, 5, 1) is None
    assert sampler_seed(42, 0, 0) == 42  # a fresh study uses the YAML seed as written
    seeds = {sampler_seed(42, n, w) for n in (0, 3, 6) for w in (0, 1, 2)}
    assert len(seeds) == 9
    assert sampler_seed(42, 3, 1) == sampler_seed(42, 3, 1)  # deterministic


def test_seeded_sampler_does_not_replay_after_resume(tmp_path):
    study = _study(tmp_path)
    run_trials(study, _objective, n_trials=3)
    first = [t.params["x"] for t in study.trials]
    # the same process would resume with the YAML seed; the derived seed draws new points
    resumed = optuna.load_study(study_name="s", storage=study._storage,
                                sampler=optuna.samplers.RandomSampler(seed=sampler_seed(0, 3, 0)))
    run_trials(resumed, _objective, n_trials=6)
    later = [t.params["x"] for t in resumed.trials[3:]]
    assert not set(first) & set(later)
    replay = optuna.load_study(study_name="s", storage=study._storage,
                               sampler=optuna.samplers.RandomSampler(seed=0))
    assert replay.sampler.sample_independent(replay, None, "x",
                                             optuna.distributions.FloatDistribution(-1, 1)) == first[0]


def test_space_diff_lists_changes_and_ignores_the_budget():
    old = {"study": {"n_trials": 5, "direction": ["maximize"]},
           "hyperparameters": {"lr": {"type": "float", "low": 0.001, "high": 0.1}}}
    new = {"study": {"n_trials": 50, "direction": ["minimize"]},
           "hyperparameters": {"lr": {"type": "float", "low": 0.001, "high": 0.3},
                               "dropout": {"type": "float", "low": 0.0, "high": 0.5}}}
    diff = space_diff(resume_view(old, {"data": "synthetic"}), resume_view(new, {"device": "cpu"}))
    assert diff == [
        "+ hyperparameters.dropout.high: 0.5",
        "+ hyperparameters.dropout.low: 0.0",
        "+ hyperparameters.dropout.type: \"float\"",
        "~ hyperparameters.lr.high: 0.1 -> 0.3",
        "- overrides.data: \"synthetic\"",
        "~ study.direction: [\"maximize\"] -> [\"minimize\"]",
    ]
    assert space_diff(resume_view(old, {}), resume_view({**old, "study": {"n_trials": 9,
                      "direction": ["maximize"]}}, {"device": "cuda"})) == []


@pytest.mark.parametrize("url, rule", [
    ("sqlite:///:memory:", "in-memory"),
    ("sqlite:///no/such/folder/x.db", "folder of the SQLite file does not exist"),
    ("redis://localhost/0", "unsupported database"),
    ("not a url", "not a database URL"),
])
def test_check_storage_url_rejects(url, rule, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rule):
        check_storage_url(url)
    assert not list(tmp_path.iterdir())  # nothing created


def test_default_storage_url_names_a_file():
    assert default_storage_url("vcr-demo") == "sqlite:///studies/vcr-demo.db"
    with pytest.raises(ConfigError, match="--study-name"):
        default_storage_url("../evil")


def test_locked_sqlite_says_so_and_suggests_postgresql(tmp_path, monkeypatch):
    from hpo.study._backends import STORAGE_BACKENDS

    # the engine's busy timeout, as the registry builds every SQLite engine (60 s shipped)
    monkeypatch.setitem(STORAGE_BACKENDS["sqlite"].engine_kwargs["connect_args"], "timeout", 0.2)
    study = _study(tmp_path)
    holder = sqlite3.connect(tmp_path / "study.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with (pytest.raises(DatabaseLockedError, match=r"locked.* within 0\.2 s.*PostgreSQL"),
              translate_storage_errors("sqlite:///study.db")):
            run_trials(study, _objective, n_trials=1)
    finally:
        holder.rollback()
        holder.close()


def _flock_waiters(path: Path) -> int:
    """Processes or threads blocked in flock() on `path` (Linux /proc/locks, "->" rows)."""
    st = path.stat()
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    rows = Path("/proc/locks").read_text().splitlines()
    return sum(1 for row in rows if " -> " in row and row.split()[-3] == key)


def test_claim_lock_excludes_other_holders(tmp_path, require):
    from hpo.study import claim_lock

    require("Linux /proc/locks", Path("/proc/locks").exists(), "run the tests on Linux")
    study = _study(tmp_path)
    lock = tmp_path / "study.db-lock"
    order: list[str] = []
    inside = threading.Event()

    def other():
        inside.wait()
        with claim_lock(study):  # its own open file: blocks until the main thread lets go
            order.append("other")

    t = threading.Thread(target=other)
    t.start()
    with claim_lock(study):
        inside.set()
        deadline = time.monotonic() + 30
        # the other thread is seen blocked in flock (without the lock it would finish instead)
        while not _flock_waiters(lock) and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        order.append("main")
    t.join(timeout=30)
    assert order == ["main", "other"]
    assert lock.exists()  # beside the file, ignored by git (*.db-*)


def test_reseed_sees_a_different_trial_count_on_every_first_claim(tmp_path):
    study = _study(tmp_path)
    seen: list[int] = []

    def reseed(n):
        seen.append(n)
        return optuna.samplers.RandomSampler(seed=n)

    study.enqueue_trial({"x": 0.5})  # WAITING trials are not counted
    run_trials(study, _objective, n_trials=2, reseed=reseed)
    run_trials(study, _objective, n_trials=4, reseed=reseed)
    assert seen == [0, 2]


@pytest.mark.parametrize(
    "cores, busy, workers, expected",
    [
        (2, 0.0, 1, 2),  # idle: one worker takes both cores
        (2, 0.4, 1, 2),  # background noise does not count
        (2, 0.8, 1, 1),  # another job holds most of a core
        (2, 7.5, 1, 1),  # oversubscribed: never below one thread
        (2, 0.0, 2, 1),
        (2, 0.0, 3, 1),
        (16, 0.0, 4, 4),
        (16, 4.2, 3, 4),
    ],
)
def test_cpu_threads_split_the_idle_cores_between_workers(cores, busy, workers, expected):
    assert cpu_threads(workers, cores=cores, busy=busy) == expected


@pytest.mark.slow
def test_busy_cores_sees_a_spinning_process(require):
    """A process spinning on one core shows up as about one busy core, within the sampling."""
    quiet = busy_cores(0.3)
    require("/proc/stat", quiet is not None, "a Linux machine")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.0 <= quiet <= (os.cpu_count() or 1)
    assert busy >= 0.7  # the spinner alone holds a core (other tests may add to it)


def test_cpu_threads_reads_this_machine(require):
    """Without `busy`, the rule measures this machine: with a thread spinning on one core, 1000
    cores leave at most 999 idle, and the reading never counts more busy cores than there are."""
    require("/proc/stat", busy_cores(0.05) is not None, "a Linux machine")
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        threads = cpu_threads(1, cores=1000)
    finally:
        stop.set()
        spinner.join()
    assert 1000 - (os.cpu_count() or 1) <= threads <= 999
