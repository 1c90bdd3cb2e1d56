"""BackboneFactory: build any registered backbone from a name and a config dict."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._builders import BACKBONES, builtin_modules, import_builder
from .base import BaseBackbone
from .errors import ConfigError, WeightsNotFoundError

__all__ = [
    "BACKBONES",
    "BACKBONE_OPTIONS",
    "BackboneFactory",
    "create_backbone",
    "find_pretrained_weights",
    "list_backbones",
]

BACKBONE_OPTIONS = ("pretrained", "weights", "output", "return_nodes")

for _module in builtin_modules():  # importing them registers the built-in families
    importlib.import_module(_module)


def create_backbone(name: str, **cfg: Any) -> BaseBackbone:
    """Build the backbone registered as `name`.

    Args:
        name: a registered name (see `list_backbones()`).
        **cfg: `pretrained`, `weights`, `output`, `return_nodes` (the seed's name for output:
            True is "features", False is "pooled").

    Raises:
        UnknownNameError: unknown name (lists options and the closest match).
        ConfigError: an unknown option.
        WeightsNotFoundError: pretrained weights asked for and not on this machine.
    """
    entry = import_builder(name)
    unknown = sorted(set(cfg) - set(BACKBONE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"backbone {name}: unknown option, got {unknown}. Options: {', '.join(BACKBONE_OPTIONS)}"
        )
    return entry.build(name, **cfg)


def find_pretrained_weights(name: str, weights: str | os.PathLike | None = None) -> Path:
    """The local weight file `create_backbone(name, pretrained=True, weights=weights)` would load.

    Cheap (no model is built) and offline, so callers can check before any training starts.

    Raises:
        UnknownNameError: unknown backbone.
        WeightsNotFoundError: the file is not on this machine; the message says where to put it.
    """
    entry = import_builder(name)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights: file not found, got {str(path)!r}. Give the path of a state_dict file."
            )
        return path
    return entry.build.locate_weights(name)


def list_backbones() -> list[str]:
    """Sorted registered backbone names."""
    return BACKBONES.names()


class BackboneFactory:
    """The seed's factory API: `BackboneFactory.create("resnet50", {"pretrained": True})`."""

    @staticmethod
    def create(name: str, cfg: Mapping[str, Any] | None = None) -> BaseBackbone:
        return create_backbone(name, **dict(cfg or {}))

    @staticmethod
    def list() -> list[str]:
        return list_backbones()
