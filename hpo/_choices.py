"""The trainer's choice names (fusion, loss, optimizer, scheduler), readable without torch.

`config.py` validates names against these tables, so parsing a space imports no torch. The
names are read from the registration calls in `train/heads.py`, `train/losses.py` and `train/optim.py` (their
source, not an import): a builder registered there is a choice, with nothing to list here.
Backbone names: `backbones.BACKBONE_NAMES`.
"""

from __future__ import annotations

from backbones import NameTable

from .errors import UnknownNameError

__all__ = ["FUSION_NAMES", "LOSS_NAMES", "OPTIMIZER_NAMES", "SCHEDULER_NAMES"]


def _table(kind: str, module: str, registry: str) -> NameTable:
    module = f"{__package__}.{module}"
    return NameTable(kind, scan=(module,), call=f"{registry}.register", live=f"{module}:{registry}",
                     error=UnknownNameError)


FUSION_NAMES = _table("fusion", "train.heads", "HEADS")
LOSS_NAMES = _table("loss", "train.losses", "LOSSES")
OPTIMIZER_NAMES = _table("optimizer", "train.optim", "OPTIMIZERS")
SCHEDULER_NAMES = _table("scheduler", "train.optim", "SCHEDULERS")
