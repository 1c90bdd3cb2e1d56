"""Re-export of the project's exception hierarchy (defined in backbones.errors) plus SearchSpaceError."""

from __future__ import annotations

from backbones.errors import ConfigError, UnknownNameError, VcrHpoError, WeightsNotFoundError


class SearchSpaceError(ConfigError):
    """A search space breaks the grammar; `.errors` lists every problem, one line each."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __reduce__(self):
        return (type(self), (self.errors,))


__all__ = ["ConfigError", "SearchSpaceError", "UnknownNameError", "VcrHpoError", "WeightsNotFoundError"]
