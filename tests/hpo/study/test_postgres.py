"""Three `vcr-hpo run` workers on one PostgreSQL study: exact count, dense numbers, no duplicates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from hpo.study import build_storage

pytestmark = [pytest.mark.slow, pytest.mark.postgres,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

VCR = shutil.which("vcr-hpo")


def test_three_workers_on_one_postgres_study(postgres_url, tiny_space, tmp_path, require):
    require("vcr-hpo on PATH", VCR is not None, "pip install -e .")
    space = tiny_space(epochs=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [VCR, "run", "--space", str(space), "--storage", postgres_url, "--n-trials", "7"]
    # One command with two worker processes, plus one started on its own as a second machine
    # would: three processes race to create the study, enqueue the baseline and claim trials.
    procs = [subprocess.Popen([*base, "--workers", "2"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             subprocess.Popen([*base, "--quiet"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    assert "SQLite" not in outputs[0][1]  # the SQLite warning is for SQLite only

    storage = build_storage(postgres_url, heartbeat_interval=None)  # psycopg2 for postgresql://
    study = optuna.load_study(study_name="tiny", storage=storage)
    trials = study.trials
    assert len(trials) == 7
    assert sorted(t.number for t in trials) == list(range(7))
    assert [t.state for t in trials].count(TrialState.FAIL) == 0
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 7, params
    assert sum(1 for t in trials if t.user_attrs.get("baseline")) == 1
    assert "best trial #" in outputs[0][0]


def test_processes_creating_the_schema_at_once_all_succeed(postgres_url):
    """Machines starting on a new database race to create Optuna's tables; none may fail."""
    code = ("import sys; from hpo.study import build_storage; "
            "s = build_storage(sys.argv[1], heartbeat_interval=None); print(len(s.get_all_studies()))")
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "0", err
