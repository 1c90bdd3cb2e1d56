"""The installed `vcr-hpo` killed mid-trial (SIGKILL, SIGINT, SIGTERM to --workers 2), then rerun:
the retried trial resumes from its origin's checkpoint after epoch 2, trains the 3 epochs
left, and ends with the value of an uninterrupted run of the same params and seed."""

from __future__ import annotations

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


def _wait_for_checkpoint(db: Path, artifacts: Path, proc, epoch: int = 2,
                         timeout: float = 300.0) -> int:
    """Number of the first RUNNING trial whose checkpoint holds `epoch` epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        rows = []
        if db.exists():
            with sqlite3.connect(db, timeout=30) as conn:
                try:  # watch the storage: 2 intermediate values, then the checkpoint after them
                    rows = conn.execute(
                        "SELECT t.number FROM trials t JOIN trial_intermediate_values v "
                        "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING' "
                        "GROUP BY t.trial_id HAVING COUNT(*) >= ? ORDER BY t.number",
                        (epoch,)).fetchall()
                except sqlite3.OperationalError:  # tables not created yet
                    pass
        for (number,) in rows:
            if _saved_epoch(artifacts / f"checkpoints/trial-{number}.pt") == epoch:
                return number
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout} s: {proc.communicate()}")


def _reference(db: Path, params: dict) -> optuna.trial.FrozenTrial:
    """The same params and seed trained uninterrupted, by the same objective, in-process."""
    import hpo
    from hpo.objective import Objective

    space = hpo.load_space(db.parent / "kill.yaml")
    ref = optuna.create_study(storage=f"sqlite:///{db.parent / 'ref.db'}", study_name="ref",
                              direction="maximize", load_if_exists=True)
    ref.enqueue_trial(params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref.optimize(Objective(space), n_trials=1)
    finally:
        torch.set_num_threads(threads)
    return ref.trials[-1]


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
    if compare:
        ref = _reference(db, retry.params)
        assert retry.intermediate_values == ref.intermediate_values
        assert retry.value == ref.value
    assert not list((artifacts / "checkpoints").glob("*.pt"))  # dropped when the trials ended
    return study


def test_sigkill_after_epoch_2_resumes_at_epoch_2(run):
    start, again, db, artifacts = run
    proc = start()
    number = _wait_for_checkpoint(db, artifacts, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert _saved_epoch(artifacts / f"checkpoints/trial-{number}.pt") == 2
    time.sleep(GRACE + 1.5)  # the heartbeat goes stale: the next run fails and retries it
    again()
    study = _assert_resumed(db, number, 2, artifacts)
    from hpo.checkpoint import kept_weights

    assert len(kept_weights(study)) == 1  # top 1 of the study = top 1 of its one backbone


def test_sigint_after_epoch_2_resumes_at_epoch_2(run):
    start, again, db, artifacts = run
    proc = start()
    number = _wait_for_checkpoint(db, artifacts, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _saved_epoch(artifacts / f"checkpoints/trial-{number}.pt") == 2
    again()
    _assert_resumed(db, number, 2, artifacts)


def test_sigterm_to_two_workers_resumes_both_trials(run):
    start, again, db, artifacts = run
    proc = start("--workers", "2", "--n-trials", "2")
    number = _wait_for_checkpoint(db, artifacts, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    study = optuna.load_study(study_name="kill", storage=f"sqlite:///{db}")
    stopped = [t.number for t in study.trials if t.user_attrs.get("interrupted") == "SIGTERM"]
    assert number in stopped and len(stopped) == 2, [(t.number, t.state) for t in study.trials]
    saved = {n: _saved_epoch(artifacts / f"checkpoints/trial-{n}.pt") for n in stopped}
    assert saved[number] == 2
    again("--workers", "2", "--n-trials", "2")
    _assert_resumed(db, number, 2, artifacts)
    for other in set(stopped) - {number}:
        if saved[other]:  # it had saved a checkpoint before the signal: resumed from there
            _assert_resumed(db, other, saved[other], artifacts, compare=False)
