"""Parallel scaling: trials per hour of `vcr-hpo run --workers N` on this machine.

Runs the installed `vcr-hpo run` (what a user runs) on a temporary SQLite study once per worker
count. The space keeps the work per trial equal (one backbone, one batch size, no pruner; only lr
and dropout are searched), so trials per hour compare worker counts, not lucky configurations.
Two rates: "steady" = finished trials / (last trial end - first trial start), read from the
storage (what a long study sees); "with start-up" = finished trials / command wall time (each
worker process imports torch, timm and optuna first). Torch threads per worker follow the runner's
rule (read just before each run), or --threads. Wall times on a shared machine are noisy: the
load is printed beside them.

    python bench/parallel.py                          # 1 and 2 workers, 8 trials each (minutes)
    python bench/parallel.py --quick                  # smoke-sized
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

from hpo.study import cpu_threads


def bench_space(args) -> str:
    """The YAML of a space whose trials all cost the same."""
    import yaml

    doc = {
        "study": {"name": "bench-parallel", "metric": "val_acc", "direction": "maximize",
                  "n_trials": args.n_trials, "sampler": {"type": "Random", "seed": 0},
                  "pruner": None},
        "hyperparameters": {
            "lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
        },
        "fixed": {"backbone": args.backbone, "batch_size": 32, "optimizer": "adamw",
                  "scheduler": "cosine", "pretrained": False, "data": "synthetic",
                  **C.tiny_overrides(epochs=args.epochs, image_size=args.image_size,
                                     train=args.train, val=args.val)},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def trial_window(url: str) -> tuple[int, float, float]:
    """(finished trials, first start -> last end seconds, mean trial seconds) from the storage."""
    import optuna

    study = optuna.load_study(study_name="bench-parallel", storage=url)
    done = [t for t in study.trials if t.state.is_finished() and t.datetime_complete]
    if not done:
        return 0, float("nan"), float("nan")
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    mean = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done) / len(done)
    return len(done), (last - first).total_seconds(), mean


def run(args) -> int:
    exe = shutil.which("vcr-hpo")
    if exe is None:
        raise SystemExit("vcr-hpo is not installed: pip install -e \".[dev]\"")
    C.print_header("parallel: trials per hour with --workers N (installed vcr-hpo, SQLite)")
    print(f"# {args.n_trials} trials per run, {args.backbone}, {args.epochs} epochs, "
          f"{args.image_size} px, {args.train} train / {args.val} val synthetic images, no pruner; "
          f"rule (hpo.study.cpu_threads): max(1, idle cores // N), idle cores = "
          f"os.cpu_count() - busy cores (/proc/stat), at least 1; os.cpu_count() = {os.cpu_count()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        space = Path(tmp) / "parallel.yaml"
        space.write_text(bench_space(args))
        env = {**os.environ, "VCR_HPO_CACHE": str(Path(tmp) / "cache"), "HF_HUB_OFFLINE": "1"}
        # draw the dataset once, so no worker count pays for it inside its timing
        subprocess.run([exe, "run", "--space", str(space), "--storage",
                        f"sqlite:///{tmp}/warm.db", "--n-trials", "1", "--quiet"], env=env,
                       check=True, cwd=tmp)
        for rnd in range(args.rounds):
            for workers in args.workers:
                url = f"sqlite:///{tmp}/w{workers}-{rnd}.db"
                load_before = C.load_text()
                # the runner's rule, read now and passed on, so the table shows what ran
                threads = args.threads or cpu_threads(workers)
                t0 = time.perf_counter()
                subprocess.run([exe, "run", "--space", str(space), "--storage", url, "--n-trials",
                                str(args.n_trials), "--workers", str(workers), "--quiet",
                                "--threads", str(threads)], env=env, check=True, cwd=tmp)
                wall = time.perf_counter() - t0
                done, window, mean = trial_window(url)
                rows.append([workers, threads, done, round(wall, 1),
                             round(window, 1), round(mean, 2), round(3600 * done / window),
                             round(3600 * done / wall), load_before, C.load_text()])
    print()
    C.print_table(["workers", "threads_each", "trials", "wall_s", "window_s", "trial_s",
                   "trials_per_h_steady", "trials_per_h_with_startup", "load_before",
                   "load_after"], rows)
    by = {}
    for r in rows:
        by.setdefault(r[0], []).append(r[6])
    if 1 in by:
        print()
        base = sum(by[1]) / len(by[1])
        for w, rates in sorted(by.items()):
            print(f"{w} worker(s): steady {sum(rates) / len(rates):.0f} trials/h = "
                  f"{sum(rates) / len(rates) / base:.2f}x of 1 worker")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=1, help="repeat the worker counts (alternating)")
    ap.add_argument("--n-trials", type=int, default=8)
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per worker (default: the runner's rule at each run)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=300, help="synthetic training images")
    ap.add_argument("--val", type=int, default=150, help="synthetic validation images")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 2 trials x 1 epoch of 40/20 images, 1 and 2 workers")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_trials, args.epochs, args.train, args.val, args.rounds = 2, 1, 40, 20, 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
