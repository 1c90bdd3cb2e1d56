"""The backbone contract: c2..c5 feature maps (strides 4/8/16/32) or a pooled vector."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .errors import ConfigError, WeightsNotFoundError

__all__ = ["LEVELS", "LEVEL_STRIDES", "BaseBackbone", "FeatureSpec", "Output", "resolve_output"]

LEVELS = ("c2", "c3", "c4", "c5")
LEVEL_STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
Output = Literal["features", "pooled"]


@dataclass(frozen=True)
class FeatureSpec:
    """One feature level as reported by the underlying library."""

    channels: int
    stride: int


def resolve_output(name: str, output: str | None, return_nodes: bool | None) -> Output:
    """The output mode from `output=` and/or the seed's `return_nodes=` (default "features").

    Raises:
        ConfigError: a value of the wrong kind, or the two keywords asking for different modes.
    """
    if output is not None and output not in ("features", "pooled"):
        raise ConfigError(
            f"backbone {name}: output must be 'features' or 'pooled', got {output!r}. "
            "Use one of those."
        )
    if return_nodes is None:
        return "pooled" if output == "pooled" else "features"
    if not isinstance(return_nodes, bool):
        raise ConfigError(
            f"backbone {name}: return_nodes must be true (c2..c5) or false (pooled), got "
            f"{return_nodes!r}. Use true or false."
        )
    implied: Output = "features" if return_nodes else "pooled"
    if output is not None and output != implied:
        raise ConfigError(
            f"backbone {name}: return_nodes={return_nodes} asks for output={implied!r}, got "
            f"output={output!r} as well. Give one of the two keywords."
        )
    return implied


class BaseBackbone(nn.Module, abc.ABC):
    """A CNN feature extractor.

    `forward(x)` returns `{"c2": ..., "c5": ...}` in `output="features"` mode, or the global
    average of c5, shape `(N, C5)`, in `output="pooled"` mode. Subclasses implement
    `forward_features` and fill `self._specs` from their library (never a hand-kept table).

    Args:
        name: registered model name.
        output: "features" (dict of c2..c5, the default) or "pooled" (vector).
        return_nodes: the seed's keyword for the same choice: True is "features", False is
            "pooled". Give either keyword, or both when they agree.
    """

    family: str = "base"

    def __init__(
        self, name: str, *, output: Output | None = None, return_nodes: bool | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self.output = resolve_output(name, output, return_nodes)
        self._specs: dict[str, FeatureSpec] = {}

    @property
    def return_nodes(self) -> bool:
        """True when `forward` returns the c2..c5 dict (the seed's name for output="features")."""
        return self.output == "features"

    @classmethod
    def locate_weights(cls, name: str) -> Path:
        """The local file of `name`'s pretrained weights; families override this. Never networks.

        Raises:
            WeightsNotFoundError: not on this machine; the message says where to put it.
        """
        raise WeightsNotFoundError(
            f"{name}: no pretrained weights are known for this backbone family. "
            "Pass weights: <state_dict file>."
        )

    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the c2..c5 feature maps of `x` (N, 3, H, W)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor] | torch.Tensor:
        feats = self.forward_features(x)
        if self.output == "pooled":
            return self.pool(feats)
        return feats

    @staticmethod
    def pool(features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Global average of c5: the backbone's feature vector, shape (N, C5)."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(features["c5"], 1), 1)

    def output_shape(self) -> dict[str, FeatureSpec]:
        """Channels and stride of each level, as the library reports them."""
        return dict(self._specs)

    def get_feature_channels(self) -> dict[str, int]:
        """`{"c2": C2, ..., "c5": C5}`."""
        return {k: s.channels for k, s in self._specs.items()}

    def get_feature_strides(self) -> dict[str, int]:
        """`{"c2": 4, ..., "c5": 32}` as measured or reported by the library."""
        return {k: s.stride for k, s in self._specs.items()}

    @property
    def out_channels(self) -> int:
        """Width of the pooled vector (C5)."""
        return self._specs["c5"].channels

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
