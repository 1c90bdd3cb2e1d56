"""The backbone registry: name -> builder, with the family each name belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ._names import NameTable
from .registry import Registry

if TYPE_CHECKING:  # base imports torch; the names here are read without it
    from .base import BaseBackbone

__all__ = ["BACKBONES", "BACKBONE_NAMES", "BUILTIN_BACKBONES", "BackboneEntry", "register_backbone"]

#: family -> the built-in names its module registers (resnet.py, timm_backbone.py read them here)
BUILTIN_BACKBONES: dict[str, tuple[str, ...]] = {
    "resnet": ("resnet18", "resnet34", "resnet50"),
    "efficientnet": tuple(f"efficientnet_b{i}" for i in range(8)),
    "timm": ("convnext_tiny", "mobilenetv3_large_100", "resnet10t"),
}


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    family: str
    build: type[BaseBackbone]  # cls(name, **cfg) builds it; cls.locate_weights(name) finds weights


BACKBONES: Registry[BackboneEntry] = Registry("backbone")

#: Every backbone name, known without importing torch (config validation reads this).
BACKBONE_NAMES = NameTable(
    "backbone",
    (name for names in BUILTIN_BACKBONES.values() for name in names),
    live=f"{__name__}:BACKBONES",
)


_B = TypeVar("_B", bound="type[BaseBackbone]")


def register_backbone(names: tuple[str, ...], family: str) -> Callable[[_B], _B]:
    """Class decorator: register `cls(name, **cfg)` under each of `names`."""

    def deco(cls: _B) -> _B:
        for name in names:
            BACKBONES.register(name, BackboneEntry(name, family, cls))
        return cls

    return deco
