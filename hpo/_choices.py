"""The trainer's choice names (fusion, loss, optimizer, scheduler), readable without torch.

`config.py` validates names against these tables, so parsing a space imports no torch;
`heads.py`, `losses.py` and `optim.py` register their builders under these names (their tests
check each registry equals its table). Backbone names: `backbones._builders.BACKBONE_NAMES`.
"""

from __future__ import annotations

from backbones._names import NameTable

__all__ = ["FUSION_NAMES", "LOSS_NAMES", "OPTIMIZER_NAMES", "SCHEDULER_NAMES"]

FUSION_NAMES = NameTable("fusion", ("last", "simple_concat", "msff"), live=f"{__package__}.heads:HEADS")
LOSS_NAMES = NameTable(
    "loss", ("cross_entropy", "focal", "smooth_modulation"), live=f"{__package__}.losses:LOSSES"
)
OPTIMIZER_NAMES = NameTable(
    "optimizer", ("sgd", "adam", "adamw"), live=f"{__package__}.optim:OPTIMIZERS"
)
SCHEDULER_NAMES = NameTable(
    "scheduler", ("none", "cosine", "step"), live=f"{__package__}.optim:SCHEDULERS"
)
