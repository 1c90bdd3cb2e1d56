"""torchvision ResNets (resnet18/34/50) as c2..c5 backbones."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from ._builders import register_backbone
from .base import LEVELS, BaseBackbone, FeatureSpec, Output
from .errors import ConfigError, WeightsNotFoundError
from .weights import hub_checkpoint_path, load_state_dict_file

__all__ = ["ResNetBackbone"]

_NAMES = ("resnet18", "resnet34", "resnet50")


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a full-model state_dict; only the classifier (fc.*) may be missing or differ."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (k.startswith("fc.") and k in own and v.shape != own[k].shape)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ConfigError(
            f"weights: {source} does not match {type(model).__name__}, got "
            f"{len(missing)} missing keys (e.g. {missing[:3]}) and {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}). Use a state_dict saved from the same torchvision architecture."
        )


@register_backbone(_NAMES, family="resnet")
class ResNetBackbone(BaseBackbone):
    """A torchvision ResNet split into stem + layer1..4 -> c2..c5.

    Args:
        name: "resnet18", "resnet34" or "resnet50".
        pretrained: load ImageNet weights from `$TORCH_HOME/hub/checkpoints/` (no network).
        weights: path of a state_dict file; implies pretrained.
        output: "features" (c2..c5, the default) or "pooled".
        return_nodes: the seed's keyword: True is output="features", False is "pooled".
    """

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool = False,
        *,
        weights: str | os.PathLike | None = None,
        output: Output | None = None,
        return_nodes: bool | None = None,
    ) -> None:
        super().__init__(name, output=output, return_nodes=return_nodes)
        if name not in _NAMES:
            from ._builders import BACKBONES

            raise ConfigError(f"ResNetBackbone: name must be one of {list(_NAMES)}, got {name!r}. "
                              f"For other models use BackboneFactory ({BACKBONES.kind}s: {', '.join(BACKBONES.names())}).")
        model = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            _load_into(model, load_state_dict_file(weights), repr(str(weights)))
        elif pretrained:
            path = self.locate_weights(name)
            _load_into(model, load_state_dict_file(path), str(path))
        self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        self.layer1, self.layer2 = model.layer1, model.layer2
        self.layer3, self.layer4 = model.layer3, model.layer4
        self._specs = self._measure()

    @classmethod
    def locate_weights(cls, name: str) -> Path:
        """The local file of torchvision's ImageNet weights for `name`. Never networks.

        Raises:
            WeightsNotFoundError: not in the torch hub cache; the message says where to put it.
        """
        path = cls.expected_weights_path(name)
        if not path.is_file():
            url = torchvision.models.get_model_weights(name).DEFAULT.url
            raise WeightsNotFoundError(
                f"{name}: pretrained ImageNet weights not found, expected {path}. "
                f"Download {url} on a machine with network and copy it there "
                f"(or set TORCH_HOME, or pass weights: <file>)."
            )
        return path

    @staticmethod
    def expected_weights_path(name: str) -> Path:
        """The torch hub cache file torchvision would download for `name`."""
        return hub_checkpoint_path(torchvision.models.get_model_weights(name).DEFAULT.url)

    def _measure(self) -> dict[str, FeatureSpec]:
        """Channels and strides from a dry run (torchvision reports neither)."""
        p = next(self.parameters())
        size = 64
        x = torch.zeros(1, 3, size, size, device=p.device, dtype=p.dtype)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            feats = self.forward_features(x)
        self.train(was_training)
        return {k: FeatureSpec(int(f.shape[1]), size // int(f.shape[-1])) for k, f in feats.items()}

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return dict(zip(LEVELS, (c2, c3, c4, c5)))
