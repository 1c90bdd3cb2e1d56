"""A finished run on disk: weights, metrics and the config that trained them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import TrainConfig
from ._state import TrainResult

__all__ = ["save_run"]


def save_run(result: TrainResult, cfg: TrainConfig, out_dir: Path) -> Path:
    """Write `model.pt` (state_dict), `metrics.json` and `config.yaml` into `out_dir`.

    A run without validation images (all data trained) writes `"data": "all data, no
    validation"` and its training history, and no validation metric at all.

    Returns:
        `out_dir`, created if needed.
    """
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(state, out_dir / "model.pt")
    info = {**asdict(result.info), "class_names": list(result.info.class_names)}
    if result.info.num_val == 0:  # all data trained: no held-out score exists, none is written
        trained = ("epoch", "train_loss", "seconds", "images_per_s", "lr")
        metrics = {
            "weights": "final epoch",
            "data": "all data, no validation",
            "epochs": len(result.history),
            "history": [{k: getattr(m, k) for k in trained} for m in result.history],
            "latency_ms": result.latency_ms,
            "info": info,
        }
    else:
        metrics = _validated_metrics(result, info)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return out_dir


def _validated_metrics(result: TrainResult, info: dict) -> dict:
    return {
        "weights": "final epoch",
        "monitor": result.monitor,
        "best_epoch": result.best_epoch,
        "best": asdict(result.best),
        "history": [asdict(m) for m in result.history],
        "latency_ms": result.latency_ms,
        "info": info,
    }
