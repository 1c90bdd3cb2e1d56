"""Classification losses by name: cross_entropy, focal, smooth_modulation (VCR long-tail loss)."""

from __future__ import annotations

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
    """The fields `build_loss` reads (a TrainConfig has them; this module does not import it)."""

    # read-only properties, so a frozen dataclass (TrainConfig) satisfies the protocol
    @property
    def loss_fn(self) -> str: ...
    @property
    def label_smoothing(self) -> float: ...
    @property
    def focal_gamma(self) -> float: ...
    @property
    def focal_alpha(self) -> float | None: ...
    @property
    def tau(self) -> float: ...


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

    def __init__(
        self, gamma: float, alpha: float | None, label_smoothing: float
    ):
        super().__init__()
        self.gamma, self.alpha, self.label_smoothing = gamma, alpha, label_smoothing

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
    """The loss `cfg.loss_fn` with its hyperparameters from `cfg`."""
    cls = LOSSES.get(cfg.loss_fn)
    if cls is FocalLoss:
        return FocalLoss(cfg.focal_gamma, cfg.focal_alpha, cfg.label_smoothing)
    if cls is SmoothModulationLoss:
        return SmoothModulationLoss(class_counts, cfg.tau, cfg.label_smoothing)
    return cls(cfg.label_smoothing)
