"""Sampler quality: best val_acc of TPE, Random and GP at equal budget, over several seeds.

A shipped search space (default: the demo, hyperparameters.yaml) shrunk to a tiny synthetic set
and run without a pruner, so every sampler pays the same trials x epochs. Each (sampler, seed)
is one study run as `vcr-hpo run` runs it (open_study, claim_trial, run_one_trial, Objective,
build_storage on a temporary SQLite file); the training seed stays fixed, only the sampler's
seed varies. TPE keeps the arguments the space gives it; Random and GP get only the seed.

    python bench/samplers.py                  # 12 trials x 3 seeds x TPE/Random/GP (minutes)
    python bench/samplers.py --quick          # smoke-sized (seconds)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

from hpo.study import cpu_threads


def sampler_specs(space, names: list[str], seed: int):
    """(label, AlgorithmSpec) for each name; the space's own sampler keeps its arguments."""
    from hpo.algorithms import canonical_algorithm_name
    from hpo.space import AlgorithmSpec

    own = space.study.sampler
    out = []
    for name in names:
        name = canonical_algorithm_name("sampler", name)
        args = dict(own.args) if name == own.type else {}
        out.append((name, AlgorithmSpec(name, {**args, "seed": seed})))
    return out


def runs_here(space, spec) -> str | None:
    """Why `spec` cannot sample this space here (missing optional dependency...), or None."""
    import optuna

    from hpo.algorithms import build_sampler

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = build_sampler(C.with_study(space, sampler=spec))
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(sampler=sampler, direction="maximize")
            for _ in range(3):  # GP starts modelling after its random start-up trials
                trial = study.ask()
                space.suggest(trial)
                study.tell(trial, 0.5 + 0.1 * trial.number)
    except Exception as exc:  # noqa: BLE001 - the reason is the figure
        return f"{type(exc).__name__}: {exc}"
    return None


def run(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    # every trial trains --epochs with no start-up portfolio: the studies differ by sampler only
    space = C.with_study(C.shipped_space(args.space), pruner=None, n_trials=args.n_trials,
                         **C.FIXED_LENGTH)
    overrides = C.tiny_overrides(epochs=args.epochs, image_size=args.image_size,
                                 train=args.train, val=args.val)
    C.print_header("samplers: best val_acc at equal budget over seeds")
    print(f"# space {args.space} without pruner or portfolio, {args.n_trials} trials x "
          f"{args.epochs} epochs per study (trial_length: epochs), {args.image_size} px, "
          f"{args.train} train / {args.val} val synthetic images, sampler seeds {args.seeds}")
    C.warm_up(space, overrides)
    rows, best = [], {}
    skipped = {}
    with tempfile.TemporaryDirectory(prefix="bench-samplers-") as tmp:
        for seed in args.seeds:
            for label, spec in sampler_specs(space, args.samplers, seed):
                if label in skipped:
                    continue
                why = runs_here(space, spec)
                if why is not None:
                    skipped[label] = why
                    continue
                t0 = time.perf_counter()
                recs = C.run_study_loop(C.with_study(space, sampler=spec),
                                        f"sqlite:///{tmp}/{label}-{seed}.db",
                                        overrides=overrides, max_trials=args.n_trials)
                values = [r.value for r in recs if r.value is not None]
                top = max(values)
                first = next(i for i, r in enumerate(recs) if r.value == top)
                best.setdefault(label, []).append(top)
                rows.append([label, seed, len(recs), round(top, 4), first,
                             sum(r.epochs for r in recs), round(time.perf_counter() - t0, 1),
                             C.load_text()])
    print()
    C.print_table(["sampler", "seed", "trials", "best_val_acc", "best_at_trial", "epochs",
                   "wall_s", "load"], rows)
    summary = []
    for label, values in best.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append([label, len(values), round(statistics.mean(values), 4), round(spread, 4),
                        round(min(values), 4), round(max(values), 4)])
    print()
    C.print_table(["sampler", "seeds", "mean_best", "std_best", "min_best", "max_best"], summary)
    for label, why in skipped.items():
        print(f"skipped {label}: {why}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hyperparameters.yaml", help="a file in search_spaces/")
    ap.add_argument("--samplers", nargs="+", default=["TPE", "Random", "GP"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-trials", type=int, default=12, help="trials per study (the budget)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=300, help="synthetic training images")
    ap.add_argument("--val", type=int, default=150, help="synthetic validation images")
    ap.add_argument("--threads", type=int, default=cpu_threads(1),
                    help="torch threads (default: the runner's rule for one worker)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 2 trials x 1 epoch, 2 seeds, 40/20 images")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_trials, args.epochs, args.train, args.val = 2, 1, 40, 20
        args.seeds = args.seeds[:2]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
