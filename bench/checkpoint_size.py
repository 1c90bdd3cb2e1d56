"""Disk a study's checkpoints and kept weights take, measured by saving real ones.

For each backbone and fusion head: build the trial state (`hpo.train.build_state`) with the
optimizer asked, train one epoch of two steps (Adam allocates its two moment buffers on its
first step), then `torch.save` what the runner saves: the per-trial checkpoint
(`TrainState.state_dict()` with the checkpoint wrapper) and the kept weights (model state_dict
with the weights wrapper). Image size does not change either size, so 32 px keeps it quick.

Then the disk of an N-trial study: at most `workers` checkpoints live at once (one per running
trial; each is replaced after every epoch and removed when its trial ends) plus the kept
weights (top k of the study + top k per backbone, default 1 + 1 per backbone).

    python bench/checkpoint_size.py                                # resnet50, last and msff heads
    python bench/checkpoint_size.py --backbones resnet50 resnet18 --workers 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(backbone: str, fusion: str, optimizer: str) -> tuple[int, int, int]:
    """(checkpoint bytes, kept-weights bytes, parameters) of one trial of this configuration."""
    from hpo.config import TrainConfig
    from hpo.train import build_state, train_epoch
    from hpo.trial.checkpoint import CHECKPOINT_FORMAT, WEIGHTS_FORMAT

    cfg = TrainConfig(backbone=backbone, fusion=fusion, optimizer=optimizer, image_size=32,
                      batch_size=16, max_train_samples=32, synthetic_size=80, epochs=1,
                      device="cpu", amp=False)
    state = build_state(cfg)
    train_epoch(state)
    sd = state.state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, weights = Path(tmp) / "ckpt.pt", Path(tmp) / "weights.pt"
        torch.save({"format": CHECKPOINT_FORMAT, "identity": "0" * 64, "trial": 0,
                    "state": sd}, ckpt)
        torch.save({"format": WEIGHTS_FORMAT, "config": sd["config"], "model": sd["model"]},
                   weights)
        return (os.path.getsize(ckpt), os.path.getsize(weights),
                sum(p.numel() for p in state.model.parameters()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet50"])
    ap.add_argument("--fusions", nargs="+", default=["last", "msff"])
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--top", type=int, default=1, help="study.keep_weights.top")
    ap.add_argument("--per-backbone", type=int, default=1, help="study.keep_weights.per_backbone")
    args = ap.parse_args()
    torch.manual_seed(0)
    mib = 1024 * 1024
    print(f"torch {torch.__version__}; optimizer {args.optimizer}; sizes in MiB")
    print(f"{'backbone':<14}{'fusion':<8}{'params':>10}{'checkpoint':>12}{'weights':>10}"
          f"{'study (' + str(args.trials) + ' trials)':>22}")
    for backbone in args.backbones:
        for fusion in args.fusions:
            ckpt, weights, params = measure(backbone, fusion, args.optimizer)
            # one backbone: the study's top k and the backbone's top k are the same trials
            kept = max(args.top, args.per_backbone)
            live = min(args.workers, args.trials)
            total = live * ckpt + kept * weights
            print(f"{backbone:<14}{fusion:<8}{params / 1e6:>9.2f}M{ckpt / mib:>12.1f}"
                  f"{weights / mib:>10.1f}{total / mib:>14.1f} peak, {kept * weights / mib:.1f} "
                  "after")
    print(f"peak = {args.workers} live checkpoint(s) (one per running trial) + kept weights; "
          f"after = kept weights only (top {args.top} of the study, top {args.per_backbone} per "
          "backbone); the trial count does not change either")


if __name__ == "__main__":
    main()
