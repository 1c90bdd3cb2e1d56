"""Screen small, confirm large: best of the confirm study with and without `--warm-start`.

Per seed: a screening study at --screen-size px, then two confirm studies at --confirm-size px
with the same trial count, one cold (the space's sampler from scratch) and one warm-started from
the screen's top k. Every study runs through `hpo.run_study` exactly as `vcr-hpo run` does (the
warm one with `warm_start="screen:K"`), on temporary SQLite files. Prints each study's best
val_acc, the warm-minus-cold difference per seed, and its mean and standard error.

    python bench/warm_start.py                    # 2 seeds, tiny settings (minutes on 2 cores)
    python bench/warm_start.py --no-pruner --show # every screen trial completes; list trials
    python bench/warm_start.py --seeds 1 2 3 --screen-trials 6 --confirm-trials 4
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

import yaml


def _space(text: str, name: str, seed: int, where: Path, pruner: bool = True):
    from hpo.space import parse_search_space

    doc = yaml.safe_load(text)
    doc["study"]["name"] = name
    doc["study"]["sampler"] = {**dict(doc["study"].get("sampler") or {"type": "TPE"}), "seed": seed}
    if not pruner:
        doc["study"]["pruner"] = None
    path = where / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return parse_search_space(path.read_text(), source=str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="search_spaces/hyperparameters.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--screen-trials", type=int, default=4)
    ap.add_argument("--confirm-trials", type=int, default=3)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--screen-size", type=int, default=32)
    ap.add_argument("--confirm-size", type=int, default=48)
    ap.add_argument("--show", action="store_true", help="print each confirm trial")
    ap.add_argument("--train", type=int, default=400, help="max_train_samples")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--no-pruner", action="store_true",
                    help="every trial completes (a pruned screen trial is never warm-start material)")
    ns = ap.parse_args(argv)

    import torch

    import hpo
    from hpo.attrs import WARM_START

    torch.set_num_threads(1)
    text = Path(ns.space).read_text()
    common = {"max_train_samples": ns.train, "epochs": ns.epochs, "device": "cpu"}
    print(f"# python bench/warm_start.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# space {ns.space}; screen {ns.screen_trials} trials at {ns.screen_size} px, confirm "
          f"{ns.confirm_trials} trials at {ns.confirm_size} px (cold vs --warm-start screen:{ns.k}); "
          f"{ns.train} training images, {ns.epochs} epochs; load {os.getloadavg()[0]:.1f}")
    print(f"{'seed':>4} {'screen':>7} {'cold':>7} {'warm':>7} {'warm-cold':>9} {'s':>6}")
    diffs = []
    rows = []
    for seed in ns.seeds:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="warm-bench-") as tmp:
            where = Path(tmp)
            url = f"sqlite:///{where / 'studies.db'}"
            best = {}
            for arm, size, n, warm in (("screen", ns.screen_size, ns.screen_trials, None),
                                       ("cold", ns.confirm_size, ns.confirm_trials, None),
                                       ("warm", ns.confirm_size, ns.confirm_trials,
                                        f"screen:{ns.k}")):
                space = _space(text, arm, seed, where, pruner=not ns.no_pruner)
                result = hpo.run_study(space, storage=url, n_trials=n, threads=1,
                                       overrides={**common, "image_size": size}, warm_start=warm)
                best[arm] = result.best.values[0] if result.best else math.nan
                if ns.show:
                    for t in sorted(result.study.trials, key=lambda t: t.number):
                        print(f"#   seed {seed} {arm} trial {t.number} {t.state.name} "
                              f"value={t.value} warm_start={t.user_attrs.get(WARM_START)} "
                              f"params={t.params}")
        diff = best["warm"] - best["cold"]
        diffs.append(diff)
        rows.append(best)
        print(f"{seed:>4} {best['screen']:>7.3f} {best['cold']:>7.3f} {best['warm']:>7.3f} "
              f"{diff:>+9.3f} {time.perf_counter() - t0:>6.0f}", flush=True)
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    print(f"mean  cold {statistics.fmean(r['cold'] for r in rows):.3f}  warm "
          f"{statistics.fmean(r['warm'] for r in rows):.3f}  warm-cold {mean:+.3f} "
          f"(standard error {se:.3f}, {len(diffs)} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
