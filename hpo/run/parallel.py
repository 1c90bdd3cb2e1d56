"""The parent side of `run_study(workers=N)`: start N worker processes, watch the storage.

Each worker (`python -m hpo.run.worker_main`) runs its own trial loop on the shared storage; this
process forwards SIGINT/SIGTERM to them once, updates the progress bar from the storage, and says why
they stopped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VcrHpoError

if TYPE_CHECKING:
    import optuna

    from .api import RunPlan

__all__ = ["bar_best", "run_workers", "start_workers", "worker_command", "workers_outcome"]


def bar_best(study: optuna.Study) -> tuple[int, float] | None:
    """(number, first value) of the best trial, as the progress bar shows it."""
    from ..study import top_trials

    best = top_trials(study, 1)
    return (best[0].number, best[0].values[0]) if best else None


def workers_outcome(study, plan: RunPlan):
    """Why the workers stopped, read from the storage."""
    from .. import study as S

    counts = S.count_states(study, S.study_id(study))
    finished = S.finished_count(counts)
    if finished >= plan.n_trials:
        return S.RunOutcome(0, "target reached", f"target reached: {plan.n_trials} finished trials")
    points = S.distinct_points(study)
    if plan.grid_points is not None and points >= plan.grid_points:
        return S.RunOutcome(0, "grid exhausted",
                            f"grid exhausted: {points} of {plan.grid_points} points")
    if plan.timeout is not None:
        return S.RunOutcome(0, "timeout", f"timeout: {plan.timeout:g} s")
    return S.RunOutcome(0, "grid exhausted", f"grid exhausted: {points} of {points} points")


def worker_command(spec_file: Path, index: int) -> list[str]:
    """The command line of worker `index` (`python -m hpo.run.worker_main SPEC INDEX`)."""
    return [sys.executable, "-m", "hpo.run.worker_main", str(spec_file), str(index)]


def start_workers(placements: Sequence, spec_file: Path, env: Mapping[str, str],
                  command: Callable[[Path, int], list[str]] = worker_command) -> list:
    """Start one process per placement, each with its placement's `CUDA_VISIBLE_DEVICES`.

    Own sessions: a terminal Ctrl-C reaches only the parent, which forwards it once (a doubled
    signal would make the workers exit without marking their trials interrupted).
    """
    import subprocess

    from .devices import FAKE_GPUS_ENV

    base = {k: v for k, v in env.items() if k != FAKE_GPUS_ENV}  # a worker sees only its GPU
    return [subprocess.Popen(command(spec_file, p.index), env={**base, **p.env()},
                             start_new_session=True)
            for p in placements]


def run_workers(study, plan: RunPlan, bar, allow_space_change: bool) -> None:
    """Start the plan's worker processes (one trial loop each) and watch the storage until they
    end. Each gets `plan.for_worker(index)`: it runs that as it is, planning nothing again."""
    import pickle
    import signal
    import tempfile
    import time

    from optuna.trial import TrialState

    from .. import study as S

    placements = plan.placements
    spec = {"plans": [plan.for_worker(p.index) for p in placements],
            "allow_space_change": allow_space_change}
    with tempfile.TemporaryDirectory(prefix="vcr-hpo-") as tmp:
        spec_file = Path(tmp) / "run.pickle"
        spec_file.write_bytes(pickle.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads)}
        procs = start_workers(placements, spec_file, env)
        received: list[int] = []

        def forward(signum, frame):
            received.append(signum)
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signum)  # a second signal reaches them too: they exit at once
            if len(received) > 1:
                os._exit(128 + signum)

        def poll() -> None:
            counts = S.count_states(study, S.study_id(study))
            bar.poll(S.finished_count(counts), bar_best(study), counts[TrialState.RUNNING])

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while any(p.poll() is None for p in procs):
                poll()
                time.sleep(1.0)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        codes = [p.wait() for p in procs]
    poll()
    if received:
        raise S.RunInterrupted(received[0])
    bad = [c for c in codes if c != 0]
    if bad:
        raise VcrHpoError(f"{plan.url}: {len(bad)} of {plan.workers} workers failed, got exit codes "
                          f"{codes}. Their errors are printed above")
