"""CNN feature extractors for vehicle-colour recognition: c2..c5 maps or a pooled vector.

Names are imported on first use (PEP 562), so `backbones.errors` and `backbones.registry` load
without torch: `vcr-hpo status` and `validate --help` start in a fraction of a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

#: public name -> submodule that defines it
_EXPORTS = {
    "BACKBONES": "factory",  # through the factory, which imports every built-in backbone
    "BACKBONE_NAMES": "_builders",
    "BackboneEntry": "_builders",
    "register_backbone": "_builders",
    "LEVEL_STRIDES": "base",
    "LEVELS": "base",
    "BaseBackbone": "base",
    "FeatureSpec": "base",
    "ConfigError": "errors",
    "UnknownNameError": "errors",
    "VcrHpoError": "errors",
    "WeightsNotFoundError": "errors",
    "BACKBONE_OPTIONS": "factory",
    "BackboneFactory": "factory",
    "create_backbone": "factory",
    "find_pretrained_weights": "factory",
    "list_backbones": "factory",
    "Registry": "registry",
    "ResNetBackbone": "resnet",
    "EfficientNetBackbone": "timm_backbone",
    "TimmBackbone": "timm_backbone",
}

__all__ = [
    "BACKBONES",
    "BACKBONE_NAMES",
    "BACKBONE_OPTIONS",
    "LEVELS",
    "LEVEL_STRIDES",
    "BackboneEntry",
    "BackboneFactory",
    "BaseBackbone",
    "ConfigError",
    "EfficientNetBackbone",
    "FeatureSpec",
    "Registry",
    "ResNetBackbone",
    "TimmBackbone",
    "UnknownNameError",
    "VcrHpoError",
    "WeightsNotFoundError",
    "create_backbone",
    "find_pretrained_weights",
    "list_backbones",
    "register_backbone",
]

if TYPE_CHECKING:
    from ._builders import BACKBONE_NAMES, BackboneEntry, register_backbone
    from .base import LEVEL_STRIDES, LEVELS, BaseBackbone, FeatureSpec
    from .errors import ConfigError, UnknownNameError, VcrHpoError, WeightsNotFoundError
    from .factory import (
        BACKBONE_OPTIONS,
        BACKBONES,
        BackboneFactory,
        create_backbone,
        find_pretrained_weights,
        list_backbones,
    )
    from .registry import Registry
    from .resnet import ResNetBackbone
    from .timm_backbone import EfficientNetBackbone, TimmBackbone

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
