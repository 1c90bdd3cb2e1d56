"""The backbone registry: name -> builder, with the family each name belongs to.

A family is one module of this package that registers its class with `register_backbone`; its
names are read from that call (no torch import) for config validation, the schema and the
family lookups, and the factory imports every such module.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ._names import NameTable
from .registry import Registry

if TYPE_CHECKING:  # base imports torch; the names here are read without it
    from .base import BaseBackbone

__all__ = ["BACKBONES", "BACKBONE_NAMES", "BackboneEntry", "builtin_modules", "family_of",
           "import_builder", "register_backbone"]


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    family: str
    build: type[BaseBackbone]  # cls(name, **cfg) builds it; cls.locate_weights(name) finds weights


BACKBONES: Registry[BackboneEntry] = Registry("backbone")


def _package_modules() -> list[str]:
    package = sys.modules[__package__]
    return [f"{__package__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


#: Every backbone name, known without importing torch (config validation reads this): the
#: `register_backbone` calls in this package's modules, and any registered at run time.
BACKBONE_NAMES = NameTable("backbone", scan=_package_modules, call="register_backbone",
                           live=f"{__name__}:BACKBONES")


def builtin_modules() -> list[str]:
    """The modules of this package that register backbones (the factory imports them)."""
    return sorted({r.module for r in BACKBONE_NAMES.registrations()})


def family_of(name: str) -> str | None:
    """The family `name` is registered under, or None for an unknown name. Imports no torch."""
    if name in BACKBONES:
        return BACKBONES.get(name).family
    for reg in BACKBONE_NAMES.registrations():
        if name in reg.names:
            family = reg.keywords.get("family")
            return family if isinstance(family, str) else None
    return None


def import_builder(name: str) -> BackboneEntry:
    """The entry of `name`, importing the module that registers it when it is not loaded yet.

    Raises:
        UnknownNameError: not a registered name (lists the options and the closest match).
    """
    if name not in BACKBONES:
        for reg in BACKBONE_NAMES.registrations():
            if name in reg.names:
                importlib.import_module(reg.module)
    return BACKBONES.get(name)


_B = TypeVar("_B", bound="type[BaseBackbone]")


def register_backbone(names: tuple[str, ...], *, family: str) -> Callable[[_B], _B]:
    """Class decorator: register `cls(name, **cfg)` under each of `names`; `cls.family` is set.

    Write `names` out (or as a module-level constant): they are read from the source without
    importing the module.
    """

    def deco(cls: _B) -> _B:
        for name in names:
            BACKBONES.register(name, BackboneEntry(name, family, cls))
        cls.family = family
        return cls

    return deco
