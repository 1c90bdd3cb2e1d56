"""What `trial_isolation: process` costs per trial on the CPU: the same tiny trials in-process
and each in a child forked from the worker.

Both arms run the project's own trial loop (`hpo.study.run_trials`) with the project's
`Objective` on one SQLite file each, same seed, same trials; the isolated arm wraps it in
`hpo.run.isolation.IsolatedObjective`. Reported: seconds per trial (median and mean, the first
trial of each arm dropped: it loads the data cache and builds kernels), and the difference.

    python bench/isolation_cost.py                 # 12 trials an arm, resnet10t at 32 px
    python bench/isolation_cost.py --trials 6 --epochs 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

_SPACE = """\
study:
  name: iso-cost
  metric: val_acc
  n_trials: 1
  sampler: {{type: TPE, seed: 0}}
  pruner: null
hyperparameters:
  lr: {{type: float, low: 0.001, high: 0.05, log: true}}
fixed:
  backbone: resnet10t
  epochs: {epochs}
  image_size: 32
  max_train_samples: {train}
  synthetic_size: {size}
  batch_size: 32
  device: cpu
"""


def arm(space, url: str, trials: int, isolated: bool) -> list[float]:
    """Seconds of each trial (claim to tell) of one arm."""
    import optuna

    from hpo.run.isolation import IsolatedObjective
    from hpo.study import build_storage, run_trials
    from hpo.trial.objective import Objective

    storage = build_storage(url, heartbeat_interval=None, grace_period=None)
    study = optuna.create_study(storage=storage, study_name="iso-cost", direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    objective = Objective(space)
    if isolated:
        objective = IsolatedObjective(objective)
    seconds: list[float] = []
    last = [time.perf_counter()]

    def done(frozen) -> None:
        now = time.perf_counter()
        seconds.append(now - last[0])
        last[0] = now

    run_trials(study, objective, n_trials=trials, on_trial=done)
    states = {t.state.name for t in study.trials}
    assert states == {"COMPLETE"}, states
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train", type=int, default=64)
    args = p.parse_args(argv)

    import torch

    import hpo

    torch.set_num_threads(1)
    C.print_header("isolation_cost: seconds per trial, in-process vs forked child per trial")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(_SPACE.format(epochs=args.epochs, train=args.train,
                                      size=args.train + 64))
        space = hpo.load_space(path)
        print(f"# {args.trials} trials an arm: resnet10t, 32 px, {args.train} train images, "
              f"{args.epochs} epoch(s), 1 torch thread, SQLite; first trial of each arm dropped")
        sys.stdout.flush()
        rows = []
        results = {}
        for isolated in (False, True):
            secs = arm(space, f"sqlite:///{tmp}/{int(isolated)}.db", args.trials, isolated)
            steady = secs[1:]
            results[isolated] = statistics.median(steady)
            rows.append(["process" if isolated else "none", len(steady),
                         round(statistics.median(steady), 3), round(statistics.mean(steady), 3),
                         round(min(steady), 3), round(max(steady), 3), round(secs[0], 3)])
    print()
    C.print_table(["trial_isolation", "trials", "median s", "mean s", "min s", "max s",
                   "first s"], rows)
    cost = results[True] - results[False]
    print(f"\nisolation costs {cost * 1000:+.0f} ms per trial (median), "
          f"{cost / results[False] * 100:+.1f}% of an in-process trial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
