"""A run imports matplotlib only when a trial's figures are drawn (it costs start-up seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
import hpo.run.api, hpo.trial.objective, hpo.trial.checkpoint, hpo.trial.artifacts, hpo.cli
print("before", "matplotlib" in sys.modules)
from types import SimpleNamespace as N
from hpo.trial.figures import write_trial_figures
m = N(epoch=0, train_loss=1.0, val_loss=1.0, val_acc=0.5, val_macro_f1=0.5,
      confusion=[[1, 0], [0, 1]])
write_trial_figures(sys.argv[1], [m], ["a", "b"])
print("after", "matplotlib" in sys.modules)
"""


def test_the_run_path_imports_matplotlib_only_to_draw(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path)], capture_output=True,
                          text=True, env=env, check=False, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["before", "False", "after", "True"]
