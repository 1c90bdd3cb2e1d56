"""Classification heads by fusion name, sized from the backbone's feature channels."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from backbones import LEVELS, BaseBackbone, Registry

from ..errors import UnknownNameError

__all__ = ["HEADS", "ConcatHead", "LastHead", "MSFFHead", "VcrClassifier", "build_head"]

HEADS: Registry = Registry("fusion", error=UnknownNameError)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


@HEADS.register("last")
class LastHead(nn.Module):
    """Pool c5 -> dropout -> linear."""

    def __init__(self, channels: Mapping[str, int], num_classes: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels["c5"], num_classes)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.drop(_pool(feats["c5"])))


@HEADS.register("simple_concat")
class ConcatHead(nn.Module):
    """Pool each of c2..c5 and concatenate -> dropout -> linear."""

    def __init__(self, channels: Mapping[str, int], num_classes: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(sum(channels[k] for k in LEVELS), num_classes)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.drop(torch.cat([_pool(feats[k]) for k in LEVELS], dim=1)))


@HEADS.register("msff")
class MSFFHead(nn.Module):
    """Multi-scale feature fusion: 1x1 laterals to one width, top-down merge, pool every level.

    The width is min(256, C5) so small backbones do not grow a head larger than themselves.
    """

    def __init__(self, channels: Mapping[str, int], num_classes: int, dropout: float):
        super().__init__()
        width = min(256, channels["c5"])
        self.lateral = nn.ModuleDict({k: nn.Conv2d(channels[k], width, 1) for k in LEVELS})
        self.smooth = nn.ModuleDict(
            {
                k: nn.Sequential(
                    nn.Conv2d(width, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
                for k in LEVELS
            }
        )
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width * len(LEVELS), num_classes)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        merged: dict[str, torch.Tensor] = {}
        top = None
        for k in reversed(LEVELS):
            lat = self.lateral[k](feats[k])
            if top is not None:
                lat = lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            merged[k] = top = lat
        pooled = [_pool(self.smooth[k](merged[k])) for k in LEVELS]
        return self.fc(self.drop(torch.cat(pooled, dim=1)))


def build_head(fusion: str, channels: Mapping[str, int], num_classes: int, dropout: float):
    """The head registered as `fusion`, sized from `channels` (get_feature_channels())."""
    return HEADS.get(fusion)(channels, num_classes, dropout)


class VcrClassifier(nn.Module):
    """Backbone (c2..c5) + fusion head -> class logits."""

    def __init__(self, backbone: BaseBackbone, head: nn.Module, freeze_backbone: bool = False):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for p in backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:  # frozen BN statistics stay frozen too
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))
