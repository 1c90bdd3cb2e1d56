"""The backbone registry: name -> builder, with the family each name belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .registry import Registry

__all__ = ["BACKBONES", "BackboneEntry", "register_backbone"]


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    family: str
    build: Callable[..., object]  # (name, **cfg) -> BaseBackbone


BACKBONES: Registry[BackboneEntry] = Registry("backbone")


def register_backbone(names: tuple[str, ...], family: str):
    """Class decorator: register `cls(name, **cfg)` under each of `names`."""

    def deco(cls):
        for name in names:
            BACKBONES.register(name, BackboneEntry(name, family, cls))
        return cls

    return deco
