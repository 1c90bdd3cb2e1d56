"""The trainer's choice names (fusion, loss, optimizer, scheduler), readable without torch.

`config.py` validates names against these tables, so parsing a space imports no torch;
`heads.py`, `losses.py` and `optim.py` register their builders under these names (their tests
check each registry equals its table). Backbone names: `backbones.BACKBONE_NAMES`.
"""

from __future__ import annotations

from backbones import NameTable

from .errors import UnknownNameError

__all__ = ["FUSION_NAMES", "LOSS_NAMES", "OPTIMIZER_NAMES", "SCHEDULER_NAMES"]


def _table(kind: str, names: tuple[str, ...], live: str) -> NameTable:
    return NameTable(kind, names, live=f"{__package__}.{live}", error=UnknownNameError)


FUSION_NAMES = _table("fusion", ("last", "simple_concat", "msff"), "heads:HEADS")
LOSS_NAMES = _table("loss", ("cross_entropy", "focal", "smooth_modulation"), "losses:LOSSES")
OPTIMIZER_NAMES = _table("optimizer", ("sgd", "adam", "adamw"), "optim:OPTIMIZERS")
SCHEDULER_NAMES = _table("scheduler", ("none", "cosine", "step"), "optim:SCHEDULERS")
