"""CNN feature extractors for vehicle-colour recognition: c2..c5 maps or a pooled vector.

Names are imported on first use (PEP 562): the errors, the registries and the name tables load
without torch, so a tool that only checks names starts in a fraction of a second. The package is
a leaf: it imports nothing of the code that uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> submodule that defines it
_EXPORTS = {
    "BACKBONES": "factory",  # through the factory, which imports every built-in backbone
    "BACKBONE_NAMES": "_builders",
    "BackboneEntry": "_builders",
    "family_of": "_builders",
    "register_backbone": "_builders",
    "LEVEL_STRIDES": "base",
    "LEVELS": "base",
    "BaseBackbone": "base",
    "FeatureSpec": "base",
    "BackboneError": "errors",
    "ConfigError": "errors",
    "UnknownNameError": "errors",
    "WeightsNotFoundError": "errors",
    "BACKBONE_OPTIONS": "factory",
    "BackboneFactory": "factory",
    "create_backbone": "factory",
    "find_pretrained_weights": "factory",
    "list_backbones": "factory",
    "NameTable": "_names",
    "Registry": "registry",
    "closest_match": "registry",
    "did_you_mean": "registry",
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
    "BackboneError",
    "BackboneFactory",
    "BaseBackbone",
    "ConfigError",
    "EfficientNetBackbone",
    "FeatureSpec",
    "NameTable",
    "Registry",
    "ResNetBackbone",
    "TimmBackbone",
    "UnknownNameError",
    "WeightsNotFoundError",
    "closest_match",
    "create_backbone",
    "did_you_mean",
    "family_of",
    "find_pretrained_weights",
    "list_backbones",
    "register_backbone",
]

if TYPE_CHECKING:
    from ._builders import BACKBONE_NAMES, BackboneEntry, family_of, register_backbone
    from ._names import NameTable
    from .base import LEVEL_STRIDES, LEVELS, BaseBackbone, FeatureSpec
    from .errors import BackboneError, ConfigError, UnknownNameError, WeightsNotFoundError
    from .factory import (
        BACKBONE_OPTIONS,
        BACKBONES,
        BackboneFactory,
        create_backbone,
        find_pretrained_weights,
        list_backbones,
    )
    from .registry import Registry, closest_match, did_you_mean
    from .resnet import ResNetBackbone
    from .timm_backbone import EfficientNetBackbone, TimmBackbone



def __getattr__(name: str) -> Any:
    """A public name imports the submodule that defines it on first access (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
