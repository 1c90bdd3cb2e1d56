"""Classification losses by name: cross_entropy, focal, smooth_modulation (VCR long-tail loss).

Adding a loss: a class here registered with `@LOSSES.register("name")`, whose `__init__` takes
trainer fields by name (and `class_counts` for the training set's class sizes); a hyperparameter
of its own is a new field in `hpo/config.py`. The name is then a `loss_fn` choice everywhere
(config checks, spaces, the schema) without being listed again.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from backbones import Registry

from ..errors import UnknownNameError

__all__ = [
    "LOSSES",
    "CrossEntropy",
    "EpochAware",
    "FocalLoss",
    "LossSettings",
    "SmoothModulationLoss",
    "build_loss",
]

LOSSES: Registry = Registry("loss", error=UnknownNameError)


class LossSettings(Protocol):
    """What `build_loss` reads: `loss_fn`, and the fields the loss's `__init__` names (a
    TrainConfig has them all; this module does not import it)."""

    @property  # read-only, so a frozen dataclass (TrainConfig) satisfies the protocol
    def loss_fn(self) -> str: ...


class EpochAware(nn.Module):
    """A loss whose behaviour may depend on training progress; `set_epoch` is called each epoch."""

    def set_epoch(self, epoch: int, epochs: int) -> None:
        pass


@LOSSES.register("cross_entropy")
class CrossEntropy(EpochAware):
    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)


@LOSSES.register("focal")
class FocalLoss(EpochAware):
    """Multi-class focal loss: mean of alpha * (1 - p_t)^gamma * CE; equals CE at gamma 0, alpha 1."""

    def __init__(self, focal_gamma: float, focal_alpha: float | None, label_smoothing: float):
        super().__init__()
        self.gamma, self.alpha, self.label_smoothing = focal_gamma, focal_alpha, label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        ce = F.nll_loss(logp, target, reduction="none")
        if self.label_smoothing:
            ce = (1 - self.label_smoothing) * ce - self.label_smoothing * logp.mean(dim=1)
        pt = logp.gather(1, target[:, None]).squeeze(1).exp()
        loss = (1 - pt).clamp_min(0).pow(self.gamma) * ce
        if self.alpha is not None:
            loss = self.alpha * loss
        return loss.mean()


@LOSSES.register("smooth_modulation")
class SmoothModulationLoss(EpochAware):
    """Cross-entropy whose class weights move from uniform (first epoch) to (1/n_c)^tau (last).

    Weights are normalised to mean 1 so the loss scale stays comparable across epochs.
    """

    target_weights: torch.Tensor  # buffers (register_buffer)
    weights: torch.Tensor

    def __init__(self, class_counts: Sequence[int], tau: float, label_smoothing: float):
        super().__init__()
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64).clamp_min(1)
        target = counts.pow(-tau)
        self.register_buffer("target_weights", (target / target.mean()).float())
        self.register_buffer("weights", torch.ones(len(counts)))
        self.label_smoothing = label_smoothing

    def set_epoch(self, epoch: int, epochs: int) -> None:
        s = 1.0 if epochs <= 1 else min(max(epoch / (epochs - 1), 0.0), 1.0)
        self.weights = (1 - s) * torch.ones_like(self.target_weights) + s * self.target_weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(),
            target,
            weight=self.weights.to(logits.device),
            label_smoothing=self.label_smoothing,
        )


def build_loss(cfg: LossSettings, class_counts: Sequence[int]) -> EpochAware:
    """The loss `cfg.loss_fn`, given the fields of `cfg` its `__init__` names, and `class_counts`.

    Raises:
        UnknownNameError: `cfg.loss_fn` is not registered.
        TypeError: the loss takes a parameter `cfg` has no field for (a bug of that loss).
    """
    cls = LOSSES.get(cfg.loss_fn)
    kwargs: dict[str, object] = {}
    for param in inspect.signature(cls).parameters:
        if param == "class_counts":
            kwargs[param] = class_counts
        elif hasattr(cfg, param):
            kwargs[param] = getattr(cfg, param)
        else:
            raise TypeError(f"loss {cfg.loss_fn}: {cls.__name__} takes {param!r}, not a trainer "
                            "field. Name its parameters after TrainConfig fields (or class_counts)")
    return cls(**kwargs)
