"""The project's exception hierarchy: one root, config errors, unknown names, missing weights."""

from __future__ import annotations

__all__ = ["ConfigError", "UnknownNameError", "VcrHpoError", "WeightsNotFoundError"]


class VcrHpoError(Exception):
    """Root of every error vcr-hpo raises on purpose; only the CLI catches it."""


class ConfigError(VcrHpoError, ValueError):
    """A user-supplied configuration breaks a rule (message: `<where>: <rule>, got <value>. <fix>`)."""


class UnknownNameError(VcrHpoError, LookupError):
    """A name that is not in a registry; the message lists the options and the closest match."""

    def __str__(self) -> str:  # LookupError subclasses would otherwise quote nothing; keep plain
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(VcrHpoError, FileNotFoundError):
    """Pretrained weights were asked for and are not on this machine."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
