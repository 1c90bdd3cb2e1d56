"""The installed `vcr-hpo` killed mid-trial (SIGKILL, SIGINT, SIGTERM to --workers 2), then rerun:
the retried trial resumes from its origin's checkpoint, trains the epochs left, and ends with
the values, metrics, confusion matrix and final weights (bit for bit) of an uninterrupted run of
the same params and seed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

VCR = shutil.which("vcr-hpo")
GRACE = 3
EPOCHS = 5

# resnet10t only (both workers' trials train at one speed), 10 steps an epoch: long enough to
# stop a trial between its second and third checkpoint.
SPACE = f"""\
study:
  name: kill
  metric: val_acc
  n_trials: 1
  sampler: {{type: Random, seed: 3}}
  pruner: null
  keep_weights: {{top: 2, per_backbone: 2}}  # both trials of the two-worker test
hyperparameters:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}}
  dropout: {{type: float, low: 0.0, high: 0.5, default: 0.1}}
fixed:
  backbone: resnet10t
  epochs: {EPOCHS}
  image_size: 32
  max_train_samples: 320
  synthetic_size: 400
  batch_size: 32
  device: cpu
"""


@pytest.fixture
def run(tmp_path, require):
    require("the installed vcr-hpo", VCR is not None, "pip install -e .")
    space = tmp_path / "kill.yaml"
    space.write_text(SPACE)
    env = {**os.environ, "VCR_HPO_HEARTBEAT": "1", "VCR_HPO_GRACE": str(GRACE),
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "VCR_HPO_CHECKPOINT_RATIO": "0"}  # every epoch: these tiny epochs cost less
    db = tmp_path / "s.db"
    args = ["run", "--space", str(space), "--storage", f"sqlite:///{db}", "--threads", "1",
            "--quiet"]

    def start(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([VCR, *args, *extra], env=env, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def again(*extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run([VCR, *args, *extra], check=False, env=env, cwd=tmp_path,
                              capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    return start, again, db, tmp_path / "kill-artifacts"


def _saved_epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, weights_only=True)["state"]["epoch"])
    except Exception:  # noqa: BLE001 (not there yet)
        return None


def _rows(db: Path, sql: str, *params) -> list[tuple]:
    """The rows `sql` selects from the study file; none while it or its tables are not made yet."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def _checkpoint(db: Path, artifacts: Path, number: int) -> Path:
    """Where trial `number`'s checkpoint is: in the study's scope (read from the study file)."""
    from hpo.trial.artifacts import ATTR_SCOPE
    from hpo.trial.checkpoint import checkpoint_key

    rows = _rows(db, "SELECT value_json FROM study_user_attributes WHERE key = ?", ATTR_SCOPE)
    return artifacts / checkpoint_key(number, json.loads(rows[0][0]) if rows else "")


def _poll(proc, find, what: str, timeout: float):
    """The first answer of `find()` that is not None, asked every 50 ms while `proc` runs; after
    `timeout` s `proc` is killed and the test fails naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        found = find()
        if found is not None:
            return found
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {what} within {timeout} s: {proc.communicate()}")


def _wait_for_checkpoint(db: Path, artifacts: Path, proc, epoch: int = 2,
                         timeout: float = 300.0) -> int:
    """Number of the first RUNNING trial whose checkpoint holds `epoch` epochs."""

    def find() -> int | None:
        # watch the storage: `epoch` intermediate values, then the checkpoint after them
        rows = _rows(db, "SELECT t.number FROM trials t JOIN trial_intermediate_values v "
                         "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING' "
                         "GROUP BY t.trial_id HAVING COUNT(*) >= ? ORDER BY t.number", epoch)
        for (number,) in rows:
            if _saved_epoch(_checkpoint(db, artifacts, number)) == epoch:
                return number
        return None

    return _poll(proc, find, f"checkpoint of epoch {epoch}", timeout)


def _wait_for_both(db: Path, artifacts: Path, proc, timeout: float = 300.0) -> dict[int, int]:
    """Trial number -> saved epoch, once both RUNNING trials hold a checkpoint of 1..EPOCHS-1
    epochs (so both have something to resume from and neither has ended)."""

    def find() -> dict[int, int] | None:
        numbers = [n for (n,) in _rows(db, "SELECT number FROM trials WHERE state = 'RUNNING' "
                                           "ORDER BY number")]
        saved = {n: _saved_epoch(_checkpoint(db, artifacts, n)) for n in numbers}
        if len(saved) == 2 and all(e is not None and 1 <= e < EPOCHS for e in saved.values()):
            return saved
        return None

    return _poll(proc, find, "two checkpoints", timeout)


def _reference(db: Path, params: dict) -> tuple[optuna.trial.FrozenTrial, dict]:
    """The same params and seed trained uninterrupted, by the same objective and weight keeping,
    in-process: the trial and its final weights."""
    import hpo
    from hpo.trial.artifacts import artifact_store
    from hpo.trial.checkpoint import keep_best_weights
    from hpo.trial.objective import Objective

    space = hpo.load_space(db.parent / "kill.yaml")
    url = f"sqlite:///{db.parent / 'ref.db'}"
    name = f"ref{len(list(db.parent.glob('ref*-artifacts')))}"
    ref = optuna.create_study(storage=url, study_name=name, direction="maximize")
    store = artifact_store(url, name, str(db.parent / f"{name}-artifacts"))
    ref.enqueue_trial(params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref.optimize(Objective(space, artifacts=store), n_trials=1,
                     callbacks=[keep_best_weights(store)])
    finally:
        torch.set_num_threads(threads)
    return ref.trials[-1], _weights(ref, store, 0, db.parent / f"{name}.pt")


def _weights(study: optuna.Study, store, number: int, dest: Path) -> dict:
    from hpo.trial.checkpoint import read_weights

    assert read_weights(store, study, number, dest) is not None, f"trial {number}: no weights kept"
    return torch.load(dest, map_location="cpu", weights_only=True)


def _assert_resumed(db: Path, origin: int, epoch: int, artifacts: Path, compare: bool = True):
    study = optuna.load_study(study_name="kill", storage=f"sqlite:///{db}")
    trials = study.trials
    assert trials[origin].state == TrialState.FAIL
    (retry,) = [t for t in trials if (t.system_attrs.get("retry_history") or [None])[-1] == origin]
    assert retry.state == TrialState.COMPLETE, retry.user_attrs
    assert retry.params == trials[origin].params
    assert retry.user_attrs["resumed_from_epoch"] == epoch
    assert retry.user_attrs["resumed_from_trial"] == origin
    assert len(retry.user_attrs["epoch_seconds"]) == EPOCHS - epoch  # epochs it trained itself
    assert sorted(retry.intermediate_values) == list(range(EPOCHS))  # one curve for the pruner
    if compare:  # the whole resumed state: every epoch's value, metrics, confusion, weights
        from hpo.trial.artifacts import artifact_store

        ref, ref_weights = _reference(db, retry.params)
        assert retry.intermediate_values == ref.intermediate_values
        assert retry.value == ref.value
        for key in ("best_epoch", "best_metrics", "confusion"):
            assert retry.user_attrs[key] == ref.user_attrs[key], key
        got = _weights(study, artifact_store(f"sqlite:///{db}", "kill", str(artifacts)),
                       retry.number, db.parent / f"retry-{retry.number}.pt")
        assert got["epoch"] == ref_weights["epoch"] and got["config"] == ref_weights["config"]
        assert got["model"].keys() == ref_weights["model"].keys()
        for name, tensor in ref_weights["model"].items():
            assert torch.equal(got["model"][name], tensor), name
    assert not list((artifacts / "checkpoints").rglob("*.pt"))  # dropped when the trials ended
    return study


def test_sigkill_after_epoch_2_resumes_at_epoch_2(run):
    start, again, db, artifacts = run
    proc = start()
    number = _wait_for_checkpoint(db, artifacts, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert _saved_epoch(_checkpoint(db, artifacts, number)) == 2
    time.sleep(GRACE + 1.5)  # the heartbeat goes stale: the next run fails and retries it
    again()
    study = _assert_resumed(db, number, 2, artifacts)
    from hpo.trial.checkpoint import kept_weights

    assert len(kept_weights(study)) == 1  # the study's one trial


def test_sigint_after_epoch_2_resumes_at_epoch_2(run):
    start, again, db, artifacts = run
    proc = start()
    number = _wait_for_checkpoint(db, artifacts, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _saved_epoch(_checkpoint(db, artifacts, number)) == 2
    again()
    _assert_resumed(db, number, 2, artifacts)


def test_sigterm_to_two_workers_resumes_both_trials(run):
    start, again, db, artifacts = run
    proc = start("--workers", "2", "--n-trials", "2")
    waited = _wait_for_both(db, artifacts, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    study = optuna.load_study(study_name="kill", storage=f"sqlite:///{db}")
    stopped = [t.number for t in study.trials if t.user_attrs.get("interrupted") == "SIGTERM"]
    assert sorted(stopped) == sorted(waited), [(t.number, t.state) for t in study.trials]
    saved = {n: _saved_epoch(_checkpoint(db, artifacts, n)) for n in stopped}
    assert all(saved[n] is not None and saved[n] >= waited[n] for n in stopped), (saved, waited)
    again("--workers", "2", "--n-trials", "2")
    for number in stopped:  # both had saved a checkpoint before the signal: both resume from it
        _assert_resumed(db, number, saved[number], artifacts)
