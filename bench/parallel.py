"""Parallel scaling: trials per hour of `vcr-hpo run --workers N` on this machine, and where
the time between perfect scaling and the measured rate goes.

Runs the installed `vcr-hpo run` (what a user runs) on a temporary SQLite study per setup,
rounds interleaved. The space keeps the work per trial equal (one backbone, one batch size, no
pruner; only lr and dropout are searched). The default trial lasts >= 10 s on idle cores
(resnet10t, 64 px, 600 training images, 2 epochs), as a real study's do.

Setups are WORKERSxTHREADS (torch threads per worker): 1x1, 1x2 (what `--workers 1` gets on 2
idle cores) and 2x1 (what `--workers 2` gets). Per run, read from the storage:
- steady trials/h: each worker's trials between its first start and its last end (workers told
  apart by their non-overlapping trials), summed over workers: start-up and the tail (one worker
  idle while the other finishes) are left out; "with start-up" = trials / command wall time;
- where a worker's time goes: start-up (command start -> its first trial), train (the trial's
  epochs, user attr epoch_seconds), setup (rest of the trial: model build, data, report), gap
  (between its trials: tell, claim lock, sampler, storage);
- CPU seconds of the whole command (getrusage of the children) per trial.
Then 2x1 / 1x2 = (2x1 / (2 * 1x1): how well two processes share the cores) x (2 * 1x1 / 1x2:
2 over what the second thread gives one worker). Wall times on a shared machine are noisy: the
load average is printed beside each run; prefer the interleaved ratios.

    python bench/parallel.py                          # 1x1, 1x2, 2x1; 6 trials each (~10 min)
    python bench/parallel.py --setups 1x2 2x1 --rounds 2
    python bench/parallel.py --quick                  # smoke-sized
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import itertools

import _common as C


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


def chains(trials) -> list[list]:
    """Split trials into the workers that ran them: a worker's trials never overlap, so each
    trial goes to the worker whose last trial ended latest before it started."""
    workers: list[list] = []
    for t in sorted(trials, key=lambda t: t.datetime_start):
        free = [w for w in workers if w[-1].datetime_complete <= t.datetime_start]
        if free:
            max(free, key=lambda w: w[-1].datetime_complete).append(t)
        else:
            workers.append([t])
    return workers


def analyse(url: str, started) -> dict[str, float]:
    """Steady rate and the time split of one run, read from its storage."""
    import optuna

    from hpo.attrs import EPOCH_SECONDS

    study = optuna.load_study(study_name="bench-parallel", storage=url)
    done = [t for t in study.trials if t.state.is_finished() and t.datetime_complete]
    out = {"trials": len(done)}
    if not done:
        return out
    sec = lambda a, b: (b - a).total_seconds()
    steady = startup = train = setup = gap = 0.0
    for w in chains(done):
        window = sec(w[0].datetime_start, w[-1].datetime_complete)
        steady += 3600 * len(w) / window if window > 0 else 0.0
        startup += sec(started, w[0].datetime_start)
        for a, b in itertools.pairwise(w):
            gap += sec(a.datetime_complete, b.datetime_start)
    for t in done:
        trial_s = sec(t.datetime_start, t.datetime_complete)
        epochs = sum(t.user_attrs.get(EPOCH_SECONDS) or [])
        train += epochs
        setup += trial_s - epochs
    n = len(done)
    out.update(workers_seen=len(chains(done)), steady_per_h=steady,
               trial_s=sum(sec(t.datetime_start, t.datetime_complete) for t in done) / n,
               train_s=train / n, setup_s=setup / n, gap_s=gap / max(1, n - len(chains(done))),
               startup_s=startup / len(chains(done)))
    return out


def run(args) -> int:
    exe = shutil.which("vcr-hpo")
    if exe is None:
        raise SystemExit("vcr-hpo is not installed: pip install -e \".[dev]\"")
    C.print_header("parallel: trials per hour with --workers N (installed vcr-hpo, SQLite)")
    print(f"# {args.n_trials} trials per run, {args.backbone}, {args.epochs} epochs, "
          f"{args.image_size} px, {args.train} train / {args.val} val synthetic images, no pruner; "
          f"setups WORKERSxTHREADS {' '.join(args.setups)}, {args.rounds} round(s) interleaved; "
          f"os.cpu_count() = {os.cpu_count()}")
    rows, rates = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        space = Path(tmp) / "parallel.yaml"
        space.write_text(bench_space(args))
        env = {**os.environ, "VCR_HPO_CACHE": str(Path(tmp) / "cache"), "HF_HUB_OFFLINE": "1"}
        # draw the dataset once, so no setup pays for it inside its timing
        subprocess.run([exe, "run", "--space", str(space), "--storage",
                        f"sqlite:///{tmp}/warm.db", "--n-trials", "1", "--quiet"], env=env,
                       check=True, cwd=tmp)
        for rnd in range(args.rounds):
            for setup in args.setups:
                workers, threads = (int(x) for x in setup.split("x"))
                url = f"sqlite:///{tmp}/{setup}-{rnd}.db"
                load_before = C.load_text()
                cpu0 = _children_cpu()
                started = datetime.datetime.now()  # Optuna stores local naive times
                t0 = time.perf_counter()
                subprocess.run([exe, "run", "--space", str(space), "--storage", url, "--n-trials",
                                str(args.n_trials), "--workers", str(workers), "--quiet",
                                "--threads", str(threads)], env=env, check=True, cwd=tmp)
                wall = time.perf_counter() - t0
                cpu = _children_cpu() - cpu0
                a = analyse(url, started)
                rates.setdefault(setup, []).append(a["steady_per_h"])
                rows.append([setup, rnd, a["trials"], round(wall, 1), round(a["trial_s"], 1),
                             round(a["train_s"], 1), round(a["setup_s"], 2), round(a["gap_s"], 3),
                             round(a["startup_s"], 1), round(cpu / a["trials"], 1),
                             round(a["steady_per_h"]), round(3600 * a["trials"] / wall),
                             load_before, C.load_text()])
    print()
    C.print_table(["setup", "round", "trials", "wall_s", "trial_s", "train_s", "setup_s",
                   "gap_s", "startup_s", "cpu_s_per_trial", "trials_per_h_steady",
                   "trials_per_h_with_startup", "load_before", "load_after"], rows)
    mean = {k: sum(v) / len(v) for k, v in rates.items()}
    print()
    for k, v in mean.items():
        print(f"{k}: steady {v:.0f} trials/h")
    if {"1x1", "1x2", "2x1"} <= set(mean):
        share = mean["2x1"] / (2 * mean["1x1"])
        threads = 2 * mean["1x1"] / mean["1x2"]
        print(f"2x1 / 1x2 = {mean['2x1'] / mean['1x2']:.2f}x = {share:.2f} (two processes sharing "
              f"the cores, 2x1 / (2 * 1x1)) x {threads:.2f} (2 * 1x1 / 1x2: 2 over the second "
              f"thread's gain {mean['1x2'] / mean['1x1']:.2f}x)")
    elif {"1x2", "2x1"} <= set(mean):
        print(f"2x1 / 1x2 = {mean['2x1'] / mean['1x2']:.2f}x")
    return 0


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", nargs="+", default=["1x1", "1x2", "2x1"],
                    help="WORKERSxTHREADS each (threads = torch threads per worker)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the setups (interleaved)")
    ap.add_argument("--n-trials", type=int, default=6)
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--train", type=int, default=600, help="synthetic training images")
    ap.add_argument("--val", type=int, default=200, help="synthetic validation images")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 2 trials x 1 epoch of 40/20 images at 32 px")
    args = ap.parse_args(argv)
    for setup in args.setups:
        w, _, t = setup.partition("x")
        if not (w.isdigit() and t.isdigit() and int(w) > 0 and int(t) > 0):
            ap.error(f"--setups: WORKERSxTHREADS such as 2x1, got {setup!r}")
    if args.quick:
        args.n_trials, args.epochs, args.train, args.val = 2, 1, 40, 20
        args.image_size = 32
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
