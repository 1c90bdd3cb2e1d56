"""What per-image validation records cost per evaluation: writing one (encode, temp file, upload
to a folder artifact store, the metadata row in SQLite) and the pruner's read of two, at 200 and
2,000 validation images; plus the file size.

    PYTHONPATH=. python bench/record_overhead.py > bench/results/record_overhead.txt
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpo.records import encode_record, val_key
from hpo.trial.artifacts import artifact_store
from hpo.trial.record_store import StoreRecords, write_record

REPEATS = 40


def _ms(times: list[float]) -> str:
    q = np.percentile(times, [50, 90]) * 1000
    return f"median {q[0]:.2f} ms, p90 {q[1]:.2f} ms"


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"# record overhead, {REPEATS} writes per size, SQLite study + folder artifact store")
    for n in (200, 2000):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/s.db"
            study = optuna.create_study(storage=url, study_name="r", direction="maximize")
            store = artifact_store(url, "r", f"{tmp}/art")
            trial = study.ask()
            rng = np.random.default_rng(0)
            correct = rng.random(n) < 0.8
            loss = rng.random(n).astype(np.float32) * 3
            key = val_key(np.arange(n) % 10)
            writes = []
            for step in range(REPEATS):
                t0 = time.perf_counter()
                write_record(trial, store, step, correct, loss, key)
                writes.append(time.perf_counter() - t0)
            frozen = study._storage.get_trial(trial._trial_id)
            source = StoreRecords(store)
            reads = []
            for step in range(REPEATS):
                t0 = time.perf_counter()
                source.read(frozen, step)
                source.read(frozen, (step + 1) % REPEATS)
                reads.append(time.perf_counter() - t0)
            size = len(encode_record(correct, loss, key))
            print(f"{n} images: write {_ms(writes)}; pruner read of 2 records {_ms(reads)}; "
                  f"{size} bytes per record")
    print(f"# cpu: {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} (shared machine)")


if __name__ == "__main__":
    main()
