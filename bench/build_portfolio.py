"""Build the start-up portfolio (search_spaces/portfolio.yaml): configs that, chosen greedily,
do best across a family of synthetic tasks.

Candidates: the demo space's `default:` config and N configs drawn from the demo space
(search_spaces/hyperparameters.yaml) by Optuna's RandomSampler(seed). Each candidate is trained
as a demo trial (the space's fixed epochs and image size, training seed 0) on every task of
the family (`TASKS`: synthetic variants of several set sizes, colour distances, noise levels and
class counts; scikit-learn's digits are never used: they are the check set). Its final model is
scored on held-out images of the task (the same knobs, generator seed 1: never the val split
the trainer sees).

Scores are normalised per task, (score - worst) / (best - worst) over the candidates. The
default is trial 0 of every study, so the greedy construction starts from it: entry i is the
candidate that most raises the mean over tasks of the best normalised score so far (the
default's and entries 1..i). The YAML lists the entries in that order, with provenance in its
header; this script's output (every score) goes to stdout (`--raw` names the file it is kept in,
bench/results/portfolio-compute.txt for the shipped one).

    nice -n 5 python bench/build_portfolio.py --candidates 12 --k 6 --trial-length compute \\
        --jobs 2 --runs bench/results/portfolio-compute-runs.jsonl \\
        --raw bench/results/portfolio-compute.txt --write search_spaces/portfolio.yaml \\
        | tee bench/results/portfolio-compute.txt
    python bench/build_portfolio.py --quick          # smoke-sized (seconds), writes nothing
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

#: The family: label -> (data source with its knobs, images drawn (train + val, 80/20)). Set
#: sizes 300-750 (240-600 training images), colour distance 0.35-1.5, extra pixel noise 0-0.25,
#: 4-10 classes. `demo` is the demo's own task (synthetic, 600 training images).
TASKS: dict[str, tuple[str, int]] = {
    "demo": ("synthetic", 750),
    "close": ("synthetic:colour=0.5", 500),
    "noisy": ("synthetic:noise=0.15", 500),
    "few": ("synthetic:colour=0.6,classes=4", 300),
    "hard": ("synthetic:colour=0.35,classes=8", 600),
    "bright": ("synthetic:colour=1.5,noise=0.25,classes=5", 400),
}
QUICK_TASKS = {"demo": ("synthetic", 60), "few": ("synthetic:colour=0.6,classes=4", 60)}
HOLDOUT_SEED = 1
SPACE = "hyperparameters.yaml"


def candidates(space, n: int, seed: int) -> list[dict[str, Any]]:
    """The space's default, then `n` distinct configs drawn by RandomSampler(seed)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed),
                                direction="maximize")
    out = [space.default_params()]
    while len(out) < n + 1:
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.0)
        if params not in out:
            out.append(params)
    return out


def _overrides(data: str, size: int, quick: bool) -> dict[str, Any]:
    extra = {"epochs": 1, "image_size": 32} if quick else {}
    return {"data": data, "synthetic_size": size, "max_train_samples": None, "seed": 0,
            "device": "cpu", **extra}


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_key(data: str, size: int, params: dict[str, Any], holdout: int, quick: bool,
             epochs: int | None = None) -> str:
    extra = {} if epochs is None else {"epochs": epochs}  # keys of epoch-length builds unchanged
    return json.dumps({"data": data, "size": size, "params": params, "holdout": holdout,
                       "quick": quick, **extra}, sort_keys=True)


class _Costs:
    """What `hpo.trial.equal_compute.trial_epochs` reads and writes of a study: the step costs."""

    def __init__(self) -> None:
        self.user_attrs: dict[str, Any] = {}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value


def equal_compute(space, configs: list[dict[str, Any]], quick: bool
                  ) -> tuple[list[int], dict[str, float]]:
    """Each candidate's epochs under `trial_length: compute` (the compute of the default's
    epochs, step costs measured once here, as a study measures them), and the costs."""
    from hpo.attrs import ATTR_STEP_COSTS
    from hpo.trial.equal_compute import trial_epochs

    data, size = next(iter((QUICK_TASKS if quick else TASKS).values()))
    ov = _overrides(data, size, quick)
    costs = _Costs()
    default = space.config_for(configs[0], ov)
    epochs = [trial_epochs(costs, space.config_for(p, ov), default) for p in configs]
    return epochs, costs.user_attrs[ATTR_STEP_COSTS]


def _done_runs(path: str | None) -> dict[str, tuple[float, float]]:
    """Runs recorded by an earlier, interrupted build: key -> (held-out accuracy, CPU s)."""
    if not path or not Path(path).is_file():
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        out[row["key"]] = (row["acc"], row["cpu_s"])
    return out


def evaluate_task(job: tuple) -> tuple[str, list[float], float]:
    """Train every candidate on one task; (task, held-out accuracy per candidate, CPU s).

    Each run is appended to `runs` (JSON lines) as it ends, and runs found there are not trained
    again: an interrupted build resumes where it stopped.
    """
    import dataclasses

    from hpo.data import load_dataset, make_synthetic
    from hpo.train import evaluate, resolve_device, train_model

    label, data, size, configs, epochs, holdout, quick, runs = job
    space = C.shipped_space(SPACE)
    done = _done_runs(runs)
    cpu = 0.0
    scores = []
    for params, n in zip(configs, epochs):
        key = _run_key(data, size, params, holdout, quick, n)
        if key in done:
            scores.append(done[key][0])
            cpu += done[key][1]
            continue
        t0 = time.process_time()
        cfg = space.config_for(params, _overrides(data, size, quick))
        cfg = cfg if n is None else cfg.replace(epochs=n)
        splits = load_dataset(cfg)
        images, labels = make_synthetic(holdout, cfg.image_size, seed=HOLDOUT_SEED, spec=data)
        held = dataclasses.replace(splits, val_images=images, val_labels=labels)
        model = train_model(cfg, data=splits).model
        _, acc, _ = evaluate(model, held.val_images, held.val_labels, held.num_classes,
                             device=resolve_device("cpu"), batch_size=256)
        scores.append(float(acc))
        spent = time.process_time() - t0
        cpu += spent
        if runs:
            with open(runs, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "task": label, "acc": float(acc),
                                    "cpu_s": round(spent, 2)}) + "\n")
    return label, scores, cpu


def normalise(scores: list[float]) -> list[float]:
    """(score - worst) / (best - worst); all equal: 1 each."""
    lo, hi = min(scores), max(scores)
    return [1.0 if hi == lo else (s - lo) / (hi - lo) for s in scores]


def greedy(norm: dict[str, list[float]], k: int, start: int = 0) -> list[tuple[int, float]]:
    """Greedy portfolio: from candidate `start` (trial 0), add the candidate that most raises
    the mean over tasks of the best normalised score so far. Ties (every candidate once the
    best on each task is in: the mean is 1) go to the higher mean normalised score of the
    candidate itself, then to the lower index.

    Returns:
        (candidate index, mean best-so-far after adding it) for each of k entries.
    """
    tasks = list(norm)
    own = [statistics.fmean(norm[t][i] for t in tasks) for i in range(len(norm[tasks[0]]))]
    best = {t: norm[t][start] for t in tasks}
    chosen: list[tuple[int, float]] = []
    n = len(norm[tasks[0]])
    for _ in range(min(k, n - 1)):
        gains = []
        for i in range(n):
            if i == start or any(i == c for c, _ in chosen):
                continue
            gains.append((statistics.fmean(max(best[t], norm[t][i]) for t in tasks), own[i], -i))
        value, _, neg = max(gains)
        chosen.append((-neg, value))
        for t in tasks:
            best[t] = max(best[t], norm[t][-neg])
    return chosen


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-2 else f"{round(v, 4):g}"
    return str(v)


def portfolio_yaml(entries: list[tuple[dict[str, Any], float, float]], header: list[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    lines.append("portfolio:")
    for i, (params, value, own) in enumerate(entries, 1):
        body = ", ".join(f"{k}: {_value(v)}" for k, v in params.items())
        lines.append(f"  - {{{body}}}  # {i}: mean normalised best-so-far {value:.3f}, "
                     f"alone {own:.3f}")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    space = C.shipped_space(SPACE)
    tasks = QUICK_TASKS if args.quick else TASKS
    configs = candidates(space, args.candidates, args.seed)
    C.print_header("start-up portfolio: greedy over synthetic tasks, held-out accuracy")
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    print(f"# {len(configs)} candidates: the default of {SPACE} + {args.candidates} drawn by "
          f"RandomSampler(seed={args.seed}); training seed 0; held-out: {args.holdout} images "
          f"per task (generator seed {HOLDOUT_SEED}); jobs {args.jobs}")
    print("# tasks: " + "; ".join(f"{t}={d} n={n}" for t, (d, n) in tasks.items()))
    sys.stdout.flush()
    epochs: list[int | None] = [None] * len(configs)
    if args.trial_length == "compute":
        _init(1)
        epochs[:], costs = equal_compute(space, configs, args.quick)
        print(f"# trial_length compute: epochs per candidate {epochs}; step costs (s per image) "
              + json.dumps({k: round(v, 6) for k, v in costs.items()}))
    jobs = [(t, d, n, configs, epochs, args.holdout, args.quick, args.runs)
            for t, (d, n) in tasks.items()]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=(1,)) as pool:
        results = {}
        for label, scores, cpu in pool.map(evaluate_task, jobs):  # each task as it ends
            results[label] = (scores, cpu)
            print(f"# task {label}: {cpu:.0f} CPU s; held-out "
                  + " ".join(f"{v:.3f}" for v in scores))
            sys.stdout.flush()
    wall = time.perf_counter() - t0
    cpu = sum(c for _, c in results.values())
    print("# CPU s per task: " + ", ".join(f"{t} {results[t][1]:.0f}" for t in tasks))
    print(f"# {len(configs) * len(tasks)} runs: {cpu:.0f} CPU s (sum over runs, 1 torch thread "
          f"each, resumed runs at their recorded cost); this invocation {wall:.0f} s wall\n")
    raw = {t: results[t][0] for t in tasks}
    norm = {t: normalise(s) for t, s in raw.items()}
    names = [k for k in configs[0]] + sorted({k for c in configs for k in c} - set(configs[0]))
    rows = [[i, *(_value(c.get(k, "-")) for k in names), *(round(raw[t][i], 3) for t in tasks),
             round(statistics.fmean(norm[t][i] for t in tasks), 3)] for i, c in enumerate(configs)]
    C.print_table(["#", *names, *tasks, "mean_norm"], rows)
    picks = greedy(norm, args.k)
    base = statistics.fmean(norm[t][0] for t in tasks)
    print(f"\n# greedy from the default (#0, mean normalised {base:.3f}):")
    own = [statistics.fmean(norm[t][i] for t in tasks) for i in range(len(configs))]
    C.print_table(["entry", "candidate", "mean best-so-far", "own mean_norm", *tasks],
                  [[e, i, round(v, 3), round(own[i], 3), *(round(raw[t][i], 3) for t in tasks)]
                   for e, (i, v) in enumerate(picks, 1)])
    if args.write:
        command = f"nice -n 5 python {shlex.join(['bench/build_portfolio.py', *sys.argv[1:]])}"
        header = [
            "vcr-hpo start-up portfolio: configs enqueued right after trial 0 (study.portfolio: k,",
            "the first k entries, projected onto the user's space). Data, not a search space.",
            f"Built by: {command}",
            f"Date: {started.isoformat()}; raw output: {args.raw}",
            (f"Candidates: the default of search_spaces/{SPACE} + {args.candidates} drawn by "
             f"RandomSampler(seed={args.seed});"),
            ("  each trained as a demo trial (3 epochs, 32 px, training seed 0) on every task."
             if args.trial_length == "epochs" else
             "  each trained as a demo trial with trial_length: compute (the compute of the "
             "default's 3 epochs: epochs " + ", ".join(map(str, epochs)) + "), 32 px, training "
             "seed 0, on every task."),
            (f"Tasks ({len(tasks)}, never scikit-learn digits; held-out: {args.holdout} "
             f"images, generator seed {HOLDOUT_SEED}):"),
            *(f"  {t}: data {d}, {n} images (train + val)" for t, (d, n) in tasks.items()),
            "Greedy from the default: each entry maximises the mean over tasks of the best",
            "  normalised held-out accuracy so far, (score - worst) / (best - worst) per task",
            f"  (the default alone: {base:.3f}); once that is 1, by its own mean normalised score.",
            "",
        ]
        entries = [(configs[i], v, own[i]) for i, v in picks]
        Path(args.write).write_text(portfolio_yaml(entries, header), encoding="utf-8")
        print(f"\n# wrote {args.write}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", type=int, default=12, help="configs drawn besides the default")
    p.add_argument("--seed", type=int, default=0, help="RandomSampler seed of the candidates")
    p.add_argument("--k", type=int, default=6, help="portfolio entries kept")
    p.add_argument("--holdout", type=int, default=400, help="held-out images per task")
    p.add_argument("--jobs", type=int, default=1, help="tasks trained in parallel processes")
    p.add_argument("--write", metavar="YAML", help="write the portfolio here")
    p.add_argument("--runs", metavar="JSONL", help="append each run here and skip runs found "
                   "there (resume an interrupted build)")
    p.add_argument("--quick", action="store_true", help="smoke-sized: 2 tiny tasks, 1 epoch")
    p.add_argument("--raw", default="bench/results/portfolio-compute.txt", metavar="FILE",
                   help="where this output is kept (named in the YAML's header)")
    p.add_argument("--trial-length", choices=["epochs", "compute"], default="epochs",
                   help="train each candidate the space's epochs, or the compute of the "
                        "default's epochs (study.trial_length: compute)")
    args = p.parse_args(argv)
    if args.quick:
        args.holdout = min(args.holdout, 40)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
