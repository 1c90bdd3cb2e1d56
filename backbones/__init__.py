"""CNN feature extractors for vehicle-colour recognition: c2..c5 maps or a pooled vector."""

from ._builders import BACKBONES, BackboneEntry, register_backbone
from .base import LEVEL_STRIDES, LEVELS, BaseBackbone, FeatureSpec
from .errors import ConfigError, UnknownNameError, VcrHpoError, WeightsNotFoundError
from .factory import (
    BACKBONE_OPTIONS,
    BackboneFactory,
    create_backbone,
    find_pretrained_weights,
    list_backbones,
)
from .registry import Registry
from .resnet import ResNetBackbone
from .timm_backbone import EfficientNetBackbone, TimmBackbone

__all__ = [
    "BACKBONES",
    "BACKBONE_OPTIONS",
    "BackboneEntry",
    "BackboneFactory",
    "BaseBackbone",
    "ConfigError",
    "EfficientNetBackbone",
    "FeatureSpec",
    "LEVELS",
    "LEVEL_STRIDES",
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
