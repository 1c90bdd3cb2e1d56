"""The errors backbones raises on purpose: one root, bad options, unknown names, missing weights."""

from __future__ import annotations

__all__ = ["BackboneError", "ConfigError", "UnknownNameError", "WeightsNotFoundError"]


class BackboneError(Exception):
    """Root of every error the backbones package raises on purpose."""


class ConfigError(BackboneError, ValueError):
    """A backbone option breaks a rule (message: `<where>: <rule>, got <value>. <fix>`)."""


class UnknownNameError(BackboneError, LookupError):
    """A name that is not in a registry; the message lists the options and the closest match."""

    def __str__(self) -> str:  # LookupError subclasses would otherwise quote nothing; keep plain
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(BackboneError, FileNotFoundError):
    """Pretrained weights were asked for and are not on this machine."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
