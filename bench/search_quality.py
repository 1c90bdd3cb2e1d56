"""Search quality at equal compute: the best val_acc each strategy finds for the same budget.

The budget is CPU seconds of the process that runs the trials (1 torch thread, measured with
time.process_time(), so other jobs on a shared machine do not eat into it); --wall makes it
wall seconds. Each (size, strategy, seed) is one study run in-process as `vcr-hpo run` runs it
(open_study, claim_trial, run_one_trial, the project's Objective, a temporary SQLite file; the
space's `default:` values are trial 0 of every study) until the budget is spent; only trials
that finished within the budget count. Strategies:

  shipped   the space's own sampler and pruner (the sampler's seed varied)
  random    Random sampling, no pruner
  default   the space's `default:` config trained once for as many epochs as the budget buys
            (what a user without HPO does); its per-epoch cost is measured before the clock starts
  LABEL=SAMPLER|PRUNER   any other: YAML flow mappings, `shipped` (the space's) or `none`

Search, then train the winner (--refit F, default 0.5): what a user of any HPO tool does is
search, then train the best config found for the final model; so every search strategy spends
(1 - F) of the budget searching and the rest training its best config (best val_acc) once, for
as many epochs as that part buys (its per-epoch cost measured before that clock starts, as for
`default`). Its best is the better of the search's best and the final run's best; the column
`search` keeps the search's alone. --refit 0 compares searches alone.

The seed varies both the sampler and the training seed (init, batch order, augmentation), so
the spread over seeds includes training noise. Held-out: the chosen config (best val_acc) is
trained again with the same seed and epochs and its final model scored on --holdout fresh
synthetic images (another generator seed); not charged to the budget, --holdout 0 skips it.
With --refit the final run's model is scored (it is the model the user keeps).

    python bench/search_quality.py                       # both sizes, 3 seeds (see --help)
    python bench/search_quality.py --quick               # smoke-sized (seconds)
    python bench/search_quality.py --strategy "tpe-mv={type: TPE, multivariate: true}|shipped"
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

#: Strategies measured by default besides shipped / random / default (label -> sampler|pruner):
#: the TPE variants the demo's GP was chosen against (README, Search quality).
CANDIDATES = {
    "tpe": "{type: TPE, n_startup_trials: 4}|none",
    "tpe-mv+sh23": "{type: TPE, n_startup_trials: 4, multivariate: true, group: true, "
                   "constant_liar: true}|{type: SuccessiveHalving, min_resource: 2, "
                   "reduction_factor: 3}",
}
#: Named sizes: image px, train images, val images, epochs per trial, default budget (s).
#: Trials last 9 epochs: a 2-3 epoch trial is still climbing and would lose to any long run.
#: 600 CPU s buys a search half of about 13 nine-epoch trials on demo and 6 on hard (twice the
#: data), the budget the README's table was measured at (10 CPU minutes a run).
SIZES = {
    "demo": (32, 600, 200, 9, 600.0),
    "hard": (32, 1200, 300, 9, 600.0),
    "quick": (32, 40, 20, 1, 4.0),
}
_FRACTIONS = [i / 20 for i in range(1, 21)]


@dataclasses.dataclass(frozen=True)
class Strategy:
    label: str
    sampler: object | None = None  # AlgorithmSpec; None with default=True
    pruner: object | None = None
    default: bool = False


@dataclasses.dataclass
class Outcome:
    """One (size, strategy, seed): anytime best (budget used, best so far) and the final best."""

    size: str
    label: str
    seed: int
    used: float  # budget units spent (including the trial cut off at the end)
    points: list[tuple[float, float]]  # (units at the end of a trial/epoch, best so far)
    best: float
    trials: int
    pruned: int
    epochs: int
    holdout: float | None
    chosen: str
    search: float | None = None  # the search's own best (with --refit), before the final run


def _spec(kind: str, text: str, space):
    text = text.strip()
    if text == "none":
        return None
    if text == "shipped":
        return space.study.sampler if kind == "sampler" else space.study.pruner
    return C.algorithm_spec(kind, text, f"--strategy: {kind}")


def parse_strategy(text: str, space) -> Strategy:
    """`shipped`, `random`, `default` or `LABEL=SAMPLER|PRUNER`."""
    from hpo.space import AlgorithmSpec

    if text == "shipped":
        return Strategy("shipped", space.study.sampler, space.study.pruner)
    if text == "random":
        return Strategy("random", AlgorithmSpec("Random", {}), None)
    if text == "default":
        return Strategy("default", default=True)
    label, sep, rest = text.partition("=")
    sampler, bar, pruner = rest.partition("|")
    if not sep or not bar or not label.strip():
        raise SystemExit(f"--strategy: shipped, random, default or LABEL=SAMPLER|PRUNER, got "
                         f"{text!r}. Write e.g. \"tpe-mv={{type: TPE, multivariate: true}}|shipped\"")
    return Strategy(label.strip(), _spec("sampler", sampler, space), _spec("pruner", pruner, space))


def _describe(s: Strategy) -> str:
    if s.default:
        return "the space's default: config, one run of as many epochs as the budget buys"
    return (f"sampler {s.sampler.describe()}, pruner "
            f"{'none' if s.pruner is None else s.pruner.describe()}")


def _overrides(size: str, seed: int) -> dict:
    px, train, val, epochs, _ = SIZES[size]
    return {**C.tiny_overrides(epochs=epochs, image_size=px, train=train, val=val), "seed": seed}


def _clock(wall: bool):
    return time.perf_counter if wall else time.process_time


def _holdout_splits(cfg, n: int):
    """The training split of `cfg` with `n` fresh synthetic images (generator seed 1) as val."""
    from hpo.data import load_dataset, make_synthetic

    splits = load_dataset(cfg)
    images, labels = make_synthetic(n, cfg.image_size, seed=1)
    return dataclasses.replace(splits, val_images=images, val_labels=labels)


def _score(model, cfg, data) -> float:
    """val_acc of `model` on the val split of `data` (the held-out images)."""
    from hpo.train import evaluate, resolve_device

    _, acc, _ = evaluate(model, data.val_images, data.val_labels, data.num_classes,
                         device=resolve_device(cfg.device), batch_size=256)
    return float(acc)


def _holdout_score(space, params: dict, overrides: dict, epochs: int, n: int) -> float:
    """val_acc on the held-out images of the final model of `params` trained for `epochs`."""
    from hpo.train import train_model

    cfg = space.config_for(params, {**overrides, "epochs": epochs})
    data = _holdout_splits(cfg, n)
    return _score(train_model(cfg, data=data).model, cfg, data)


def _train_for_budget(space, params: dict, overrides: dict, budget: float, wall: bool,
                      holdout: int):
    """Train `params` once for as many epochs as `budget` buys (set-up and epoch cost measured
    before the clock starts). Returns (points, used, epochs, held-out score of the final model)."""
    from hpo.train import train_model

    clock = _clock(wall)
    ends: list[float] = []
    t0 = clock()
    train_model(space.config_for(params, {**overrides, "epochs": 2}),
                on_epoch=lambda m: ends.append(clock() - t0))
    epoch = max(ends[1] - ends[0], 1e-6)
    epochs = max(1, int((budget - max(ends[0] - epoch, 0.0)) // epoch))
    cfg = space.config_for(params, {**overrides, "epochs": epochs})
    points: list[tuple[float, float]] = []
    t0 = clock()

    def on_epoch(m) -> None:
        best = max(m.val_acc, points[-1][1] if points else 0.0)
        points.append((clock() - t0, best))

    result = train_model(cfg, on_epoch=on_epoch)
    used = clock() - t0
    score = _score(result.model, cfg, _holdout_splits(cfg, holdout)) if holdout else None
    return points, used, epochs, score


def _run_default(space, size: str, seed: int, budget: float, wall: bool, holdout: int):
    points, used, epochs, score = _train_for_budget(
        space, space.default_params(), _overrides(size, seed), budget, wall, holdout)
    return Outcome(size, "default", seed, used, points, points[-1][1], 1, 0, epochs, score,
                   f"default x {epochs} epochs")


def _run_search(space, strategy: Strategy, size: str, seed: int, budget: float, wall: bool,
                holdout: int, tmp: str, refit: float = 0.0):
    from hpo.space import AlgorithmSpec

    clock = _clock(wall)
    overrides = _overrides(size, seed)
    sampler = AlgorithmSpec(strategy.sampler.type, {**strategy.sampler.args, "seed": seed})
    run_space = C.with_study(space, sampler=sampler, pruner=strategy.pruner, n_trials=None)
    search_budget = budget * (1.0 - refit)
    ends: list[float] = []
    t0 = clock()

    def stop(records) -> bool:
        ends.append(clock() - t0)
        return ends[-1] >= search_budget

    url = f"sqlite:///{tmp}/{size}-{strategy.label}-{seed}.db"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GP/multivariate TPE on conditionals: Optuna warns
        records = C.run_study_loop(run_space, url, overrides=overrides, max_trials=10_000,
                                   stop=stop, name=f"sq-{strategy.label}")
    used = ends[-1]
    # With a final run, the first trial counts even past the search's share: it was paid for
    # and the final run gets what is left.
    limit = max(search_budget, ends[0]) if refit > 0 else search_budget
    points, best, chosen = [], -math.inf, None
    for r, end in zip(records, ends):
        if end <= limit and r.value is not None and r.value > best:
            best, chosen = r.value, r
        if end <= limit:
            points.append((end, best if best > -math.inf else 0.0))
    counted = [r for r, end in zip(records, ends) if end <= limit]
    epochs = sum(r.epochs for r in counted)
    score, text, search_best = None, "-", None
    if chosen is not None:
        import optuna

        study = optuna.load_study(study_name=f"sq-{strategy.label}", storage=url)
        params = dict(study.trials[chosen.number].params)
        text = f"trial {chosen.number}: " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        start = max(used, search_budget)  # the trial cut off at the end was paid for
        if refit > 0 and start < budget:  # the user's next step: train the winner with the rest
            search_best = best
            final, spent, n, score = _train_for_budget(space, params, overrides,
                                                       budget - start, wall, holdout)
            points += [(start + t, max(b, best)) for t, b in final]
            best, used, epochs = max(best, final[-1][1]), start + spent, epochs + n
            text += f"; then x {n} epochs"
        elif holdout:
            score = _holdout_score(space, params, overrides, chosen.epochs, holdout)
    return Outcome(size, strategy.label, seed, used, points,
                   best if best > -math.inf else float("nan"), len(counted),
                   sum(r.state == "PRUNED" for r in counted), epochs, score, text, search_best)


_SPACE = None


def _init(space_name: str, threads: int, sizes: list[str]) -> None:
    """Worker set-up (not charged): threads, quiet Optuna, data drawn, backbones built once."""
    import optuna
    import torch

    global _SPACE
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _SPACE = C.shipped_space(space_name)
    for size in sizes:
        C.warm_up(_SPACE, _overrides(size, 0))


def _task(job):
    strategy, size, seed, budget, wall, holdout, tmp, refit = job
    if strategy.default:
        out = _run_default(_SPACE, size, seed, budget, wall, holdout)
    else:
        out = _run_search(_SPACE, strategy, size, seed, budget, wall, holdout, tmp, refit)
    searched = "" if out.search is None else f", search {out.search:.4f}"
    print(f"# {size} {strategy.label} seed {seed}: best {out.best:.4f}{searched} "
          f"holdout {out.holdout} ({out.trials} trials, {out.pruned} pruned, {out.chosen}; "
          f"{out.used:.0f}/{budget:.0f} s, {C.load_text()})", file=sys.stderr, flush=True)
    return out


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def _best_at(points: list[tuple[float, float]], t: float) -> float:
    return max((b for end, b in points if end <= t), default=0.0)


def time_to_final(outs: list[Outcome], budget: float, se: float, final: float) -> float | None:
    """The smallest budget fraction (of 20 steps) at which the mean best over seeds is within
    one standard error of the final mean best."""
    for f in _FRACTIONS:  # the last step counts a run that overran its budget by a little
        t = f * budget if f < 1.0 else math.inf
        if statistics.fmean(_best_at(o.points, t) for o in outs) >= final - se - 1e-12:
            return f
    return None


def summarise(outs: list[Outcome], budgets: dict[str, float]) -> list[list]:
    rows = []
    for size in dict.fromkeys(o.size for o in outs):
        for label in dict.fromkeys(o.label for o in outs if o.size == size):
            group = [o for o in outs if o.size == size and o.label == label]
            mean, se = _mean_se([o.best for o in group])
            held = [o.holdout for o in group if o.holdout is not None]
            hmean, hse = _mean_se(held) if held else (None, None)
            frac = time_to_final(group, budgets[size], se, mean)
            searched = [o.search for o in group if o.search is not None]
            rows.append([size, label, len(group), round(mean, 4), round(se, 4),
                         round(statistics.fmean(searched), 4) if searched else "-",
                         "-" if hmean is None else round(hmean, 4),
                         "-" if hse is None else round(hse, 4),
                         "-" if frac is None else frac,
                         round(statistics.fmean(o.trials for o in group), 1),
                         round(statistics.fmean(o.pruned for o in group), 1),
                         round(statistics.fmean(o.epochs for o in group), 1)])
    return rows


def verdict(rows: list[list]) -> list[str]:
    """Goal: shipped mean best >= random's + one SE of random, and > the default config's."""
    out = []
    for size in dict.fromkeys(r[0] for r in rows):
        by = {r[1]: r for r in rows if r[0] == size}
        if not {"shipped", "random", "default"} <= set(by):
            continue
        s, r, d = by["shipped"], by["random"], by["default"]
        ok_r = s[3] >= r[3] + r[4]
        ok_d = s[3] > d[3]
        out.append(f"{size}: shipped {s[3]:.4f} vs random {r[3]:.4f} + SE {r[4]:.4f} -> "
                   f"{'met' if ok_r else 'NOT met'}; vs default {d[3]:.4f} -> "
                   f"{'met' if ok_d else 'NOT met'}")
    return out


def run(args) -> int:
    space = C.shipped_space(args.space)
    strategies = [parse_strategy(t, space) for t in args.strategies]
    strategies += [parse_strategy(t, space) for t in args.strategy]
    budgets = dict(zip(args.sizes, args.budgets or [SIZES[s][4] for s in args.sizes]))
    unit = "wall seconds" if args.wall else "CPU seconds of the trial process (process_time)"
    import torch

    torch.set_num_threads(args.threads)  # the header reports the trial processes' threads
    C.print_header("search quality: best val_acc per strategy at equal compute")
    print(f"# space {args.space}; budget = {unit}, {args.threads} torch thread(s), "
          f"{args.jobs} process(es) in parallel; seeds {args.seeds} (sampler and training seed)")
    for size in args.sizes:
        px, train, val, epochs, _ = SIZES[size]
        print(f"# size {size}: {px} px, {train} train / {val} val synthetic images, {epochs} "
              f"epochs per trial, budget {budgets[size]:g} s")
    for s in strategies:
        print(f"# strategy {s.label}: {_describe(s)}")
    if args.refit:
        print(f"# searches: {1 - args.refit:g} of the budget searching, then the best config "
              f"trained once with the remaining {args.refit:g} (--refit)")
    else:
        print("# searches: the whole budget searching, no final run (--refit 0)")
    held = ("the final run's model" if args.refit else
            "the chosen config retrained (same seed, epochs) off the budget")
    print(f"# held-out: {args.holdout} fresh synthetic images (generator seed 1); {held}; "
          "default: its model" if args.holdout else "# held-out: skipped (--holdout 0)")
    print("# note: the synthetic generator has no colour-distance knob; the harder size has "
          "more images, so the budget buys fewer epochs")
    sys.stdout.flush()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-search-quality-") as tmp:
        jobs = [(s, size, seed, budgets[size], args.wall, args.holdout, tmp, args.refit)
                for size in args.sizes for s in strategies for seed in args.seeds]
        init = (args.space, args.threads, args.sizes)
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=init) as pool:
                outs = list(pool.map(_task, jobs))
        else:
            _init(*init)
            outs = [_task(j) for j in jobs]
    print()
    print("runs (best = best val_acc within the budget; used = budget spent, with the trial cut "
          "off at the end):")
    C.print_table(["size", "strategy", "seed", "best", "search", "holdout", "trials", "pruned",
                   "epochs", "used_s", "chosen"],
                  [[o.size, o.label, o.seed, round(o.best, 4),
                    "-" if o.search is None else round(o.search, 4),
                    "-" if o.holdout is None else round(o.holdout, 4), o.trials, o.pruned,
                    o.epochs, round(o.used, 1), o.chosen] for o in outs])
    rows = summarise(outs, budgets)
    print()
    print("summary (mean and standard error over seeds; to_1se = budget fraction at which the "
          "mean best is within one SE of its final value):")
    C.print_table(["size", "strategy", "seeds", "mean_best", "se_best", "mean_search",
                   "mean_holdout",
                   "se_holdout", "to_1se", "trials", "pruned", "epochs"], rows)
    print()
    print("goal (shipped >= random + SE of random, and > default):")
    for line in verdict(rows):
        print(f"  {line}")
    print(f"# total wall {time.perf_counter() - t0:.0f} s, {C.load_text()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hyperparameters.yaml", help="a file in search_spaces/")
    ap.add_argument("--sizes", nargs="+", default=["demo", "hard"], choices=sorted(SIZES))
    ap.add_argument("--budgets", type=float, nargs="+",
                    help="seconds per run, one per --sizes entry (default: "
                         + ", ".join(f"{k} {v[4]:g}" for k, v in SIZES.items()) + ")")
    ap.add_argument("--strategies", nargs="+",
                    default=["shipped", "random", "default", *(f"{k}={v}" for k, v in
                                                               CANDIDATES.items())],
                    help="shipped, random, default or LABEL=SAMPLER|PRUNER")
    ap.add_argument("--strategy", action="append", default=[],
                    help="one more LABEL=SAMPLER|PRUNER (repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--holdout", type=int, default=1000,
                    help="held-out synthetic images for the chosen config (0: skip)")
    ap.add_argument("--refit", type=float, default=0.5,
                    help="budget fraction kept to train each search's best config once (0: none)")
    ap.add_argument("--wall", action="store_true", help="budget in wall seconds, not CPU")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs in parallel processes (fair with the CPU budget)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 40/20 images, 1 epoch, 4 s, 2 seeds, 3 strategies")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.budgets, args.seeds = ["quick"], args.budgets, args.seeds[:2]
        args.strategies, args.holdout = ["shipped", "random", "default"], min(args.holdout, 40)
    if args.budgets and len(args.budgets) != len(args.sizes):
        ap.error(f"--budgets: one per --sizes entry ({len(args.sizes)}), got {len(args.budgets)}")
    if not 0.0 <= args.refit < 1.0:
        ap.error(f"--refit: a fraction in [0, 1), got {args.refit}")
    if min(args.seeds) < 0:
        ap.error(f"--seeds: non-negative, got {args.seeds}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
