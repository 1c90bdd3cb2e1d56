"""Pruning savings: compute each pruner needs to reach the best val_acc of a run without pruning.

One shipped search space (default: the demo, hyperparameters.yaml) shrunk to a tiny synthetic
set, the same sampler and seed, run once per pruner exactly as `vcr-hpo run` runs it (open_study,
claim_trial, run_one_trial, the project's Objective, build_storage on a temporary SQLite file).
The run without a pruner sets the targets: its best val_acc minus each --tolerance (0.01, and
one standard error of a val_acc on --val images: closer than that, trials differ by noise).

Live runs (one per pruner) train the same number of trials as the unpruned run:
  x_none      epochs of those trials / epochs of the unpruned run (equal trials, no oracle);
              counts only if the pruned run reached the target ("reached").
  x_first     epochs until the first COMPLETE trial at the target / the same for the unpruned
              run. A run short of the loosest target after its trials goes on until it reaches
              it or has trained as many epochs as the whole unpruned run ("not reached").
Replay: each pruner (more than the live ones) watches the unpruned run's recorded curves, trial
by trial, in a fresh in-memory study: the same trials, so only the pruning differs (exact for a
sampler that ignores history, such as Random; TPE would have sampled differently after pruning).
Epoch counts are robust; seconds are noisy on a shared machine (the load is printed beside them).

    python bench/pruning.py                       # 24 trials, 5 epochs, 32 px (minutes)
    python bench/pruning.py --quick               # smoke-sized (seconds)
    python bench/pruning.py --pruner "{type: Percentile, percentile: 25.0, n_warmup_steps: 0}"
    python bench/pruning.py --replay-seeds 1 2    # two more unpruned runs for the replay
    python bench/pruning.py --no-live --save-curves c.json        # record the unpruned curves
    python bench/pruning.py --no-live --load-curves c.json --replay "{type: ...}"  # no training
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

from hpo.study import cpu_threads

#: Pruners only replayed by default (cheap): candidates for the shipped spaces' defaults.
REPLAY_DEFAULT = [
    "{type: SuccessiveHalving, min_resource: 1, reduction_factor: 3}",
    "{type: SuccessiveHalving, min_resource: 1, reduction_factor: 2}",
    "{type: SuccessiveHalving, min_resource: 2, reduction_factor: 3}",
    "{type: MedianPruner, n_startup_trials: 4, n_warmup_steps: 0}",
    "{type: Percentile, percentile: 33.0, n_startup_trials: 4, n_warmup_steps: 0}",
    "{type: Hyperband, min_resource: 1, reduction_factor: 3}",
]


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
        out.append((f"--pruner {i}", C.algorithm_spec("pruner", text, "--pruner")))
    return out


def first_hit(records, target: float):
    """(epochs, seconds, trials) up to and including the first COMPLETE trial >= target; None."""
    epochs = seconds = 0.0
    for i, r in enumerate(records, 1):
        epochs += r.epochs
        seconds += r.seconds
        if r.state == "COMPLETE" and r.value is not None and r.value >= target:
            return int(epochs), seconds, i
    return None


def replay(curves, spec):
    """The records `spec` would have produced watching `curves` (same trials, same order)."""
    import optuna

    from hpo.algorithms import build_pruner

    study = optuna.create_study(study_name="bench", direction="maximize",
                                pruner=build_pruner(spec))  # Hyperband brackets hash the name
    out = []
    for curve in curves:
        trial = study.ask()
        stopped = None
        for step, value in enumerate(curve):
            trial.report(value, step)
            if trial.should_prune():
                stopped = step
                break
        if stopped is None:
            study.tell(trial, max(curve))  # the Objective returns the best epoch's val_acc
            out.append(C.TrialRecord(trial.number, "COMPLETE", max(curve), len(curve), 0.0, curve))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            out.append(C.TrialRecord(trial.number, "PRUNED", None, stopped + 1, 0.0, curve))
    return out


def _meta(args, space) -> dict:
    """What recorded curves depend on: a curves file of other settings must not be replayed."""
    return {"space": args.space, "sampler": space.study.sampler.describe(), "n_trials":
            args.n_trials, "epochs": args.epochs, "image_size": args.image_size,
            "train": args.train, "val": args.val}


def save_curves(path: str, meta: dict, seed: int, records) -> None:
    """Add one seed's unpruned learning curves (and trial seconds) to the JSON file `path`."""
    import json

    file = Path(path)
    data = json.loads(file.read_text()) if file.exists() else {"meta": meta, "seeds": {}}
    if data["meta"] != meta:
        raise SystemExit(f"--save-curves: {path}: holds curves of other settings, got "
                         f"{data['meta']}. Use another file")
    data["seeds"][str(seed)] = [[list(r.curve) for r in records],
                                [round(r.seconds, 2) for r in records]]
    file.write_text(json.dumps(data))


def load_curves(paths: list[str], meta: dict) -> dict[str, list]:
    """seed -> (curves, seconds) from --load-curves files; refused if their settings differ."""
    import json

    out: dict[str, list] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if data["meta"] != meta:
            raise SystemExit(f"--load-curves: {path}: recorded with {data['meta']}, got "
                             f"{meta}. Pass the same --epochs/--n-trials/--train/--val/--space")
        out.update(data["seeds"])
    return out


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def _best(records) -> float:
    return max((r.value for r in records if r.value is not None), default=float("nan"))


def tolerances(specs: list[str], best: float, n_val: int) -> list[tuple[str, str, float]]:
    """(spec, label, absolute tolerance): a number, or "se" = one standard error of a val_acc
    measured on n_val images, sqrt(p (1 - p) / n_val): below that, a "better" trial is noise."""
    out = []
    for spec in specs:
        if spec == "se":
            tol = math.sqrt(best * (1 - best) / n_val)
            out.append((spec, f"se={tol:.3f}", tol))
        else:
            out.append((spec, f"{float(spec):g}", float(spec)))
    return out


def run(args) -> int:
    import optuna
    import torch

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the sampler is part of the setup, not of the space: recorded curves keep their meaning
    # every trial trains --epochs with no start-up portfolio: the runs differ by pruner only
    space = C.with_study(C.shipped_space(args.space), sampler=C.algorithm_spec(
        "sampler", args.sampler, "--sampler"), **C.FIXED_LENGTH)
    overrides = C.tiny_overrides(epochs=args.epochs, image_size=args.image_size,
                                 train=args.train, val=args.val)
    live = variants(args.pruner, args.shipped)
    replayed = [*live[1:], *((f"--replay {i}", C.algorithm_spec("pruner", t, "--replay"))
                               for i, t in enumerate(args.replay, 1))]
    live_seeds = args.seeds or [space.study.sampler.args.get("seed", 0)]
    seeds = [*live_seeds, *(s for s in args.replay_seeds if s not in live_seeds)]
    if args.no_live:
        live_seeds = []
    n = args.n_trials
    C.print_header("pruning: compute to reach the best val_acc of the unpruned run")
    print(f"# space {args.space} (sampler {space.study.sampler.describe()}, seed varied), "
          f"{n} trials per run, {args.epochs} epochs each (trial_length: epochs, no portfolio), "
          f"{args.image_size} px, {args.train} train / "
          f"{args.val} val synthetic images; target = best unpruned val_acc - tolerance "
          f"({', '.join(args.tolerance)}; se = one standard error of val_acc on {args.val} images)")
    loaded = load_curves(args.load_curves, _meta(args, space))
    if loaded:
        print(f"# unpruned curves of seeds {', '.join(loaded)} read from "
              f"{', '.join(args.load_curves)} (not retrained)")
    if any(str(s) not in loaded for s in seeds):
        C.warm_up(space, overrides)
    rows, replay_rows, summary = [], [], {}
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        if args.keep_dir:
            tmp = str(Path(args.keep_dir).resolve())
            Path(tmp).mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            sampler = space.study.sampler
            sampler = type(sampler)(sampler.type, {**sampler.args, "seed": seed})
            t0 = time.perf_counter()
            if str(seed) in loaded:
                base = [C.TrialRecord(i, "COMPLETE", max(c), len(c), s, tuple(c))
                        for i, (c, s) in enumerate(zip(*loaded[str(seed)]))]
            else:
                base = C.run_study_loop(
                    C.with_study(space, sampler=sampler, pruner=None, n_trials=n),
                    f"sqlite:///{tmp}/none-{seed}.db", overrides=overrides, max_trials=n)
                if args.save_curves:
                    save_curves(args.save_curves, _meta(args, space), seed, base)
            wall = round(time.perf_counter() - t0, 1)
            best = _best(base)
            tols = tolerances(args.tolerance, best, args.val)
            # a live run short of the loosest target after n trials goes on
            loose = best - max(t for _, _, t in tols)
            budget = sum(r.epochs for r in base)
            base_s = sum(r.seconds for r in base)
            refs = {label: first_hit(base, best - tol) for _, label, tol in tols}
            for _, label, _ in tols:
                rows.append([seed, "none", label, n, 0, budget, 1.0, round(base_s, 1), 1.0,
                             round(best, 4), "yes", refs[label][0], 1.0, wall, C.load_text()])
            print(f"# seed {seed}: none done, best {best:.4f}", file=sys.stderr, flush=True)
            for name, spec in live[1:] if seed in live_seeds else []:
                def stop(recs, budget=budget, loose=loose):
                    if len(recs) < n:
                        return False
                    return (first_hit(recs, loose) is not None
                            or sum(r.epochs for r in recs) >= budget)

                t0 = time.perf_counter()
                recs = C.run_study_loop(
                    C.with_study(space, sampler=sampler, pruner=spec, n_trials=n),
                    f"sqlite:///{tmp}/{len(rows)}-{seed}.db", overrides=overrides,
                    max_trials=args.max_trials_factor * n, stop=stop)
                wall = round(time.perf_counter() - t0, 1)
                head = recs[:n]
                epochs = sum(r.epochs for r in head)
                seconds = sum(r.seconds for r in head)
                for key, label, tol in tols:
                    reached = _best(head) >= best - tol
                    hit = first_hit(recs, best - tol)
                    first = (hit[0], _ratio(hit[0], refs[label][0])) if hit else (
                        f">{sum(r.epochs for r in recs)}", "not reached")
                    rows.append([seed, name, label, n, sum(r.state == "PRUNED" for r in head),
                                 epochs, _ratio(epochs, budget), round(seconds, 1),
                                 _ratio(seconds, base_s), round(_best(head), 4),
                                 "yes" if reached else "no", *first, wall, C.load_text()])
                    e = summary.setdefault((name, key), _entry())
                    e["seeds"] += 1
                    e["reached"] += reached
                    e["live"].append(epochs / budget if reached else math.inf)
                    e["first"].append(hit[0] / refs[label][0] if hit else math.inf)
                print(f"# seed {seed}: {name} done", file=sys.stderr, flush=True)
            curves = [r.curve for r in base]
            for name, spec in replayed:
                recs = replay(curves, spec)
                epochs = sum(r.epochs for r in recs)
                for key, label, tol in tols:
                    hit = first_hit(recs, best - tol)
                    reached = _best(recs) >= best - tol
                    replay_rows.append([seed, name, label, sum(r.state == "PRUNED" for r in recs),
                                        epochs, _ratio(epochs, budget), round(_best(recs), 4),
                                        "yes" if reached else "no", hit[0] if hit else "-",
                                        _ratio(hit[0], refs[label][0]) if hit else "not reached"])
                    e = summary.setdefault((name, key), _entry())
                    e["replay"].append(epochs / budget if reached else math.inf)
    print()
    print(f"live runs ({n} trials each; x_none = epochs / unpruned epochs, counts only if reached; "
          "x_first = epochs to the first trial at the target / the unpruned run's):")
    C.print_table(["seed", "pruner", "tol", "trials", "pruned", "epochs", "x_none", "seconds",
                   "x_none_s", "best_val_acc", "reached", "epochs_to_target", "x_first",
                   "wall_s", "load"], rows)
    print()
    print("replay (each pruner watches the unpruned run's recorded curves):")
    C.print_table(["seed", "pruner", "tol", "pruned", "epochs", "x_none", "best_kept", "reached",
                   "epochs_to_target", "x_first"], replay_rows)
    print()
    print("pruners:")
    for name, spec in [live[0], *replayed]:
        print(f"  {name}: {_describe(spec)}")
    table = []
    for (name, key), e in sorted(summary.items(), key=lambda kv: [n for n, _ in replayed].index(
            kv[0][0])):
        med = {k: statistics.median(e[k]) if e[k] else None for k in ("live", "first", "replay")}
        verdict = "-" if med["live"] is None else (
            "met" if med["live"] <= args.goal and e["reached"] == e["seeds"] else "not met")
        table.append([name, key, len(e["replay"]), _fmt(med["replay"]),
                      f"{e['reached']}/{e['seeds']}" if e["seeds"] else "-", _fmt(med["live"]),
                      _fmt(med["first"]), verdict])
    print()
    print("median over seeds; inf = target not reached:")
    C.print_table(["pruner", "tol", "seeds", "replay_x_none", "live_reached", "live_x_none",
                   "live_x_first", f"goal_x_none_<={args.goal:g}"], table)
    return 0


def _entry() -> dict:
    return {"live": [], "first": [], "replay": [], "reached": 0, "seeds": 0}


def _fmt(value) -> str:
    if value is None:
        return "-"
    return "inf" if value == math.inf else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hyperparameters.yaml", help="a file in search_spaces/")
    ap.add_argument("--shipped", nargs="*", default=["hyperparameters.yaml", "vcr_full.yaml"],
                    help="shipped spaces whose pruner blocks are compared")
    ap.add_argument("--sampler", default="{type: TPE, seed: 42, n_startup_trials: 4}",
                    help="sampler of every run, a YAML flow mapping (the seed is varied); the "
                         "default is the one bench/results/curves/ were recorded with")
    ap.add_argument("--pruner", action="append", default=[],
                    help="extra live pruner as a YAML flow mapping (repeatable)")
    ap.add_argument("--replay", action="append", default=None,
                    help="replayed pruner (repeatable; replaces the default candidates)")
    ap.add_argument("--n-trials", type=int, default=24, help="trials of the unpruned run")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=300, help="synthetic training images")
    ap.add_argument("--val", type=int, default=150, help="synthetic validation images")
    ap.add_argument("--tolerance", nargs="+", default=["0.01", "se"],
                    help="targets = best unpruned val_acc minus each (absolute, or se: one "
                         "standard error of val_acc on --val images)")
    ap.add_argument("--seeds", type=int, nargs="*", help="sampler seeds (default: the space's)")
    ap.add_argument("--replay-seeds", type=int, nargs="*", default=[],
                    help="more sampler seeds for the replay only (an unpruned run each)")
    ap.add_argument("--no-live", action="store_true",
                    help="no live pruned runs: unpruned runs and the replay only")
    ap.add_argument("--save-curves", metavar="FILE",
                    help="write each seed's unpruned learning curves to this JSON file")
    ap.add_argument("--load-curves", metavar="FILE", nargs="+", default=[],
                    help="replay curves saved by --save-curves instead of retraining those seeds")
    ap.add_argument("--keep-dir", help="keep the study files here (default: a temporary folder)")
    ap.add_argument("--max-trials-factor", type=int, default=4,
                    help="a pruned run stops after this many times --n-trials trials at most")
    ap.add_argument("--goal", type=float, default=0.4, help="compute ratio the pruner should beat")
    ap.add_argument("--threads", type=int, default=cpu_threads(1),
                    help="torch threads (default: the runner's rule for one worker)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 3 trials, 2 epochs, 32 px, 40/20 images, one pruner")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_trials, args.epochs, args.image_size, args.train, args.val = 3, 2, 32, 40, 20
        # the first shipped space that has a pruner (the demo ships none: a small budget)
        args.shipped = [n for n in args.shipped if C.shipped_space(n).study.pruner][:1]
    for spec in args.tolerance:
        try:
            spec == "se" or float(spec)
        except ValueError:
            ap.error(f"--tolerance: a number or se, got {spec!r}")
    if args.replay is None:
        args.replay = REPLAY_DEFAULT[:1] if args.quick else list(REPLAY_DEFAULT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
