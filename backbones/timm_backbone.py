"""timm CNNs (EfficientNet B0-B7 and other timm models) as c2..c5 backbones."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import torch

from ._builders import register_backbone
from .base import LEVEL_STRIDES, BaseBackbone, FeatureSpec, Output
from .errors import ConfigError, WeightsNotFoundError
from .weights import hf_cached_file, hf_expected_path, hub_checkpoint_path, load_state_dict_file

__all__ = ["EfficientNetBackbone", "TimmBackbone"]

_EFFICIENTNETS = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
                  "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7")
_OTHER_TIMM = ("convnext_tiny", "mobilenetv3_large_100", "resnet10t")


def resolve_timm_weights(name: str) -> Path:
    """The local file holding timm's default ImageNet weights for `name`. Never networks.

    Looks in the Hugging Face cache (timm's `hf_hub_id`), then the torch hub cache (`url`).

    Raises:
        WeightsNotFoundError: no local copy; the message says where to put one.
    """
    cfg = timm.models.get_pretrained_cfg(name)
    hf_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if hf_id:
        found = hf_cached_file(hf_id)
        if found is not None:
            return found
    if url:
        path = hub_checkpoint_path(url)
        if path.is_file():
            return path
    if not hf_id and not url:
        raise WeightsNotFoundError(
            f"{name}: timm has no pretrained ImageNet weights for this model, got pretrained: true. "
            f"Pass weights: <state_dict file> (e.g. converted from tf_{name}) or set pretrained: false."
        )
    where = [str(hf_expected_path(hf_id))] if hf_id else []
    where += [str(hub_checkpoint_path(url))] if url else []
    how = (f"run `huggingface-cli download {hf_id}` on a machine with network and copy the cache"
           if hf_id else f"download {url} and copy it there")
    raise WeightsNotFoundError(
        f"{name}: pretrained ImageNet weights not found, expected {' or '.join(where)}. "
        f"{how.capitalize()} (or pass weights: <file>)."
    )


class TimmBackbone(BaseBackbone):
    """Any timm CNN with `features_only`; levels picked by reduction 4/8/16/32, not position.

    Args:
        name: a timm model name registered here.
        pretrained: load ImageNet weights from the local HF or torch hub cache (no network).
        weights: path of a state_dict file of the full timm model; implies pretrained.
        output: "features" (c2..c5, the default) or "pooled".
        return_nodes: the seed's keyword: True is output="features", False is "pooled".
    """

    @classmethod
    def locate_weights(cls, name: str) -> Path:
        """The local file of timm's ImageNet weights for `name` (see `resolve_timm_weights`)."""
        return resolve_timm_weights(name)

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        *,
        weights: str | os.PathLike | None = None,
        output: Output | None = None,
        return_nodes: bool | None = None,
    ) -> None:
        super().__init__(name, output=output, return_nodes=return_nodes)
        file = None
        if weights is not None:
            file = Path(weights).expanduser()
            load_state_dict_file(file)  # fail here with our message rather than deep in timm
        elif pretrained:
            file = self.locate_weights(name)
        kwargs: dict[str, Any] = {}
        if file is not None:
            kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(file)}}
        try:
            self.body = timm.create_model(name, features_only=True, **kwargs)
        except RuntimeError as exc:
            raise ConfigError(
                f"weights: {str(file)!r} does not match timm model {name}, got "
                f"{str(exc).splitlines()[0][:200]}. Use a state_dict of the same timm architecture."
            ) from None
        # timm's FeatureInfo; nn.Module.__getattr__ would type it Tensor | Module
        info: Any = self.body.feature_info
        reductions, channels = info.reduction(), info.channels()
        # The last level at each reduction is the deepest one at that stride.
        picked: dict[str, int] = {}
        for i, red in enumerate(reductions):
            for level, stride in LEVEL_STRIDES.items():
                if red == stride:
                    picked[level] = i
        missing = [lvl for lvl in LEVEL_STRIDES if lvl not in picked]
        if missing:
            raise ConfigError(
                f"{name}: timm reports reductions {reductions}, got no level for {missing}. "
                "Use a CNN with strides 4, 8, 16 and 32."
            )
        self._indices = [picked[lvl] for lvl in LEVEL_STRIDES]
        self._specs = {
            lvl: FeatureSpec(int(channels[i]), int(reductions[i])) for lvl, i in picked.items()
        }

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = self.body(x)
        return {lvl: outs[i] for lvl, i in zip(LEVEL_STRIDES, self._indices)}


register_backbone(_OTHER_TIMM, family="timm")(TimmBackbone)


@register_backbone(_EFFICIENTNETS, family="efficientnet")
class EfficientNetBackbone(TimmBackbone):
    """EfficientNet B0-B7 via timm `features_only`."""

    def __init__(self, name: str = "efficientnet_b0", pretrained: bool = False, **kwargs) -> None:
        if name not in _EFFICIENTNETS:
            raise ConfigError(
                f"EfficientNetBackbone: name must be one of {list(_EFFICIENTNETS)}, got {name!r}. "
                "Use BackboneFactory for other timm models."
            )
        super().__init__(name, pretrained, **kwargs)
