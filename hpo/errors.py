"""Re-export of the project's exception hierarchy (defined once, in backbones.errors)."""

from backbones.errors import ConfigError, UnknownNameError, VcrHpoError, WeightsNotFoundError

SearchSpaceError = ConfigError

__all__ = ["ConfigError", "SearchSpaceError", "UnknownNameError", "VcrHpoError", "WeightsNotFoundError"]
