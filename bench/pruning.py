"""Pruning savings: compute each pruner needs to reach the best val_acc of a run without pruning.

One shipped search space (default: the demo, hyperparameters.yaml) shrunk to a tiny synthetic
set, the same sampler and seed, run once per pruner exactly as `vcr-hpo run` runs it (open_study,
claim_trial, run_one_trial, the project's Objective, build_storage on a temporary SQLite file).
The run without a pruner sets the target: its best val_acc minus --tolerance. Each pruned run goes
on until a COMPLETE trial reaches the target, or until it has trained as many epochs as the whole
unpruned run (equal compute: then "not reached"). Compute = epochs trained (robust) and wall
seconds (noisy on a shared machine: the load is printed beside them).

    python bench/pruning.py                       # 24 trials, 5 epochs, 32 px (minutes)
    python bench/pruning.py --quick               # smoke-sized (seconds)
    python bench/pruning.py --pruner "{type: Hyperband, min_resource: 1, reduction_factor: 2}"
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C  # noqa: E402


def _spec(text: str):
    """A pruner spec from a YAML flow mapping, checked like a space's pruner block."""
    import yaml

    from hpo.algorithms import canonical_algorithm_name, check_algorithm_args
    from hpo.space import AlgorithmSpec

    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or "type" not in raw:
        raise SystemExit(f"--pruner: a mapping with a type, got {text!r}. "
                         "Write e.g. \"{type: MedianPruner, n_warmup_steps: 2}\"")
    args = {k: v for k, v in raw.items() if k != "type"}
    name = canonical_algorithm_name("pruner", str(raw["type"]))
    problems = check_algorithm_args("pruner", name, args)
    if problems:
        p = problems[0]
        raise SystemExit(f"--pruner: {p.arg or 'type'}: {p.rule}. {p.fix}")
    return AlgorithmSpec(name, args)


def _describe(spec) -> str:
    return "none" if spec is None else spec.describe()


def variants(extra: list[str], shipped: list[str]):
    """(label, pruner spec) pairs: no pruner, each shipped space's pruner, then --pruner specs."""
    out = [("none", None)]
    seen = set()
    for name in shipped:
        spec = C.shipped_space(name).study.pruner
        key = _describe(spec)
        if spec is not None and key not in seen:
            seen.add(key)
            out.append((f"{Path(name).stem}.yaml", spec))
    for i, text in enumerate(extra, 1):
        out.append((f"--pruner {i}", _spec(text)))
    return out


def to_target(records, target: float):
    """(epochs, seconds, trials) up to and including the first COMPLETE trial >= target; None."""
    epochs = seconds = 0.0
    for i, r in enumerate(records, 1):
        epochs += r.epochs
        seconds += r.seconds
        if r.state == "COMPLETE" and r.value is not None and r.value >= target:
            return int(epochs), seconds, i
    return None


def run(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    space = C.shipped_space(args.space)
    overrides = C.tiny_overrides(epochs=args.epochs, image_size=args.image_size,
                                 train=args.train, val=args.val)
    pruners = variants(args.pruner, args.shipped)
    seeds = args.seeds or [space.study.sampler.args.get("seed", 0)]
    C.print_header("pruning: compute to reach the best val_acc of the unpruned run")
    print(f"# space {args.space} (sampler {space.study.sampler.describe()}, seed varied), "
          f"{args.n_trials} trials without pruning, {args.epochs} epochs, {args.image_size} px, "
          f"{args.train} train / {args.val} val synthetic images; target = best unpruned val_acc "
          f"- {args.tolerance:g}")
    C.warm_up(space, overrides)
    rows, ratios = [], {label: [] for label, _ in pruners[1:]}
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        for seed in seeds:
            sampler = space.study.sampler
            sampler = type(sampler)(sampler.type, {**sampler.args, "seed": seed})
            base_space = C.with_study(space, sampler=sampler, pruner=None, n_trials=args.n_trials)
            t0 = time.perf_counter()
            base = C.run_study_loop(base_space, f"sqlite:///{tmp}/none-{seed}.db",
                                    overrides=overrides, max_trials=args.n_trials)
            done = [r.value for r in base if r.value is not None]
            if not done:
                raise SystemExit("the unpruned run completed no trial: nothing to compare")
            best = max(done)
            target = best - args.tolerance
            budget = sum(r.epochs for r in base)
            ref = to_target(base, target)
            rows.append([seed, "none", len(base), 0, ref[0], 1.0, round(ref[1], 1), 1.0,
                         round(best, 4), "yes", budget, round(time.perf_counter() - t0, 1),
                         C.load_text()])
            for label, spec in pruners[1:]:
                run_space = C.with_study(space, sampler=sampler, pruner=spec,
                                         n_trials=args.max_trials_factor * args.n_trials)

                def stop(recs, target=target, budget=budget):
                    return to_target(recs, target) is not None or sum(r.epochs for r in recs) >= budget

                t0 = time.perf_counter()
                recs = C.run_study_loop(run_space, f"sqlite:///{tmp}/{len(rows)}-{seed}.db",
                                        overrides=overrides,
                                        max_trials=args.max_trials_factor * args.n_trials, stop=stop)
                hit = to_target(recs, target)
                spent = sum(r.epochs for r in recs)
                got = max((r.value for r in recs if r.value is not None), default=float("nan"))
                pruned = sum(r.state == "PRUNED" for r in recs)
                if hit is None:
                    ratio, sec_ratio = float(spent) / ref[0], sum(r.seconds for r in recs) / ref[1]
                    rows.append([seed, label, len(recs), pruned, f">{spent}", f">{ratio:.2f}",
                                 f">{sum(r.seconds for r in recs):.1f}", f">{sec_ratio:.2f}",
                                 round(got, 4), "no", spent, round(time.perf_counter() - t0, 1),
                                 C.load_text()])
                    ratios[label].append(float("inf"))
                else:
                    rows.append([seed, label, len(recs), pruned, hit[0], round(hit[0] / ref[0], 3),
                                 round(hit[1], 1), round(hit[1] / ref[1], 3), round(got, 4), "yes",
                                 spent, round(time.perf_counter() - t0, 1), C.load_text()])
                    ratios[label].append(hit[0] / ref[0])
    print()
    C.print_table(["seed", "pruner", "trials", "pruned", "epochs_to_target", "x_none",
                   "seconds_to_target", "x_none_s", "best_val_acc", "reached", "epochs_total",
                   "wall_s", "load"], rows)
    print()
    print("pruners:")
    for label, spec in pruners:
        print(f"  {label}: {_describe(spec)}")
    summary = []
    for label, values in ratios.items():
        med = statistics.median(values)
        summary.append([label, len(values), "inf" if med == float("inf") else round(med, 3),
                        sum(v <= args.goal for v in values), "met" if med <= args.goal else "not met"])
    print()
    C.print_table(["pruner", "seeds", "median_x_none_epochs", f"seeds_<={args.goal:g}x",
                   f"goal_<={args.goal:g}x"], summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hyperparameters.yaml", help="a file in search_spaces/")
    ap.add_argument("--shipped", nargs="*", default=["hyperparameters.yaml", "vcr_full.yaml"],
                    help="shipped spaces whose pruner blocks are compared")
    ap.add_argument("--pruner", action="append", default=[],
                    help="extra pruner as a YAML flow mapping (repeatable)")
    ap.add_argument("--n-trials", type=int, default=24, help="trials of the unpruned run")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=300, help="synthetic training images")
    ap.add_argument("--val", type=int, default=150, help="synthetic validation images")
    ap.add_argument("--tolerance", type=float, default=0.01,
                    help="target = best unpruned val_acc minus this (absolute)")
    ap.add_argument("--seeds", type=int, nargs="*", help="sampler seeds (default: the space's)")
    ap.add_argument("--max-trials-factor", type=int, default=4,
                    help="a pruned run stops after this many times --n-trials trials at most")
    ap.add_argument("--goal", type=float, default=0.4, help="compute ratio the pruner should beat")
    ap.add_argument("--threads", type=int, default=C.runner_threads(1),
                    help="torch threads (default: the runner's rule for one worker)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 3 trials, 2 epochs, 32 px, 40/20 images, one pruner")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_trials, args.epochs, args.image_size, args.train, args.val = 3, 2, 32, 40, 20
        args.shipped = args.shipped[:1]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
