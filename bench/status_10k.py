"""`vcr-hpo status` on a 10,000-trial SQLite study: storage-level queries against loading every trial.

    python bench/status_10k.py [--trials 10000]

Prints the seconds of `study_status` (what `vcr-hpo status` runs) and of the naive way (load all
trials, count and sort in Python), and their ratio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.study import _optuna, build_storage, study_id, study_status

models = _optuna.models()


def build(path: Path, n: int) -> optuna.storages.RDBStorage:
    """A study of n trials written in one transaction (add_trial would take minutes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = build_storage(f"sqlite:///{path}", heartbeat_interval=None)
    study = optuna.create_study(study_name="big", storage=storage, direction="maximize")
    dist = json.dumps({"name": "FloatDistribution",
                       "attributes": {"low": 1e-4, "high": 0.1, "log": True, "step": None}})
    now = datetime.datetime.now()
    session = storage.scoped_session()
    states = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    for i in range(n):
        state = states[i % 4]
        trial = models.TrialModel(number=i, study_id=study_id(study), state=state,
                                  datetime_start=now, datetime_complete=now)
        session.add(trial)
        session.flush()
        session.add(models.TrialParamModel(trial_id=trial.trial_id, param_name="lr",
                                           param_value=1e-3 * (1 + i % 50), distribution_json=dist))
        for step in range(3):
            session.add(models.TrialIntermediateValueModel(
                trial_id=trial.trial_id, step=step, intermediate_value=0.1 * step,
                intermediate_value_type=models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE))
        session.add(models.TrialUserAttributeModel(trial_id=trial.trial_id, key="feature_channels",
                                                   value_json='{"c2": 64, "c3": 128, "c4": 256, "c5": 512}'))
        if state == TrialState.COMPLETE:
            session.add(models.TrialValueModel(trial_id=trial.trial_id, objective=0,
                                               value=(i * 7919 % 10007) / 10007,
                                               value_type=models.TrialValueModel.TrialValueType.FINITE))
    session.commit()
    return storage


def naive(storage, name: str, top: int):
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    return counts, done[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        storage = build(Path(tmp) / "big.db", args.trials)
        print(f"built {args.trials} trials in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        st = study_status(storage, "big", top=5)
        fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        counts, top = naive(storage, "big", 5)
        slow = time.perf_counter() - t0
        assert [t.number for t in st.top] == [t.number for t in top]
        assert st.counts["COMPLETE"] == counts[TrialState.COMPLETE]
        print(f"study_status (vcr-hpo status): {fast:.3f} s")
        print(f"load every trial + sort:       {slow:.3f} s")
        print(f"ratio: {slow / fast:.0f}x faster")


if __name__ == "__main__":
    main()
