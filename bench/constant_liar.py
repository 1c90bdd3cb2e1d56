"""Constant liar with several workers: how close TPE's proposals land to the trials still running.

With N workers on one storage, a worker asks for params while N-1 trials are still RUNNING. TPE
without constant liar models the finished trials only, so workers that ask between the same
two finishes draw from the same densities and tend to propose the same region twice; with
`constant_liar: true` each RUNNING trial counts as a bad result, which pushes the next proposal
away from it. This bench measures that, on real runs: `hpo.run_study(workers=N)` (N worker
processes, a temporary SQLite study, real trials of the shipped space shrunk to a tiny
synthetic set, no pruner), per sampler setting and seed. From the storage, for every trial that
started while others ran: its distance to the nearest running trial (mean over the params of
both: categorical 0 if equal else 1, numeric |difference| / range on the param's (log) scale, a
param of one trial only 1), and whether that distance is under --near (a near-duplicate: the
same choices and numbers a few percent of their range apart). Random is the reference: its
proposals ignore every other trial. The best val_acc is printed too; at this size it is noise.

    python bench/constant_liar.py                 # 4 workers, 24 trials, 4 seeds (~10 min)
    python bench/constant_liar.py --quick         # smoke-sized
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

#: Sampler settings compared (label -> TPE arguments; None: Random). n_startup_trials 4 as
#: measured (bench/results/constant_liar.txt), whatever sampler the space ships.
SETTINGS = {
    "TPE": {"n_startup_trials": 4, "constant_liar": False},
    "TPE+liar": {"n_startup_trials": 4, "constant_liar": True},
    "Random": None,
}


def distance(a, b) -> float:
    """Mean per-param distance of two FrozenTrials in the unit cube of their distributions."""
    from optuna.distributions import CategoricalDistribution

    names = set(a.params) | set(b.params)
    total = 0.0
    for name in names:
        if name not in a.params or name not in b.params:
            total += 1.0
            continue
        dist = a.distributions[name]
        x, y = a.params[name], b.params[name]
        if isinstance(dist, CategoricalDistribution):
            total += 0.0 if x == y else 1.0
            continue
        low, high = dist.low, dist.high
        if getattr(dist, "log", False):
            x, y, low, high = (math.log(v) for v in (x, y, low, high))
        total += abs(x - y) / (high - low) if high > low else 0.0
    return total / len(names) if names else 0.0


def crowding(trials) -> list[float]:
    """For each trial that started while others were running: distance to the nearest of them."""
    done = [t for t in trials if t.datetime_start and t.datetime_complete]
    out = []
    for t in done:
        running = [r for r in done if r is not t
                   and r.datetime_start < t.datetime_start < r.datetime_complete]
        if running:
            out.append(min(distance(t, r) for r in running))
    return out


def spec_for(label: str, seed: int):
    from hpo.space import AlgorithmSpec

    args = SETTINGS[label]
    if args is None:
        return AlgorithmSpec("Random", {"seed": seed})
    return AlgorithmSpec("TPE", {**args, "seed": seed})


def run(args) -> int:
    import optuna

    import hpo

    # every trial trains --epochs with no start-up portfolio: the runs differ by the liar only
    space = C.with_study(C.shipped_space(args.space), pruner=None, **C.FIXED_LENGTH)
    overrides = C.tiny_overrides(epochs=args.epochs, image_size=args.image_size,
                                 train=args.train, val=args.val)
    C.print_header("constant liar: distance of each proposal to the trials still running")
    print(f"# space {args.space} without pruner or portfolio (trial_length: epochs), its sampler "
          "replaced by each setting, "
          f"{args.workers} worker processes x 1 thread, "
          f"{args.trials} trials per study, {args.epochs} epoch(s), {args.image_size} px, "
          f"{args.train} train / {args.val} val synthetic images; seeds {args.seeds}; "
          f"near-duplicate: distance < {args.near}")
    C.warm_up(space, overrides)
    rows, per_label = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-liar-") as tmp:
        for seed in args.seeds:
            for label in args.settings:
                url = f"sqlite:///{tmp}/{label}-{seed}.db"
                run_space = C.with_study(space, sampler=spec_for(label, seed))
                with C._quiet_optuna():
                    hpo.run_study(run_space, storage=url, study_name="liar",
                                  n_trials=args.trials, overrides=overrides,
                                  workers=args.workers, threads=1)
                trials = optuna.load_study(study_name="liar", storage=url).get_trials(
                    deepcopy=False)
                near = crowding(trials)
                values = [t.value for t in trials if t.value is not None]
                dup = sum(d < args.near for d in near)
                per_label.setdefault(label, []).append((statistics.mean(near), dup, len(near),
                                                        max(values)))
                rows.append([label, seed, len(trials), len(near), round(statistics.mean(near), 3),
                             dup, round(max(values), 4), C.load_text()])
                print(f"# {label} seed {seed}: {len(near)} proposals beside running trials, "
                      f"mean distance {statistics.mean(near):.3f}, {dup} near-duplicates",
                      flush=True)
    print()
    C.print_table(["sampler", "seed", "trials", "beside_running", "mean_nearest", "near_dups",
                   "best_val_acc", "load"], rows)
    summary = []
    for label, runs in per_label.items():
        means = [r[0] for r in runs]
        se = statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else 0.0
        dups, total = sum(r[1] for r in runs), sum(r[2] for r in runs)
        summary.append([label, len(runs), round(statistics.mean(means), 3), round(se, 3),
                        f"{dups}/{total}", f"{100 * dups / total:.0f}%",
                        round(statistics.mean(r[3] for r in runs), 4)])
    print()
    C.print_table(["sampler", "seeds", "mean_nearest", "se", "near_dups", "near_dup_share",
                   "mean_best"], summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hyperparameters.yaml", help="a file in search_spaces/")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--trials", type=int, default=24, help="finished trials per study")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=300, help="synthetic training images")
    ap.add_argument("--val", type=int, default=100, help="synthetic validation images")
    ap.add_argument("--near", type=float, default=0.05,
                    help="distance under which a proposal counts as a near-duplicate")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 2 workers, 6 trials, 1 epoch, 1 seed, 40/20 images")
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.trials, args.epochs, args.train, args.val = 2, 6, 1, 40, 20
        args.seeds = args.seeds[:1]
    if args.workers < 2:
        ap.error(f"--workers: at least 2 (one worker never has another trial running), "
                 f"got {args.workers}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
