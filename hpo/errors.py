"""hpo's exception tree: one root, bad input (config, unknown names, search spaces), both packages' roots."""

from __future__ import annotations

from backbones import BackboneError, WeightsNotFoundError
from backbones import ConfigError as BackboneConfigError
from backbones import UnknownNameError as UnknownBackboneNameError

__all__ = [
    "INPUT_ERRORS",
    "RAISED_ERRORS",
    "ConfigError",
    "SearchSpaceError",
    "UnknownNameError",
    "VcrHpoError",
    "WeightsNotFoundError",
]


class VcrHpoError(Exception):
    """Root of every error hpo raises on purpose (backbones' own root is `BackboneError`)."""


class ConfigError(VcrHpoError, ValueError):
    """A user-supplied configuration breaks a rule (message: `<where>: <rule>, got <value>. <fix>`)."""


class UnknownNameError(VcrHpoError, LookupError):
    """A name that is not in one of hpo's registries; the message lists the options and the closest match."""

    def __str__(self) -> str:  # LookupError subclasses would otherwise quote nothing; keep plain
        return str(self.args[0]) if self.args else ""


class SearchSpaceError(ConfigError):
    """A search space breaks the grammar; `.errors` lists every problem, one line each."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __reduce__(self):
        return (type(self), (self.errors,))


#: Bad input from either package: the CLI and a worker print it in one line and exit 2.
INPUT_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, UnknownNameError, BackboneConfigError, UnknownBackboneNameError)

#: Every error either package raises on purpose: one line, exit 1 unless it is an input error.
#: Two roots, because `backbones` is a leaf that knows nothing of hpo (an `except` clause
#: ignores virtual subclasses registered on an ABC, so one root cannot stand for the other).
RAISED_ERRORS: tuple[type[Exception], ...] = (VcrHpoError, BackboneError)
