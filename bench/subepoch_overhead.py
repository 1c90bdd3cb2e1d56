"""Cost of reports within an epoch: one epoch with and without `report_every`, same config.

Trains the same run (the demo's size by default) without mid-epoch reports and with
`report_every` at each --val size, --repeat times, interleaved; prints the wall seconds of each
and the share of the epoch spent scoring the validation subset (timed inside the reporter, so
it is robust to load from other processes). The epoch-end value must not move: reports draw no
random number and leave the model in training mode.

    python bench/subepoch_overhead.py
    python bench/subepoch_overhead.py --train 2000 --every 0.25 --val 128 512
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=600, help="max_train_samples")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--every", type=float, default=0.25)
    ap.add_argument("--val", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--repeat", type=int, default=2)
    ns = ap.parse_args(argv)

    import torch

    from hpo.config import TrainConfig
    from hpo.train import train_model
    from hpo.trial.subepoch import SubEpochReports

    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict({"backbone": ns.backbone, "image_size": ns.image_size,
                                 "max_train_samples": ns.train, "batch_size": ns.batch,
                                 "epochs": 1, "device": "cpu", "pretrained": False})
    print(f"# python bench/subepoch_overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    train_model(cfg)  # warm the data cache and the allocator
    runs: dict[str, list[tuple[float, float, float, int]]] = {}
    for _ in range(ns.repeat):
        for val in (None, *ns.val):
            r = SubEpochReports(ns.every, val or 1, "val_acc", lambda step, v: None)
            t0 = time.perf_counter()
            res = train_model(cfg, on_start=r.start, on_batch=None if val is None else r.on_batch)
            wall = time.perf_counter() - t0
            key = "none" if val is None else f"every {ns.every:g}, {val} val images"
            runs.setdefault(key, []).append((wall, r.seconds, res.history[-1].val_acc, r.count))
    print(f"# {ns.backbone} {ns.image_size} px, {ns.train} training images, batch {ns.batch}, "
          f"1 epoch, 1 thread, load {os.getloadavg()[0]:.1f}")
    print(f"{'reports':<32} {'wall s':>8} {'scoring s':>10} {'scoring %':>10} {'reports':>8} "
          f"{'val_acc':>8}")
    base = statistics.median(w for w, *_ in runs["none"])
    for key, rows in runs.items():
        wall = statistics.median(w for w, *_ in rows)
        score = statistics.median(s for _, s, *_ in rows)
        accs = {round(a, 6) for *_, a, _ in rows}
        print(f"{key:<32} {wall:>8.2f} {score:>10.2f} {100 * score / wall:>9.1f}% "
              f"{rows[0][3]:>8} {','.join(f'{a:.4f}' for a in sorted(accs)):>8}")
    print(f"# wall of 'none' (median) {base:.2f} s; val_acc equal across rows = reports leave "
          "training unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
