"""The installed `vcr-hpo` under SIGTERM, SIGINT (once and twice) and SIGKILL, then resumed."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

VCR = shutil.which("vcr-hpo")
GRACE = 2


@pytest.fixture
def env(tmp_path, require):
    require("vcr-hpo on PATH", VCR is not None, "pip install -e .")
    return {**os.environ, "VCR_HPO_HEARTBEAT": "1", "VCR_HPO_GRACE": str(GRACE),
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(args, env, cwd):
    return subprocess.Popen([VCR, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _running_trial(db, proc, timeout=240.0) -> int:
    """Number of the first RUNNING trial that has reported an epoch (it is mid-training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if db.exists():
            with sqlite3.connect(db, timeout=30) as conn:
                try:
                    row = conn.execute(
                        "SELECT t.number FROM trials t JOIN trial_intermediate_values v "
                        "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING' "
                        "GROUP BY t.trial_id ORDER BY t.number LIMIT 1").fetchone()
                except sqlite3.OperationalError:  # tables not created yet
                    row = None
            if row:
                return row[0]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no trial started within {timeout} s: {proc.communicate()}")


def _load(db):
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")


def _resume_args(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if "resume with: " in line]
    assert len(lines) == 1, stderr
    argv = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert argv[:2] == ["vcr-hpo", "run"]
    return argv[1:]


def _assert_retried_once(db, number):
    study = _load(db)
    trials = study.trials
    assert trials[number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert len(retries) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
    assert retries[0].params == trials[number].params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 1  # n_trials counts finished trials: the retry is the one
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [number]
    return trials


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_marks_trial_interrupted_and_resume_retries_it_once(sig, code, env, tiny_space, tmp_path):
    space = tiny_space(epochs=3)
    db = tmp_path / "s.db"
    args = ["run", "--space", str(space), "--storage", f"sqlite:///{db}", "--n-trials", "1"]
    proc = _start(args, env, tmp_path)
    number = _running_trial(db, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    interrupted = _load(db).trials[number]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["interrupted"] == sig.name

    rerun = subprocess.run([VCR, *_resume_args(err)], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    trials = _assert_retried_once(db, number)
    assert [t.user_attrs.get("retry_of") for t in trials].count(number) == 1


def test_sigkill_orphan_is_failed_after_the_grace_period_and_retried_once(env, tiny_space, tmp_path):
    space = tiny_space(epochs=3)
    db = tmp_path / "s.db"
    args = ["run", "--space", str(space), "--storage", f"sqlite:///{db}", "--n-trials", "1"]
    proc = _start(args, env, tmp_path)
    number = _running_trial(db, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert _load(db).trials[number].state == TrialState.RUNNING  # nobody could clean up
    time.sleep(GRACE + 1.5)
    status = subprocess.run([VCR, "status", "--storage", f"sqlite:///{db}"], env=env, cwd=tmp_path,
                            check=False, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert f"orphaned RUNNING trial #{number}" in status.stdout, status.stdout
    rerun = subprocess.run([VCR, *args], env=env, cwd=tmp_path, check=False, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    _assert_retried_once(db, number)


def test_second_ctrl_c_exits_at_once_and_the_trial_is_still_retried_once(env, tiny_space, tmp_path):
    space = tiny_space(epochs=3)
    db = tmp_path / "s.db"
    args = ["run", "--space", str(space), "--storage", f"sqlite:///{db}", "--n-trials", "1"]
    proc = _start(args, env, tmp_path)
    number = _running_trial(db, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    # Either the first signal's cleanup finished (FAIL, interrupted) or the second cut it short
    # (still RUNNING: the heartbeat retry takes over). Both must end in exactly one retry.
    time.sleep(GRACE + 1.5)
    rerun = subprocess.run([VCR, *args], env=env, cwd=tmp_path, check=False, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    _assert_retried_once(db, number)
