"""Break features on purpose, one line each, run the tests that should catch it, restore.

Usage: python bench/break_features.py [FEATURE ...]  (prints one JSON line per break; raw output of
the last run: bench/results/trusttests_breaks.txt). Each file is restored after its run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BREAKS = [
 ("resume: a changed space is refused", "hpo/study/_resume.py",
  "            if diff and not allow_space_change:", "            if False:",
  ["tests/hpo/cli/test_cli_run.py", "-k", "changed_space"]),
 ("best-trial rule: direction of the ranking", "hpo/metrics.py",
  "    sign = -1.0 if _maximize(directions) else 1.0", "    sign = 1.0",
  ["tests/hpo/run/test_api.py", "-k", "top_trials"]),
 ("infeasible trials never rank", "hpo/metrics.py",
  "            and t.values and all(math.isfinite(v) for v in t.values) and not is_infeasible(t)]",
  "            and t.values and all(math.isfinite(v) for v in t.values)]",
  ["tests/hpo/test_constraints.py", "-k", "sql_ranking"]),
 ("pruner from the space", "hpo/algorithms.py",
  "    if spec is None:\n        return pruners.NopPruner()\n    return _instantiate(\"pruner\", spec.type, spec.args)",
  "    return pruners.NopPruner()",
  ["tests/hpo/test_algorithms.py"]),
 ("warm start enqueues the configs", "hpo/run/warm_start.py",
  "            study.enqueue_trial(dict(params), user_attrs={\"warm_start\": f\"{warm.source} #{rank}\"},",
  "            (lambda *a, **k: None)(dict(params), user_attrs={\"warm_start\": f\"{warm.source} #{rank}\"},",
  ["tests/hpo/run/test_warm_start.py", "-k", "enqueued_once"]),
 ("heartbeat: stale trial failed and retried", "hpo/study/_claims.py",
  "                optuna.storages.fail_stale_trials(study)", "                pass",
  ["tests/hpo/study/test_study_loop.py", "-k", "stale"]),
 ("artifact upload of trial figures", "hpo/trial/objective.py",
  "                        upload(trial, self.artifacts, path)", "                        pass",
  ["tests/hpo/trial/test_trial_figures.py", "-k", "uploads"]),
 ("bad input: exit code 2", "hpo/cli/__init__.py",
  "        print(f\"error: {exc}\", file=sys.stderr)\n        return 2",
  "        print(f\"error: {exc}\", file=sys.stderr)\n        return 1",
  ["tests/hpo/cli/test_cli_run.py", "-k", "bad_input"]),
 ("baseline (default) enqueued as trial 0", "hpo/study/_resume.py",
  "                    study.enqueue_trial(dict(params), user_attrs={\"baseline\": True})",
  "                    pass",
  ["tests/hpo/cli/test_cli_run.py", "-k", "rerun_and_top_up"]),
 ("conditional parameters (when:)", "hpo/space/_types.py",
  "            if parent not in values or _key(values[parent]) not in {_key(a) for a in allowed}:",
  "            if False:",
  ["tests/hpo/space/test_space_conditionals.py"]),
 ("--set of a searched parameter refused", "hpo/run/api.py",
  "    searched = sorted({p.name for p in space.params} & set(overrides))",
  "    searched = []",
  ["tests/hpo/cli/test_cli_run.py", "tests/hpo/run/test_api.py", "-k", "bad_input or searched"]),
 ("keep weights: top k only", "hpo/trial/checkpoint.py",
  "    keep = {t.number for t in ranked[:top]}", "    keep = {t.number for t in ranked}",
  ["tests/hpo/trial/test_checkpoint.py", "-k", "top1"]),
 ("checkpoint of other params never used", "hpo/trial/checkpoint.py",
  "        elif blob.get(\"identity\") != identity:", "        elif False:",
  ["tests/hpo/trial/test_checkpoint.py", "-k", "other_params"]),
 ("sub-epoch report points", "hpo/trial/subepoch.py",
  "            points[batch] = round(frac * n_train)", "            points[batch] = batch",
  ["tests/hpo/trial/test_subepoch.py", "-k", "report_batches or steps_do_not"]),
 ("memory cap: over-budget config is infeasible", "hpo/trial/memory.py",
  "        if need > cap:", "        if False:",
  ["tests/hpo/test_constraints.py", "-k", "over_the_budget"]),
 ("n_trials exact: claim stops at the target", "hpo/study/_claims.py",
  "        if finished_count(counts) + counts[TrialState.RUNNING] >= n_trials:",
  "        if finished_count(counts) + counts[TrialState.RUNNING] >= n_trials + 1:",
  ["tests/hpo/study/test_study_loop.py", "-k", "counts_finished"]),
]
only = sys.argv[1:]
results = []
for name, path, old, new, args in BREAKS:
    if only and name not in only:
        continue
    full = Path(ROOT, path)
    text = full.read_text()
    assert text.count(old) == 1, (name, text.count(old))
    full.write_text(text.replace(old, new))
    t0 = time.time()
    try:
        got = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "-m", "", "-x", *args], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": ROOT}, timeout=1200,
                             check=False)
        out = got.stdout
        failed = [l.split()[1] for l in out.splitlines() if l.startswith("FAILED")]
        summary = out.strip().splitlines()[-1] if out.strip() else got.stderr[-300:]
    finally:
        full.write_text(text)
    r = {"feature": name, "file": path, "break": new.strip().splitlines()[-1], "failed": failed,
         "summary": summary, "s": round(time.time() - t0)}
    results.append(r)
    print(json.dumps(r), flush=True)
subprocess.run(["git", "diff", "--stat", "hpo"], cwd=ROOT, check=False)
