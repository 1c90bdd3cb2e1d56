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

    Returns:
        `out_dir`, created if needed.
    """
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(state, out_dir / "model.pt")
    metrics = {
        "weights": "final epoch",
        "monitor": result.monitor,
        "best_epoch": result.best_epoch,
        "best": asdict(result.best),
        "history": [asdict(m) for m in result.history],
        "latency_ms": result.latency_ms,
        "info": {**asdict(result.info), "class_names": list(result.info.class_names)},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return out_dir
