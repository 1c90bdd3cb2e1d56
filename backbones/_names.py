"""Name tables: the names a registry holds, readable without importing (torch) what fills it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from .errors import UnknownNameError
from .registry import Registry

__all__ = ["NameTable"]


class NameTable(Registry[str]):
    """The built-in names of a registry, plus whatever was registered at run time.

    Validating a config needs only names; the registry itself lives in a module that imports
    torch. The table lists the built-ins, and counts names added to the live registry (a user's
    own backbone or loss) once that module has been imported: a name registered there was
    registered after importing it, so nothing is missed by not importing it here.

    Args:
        kind: what the names are, used in messages ("backbone", "loss", ...).
        names: the built-in names; each registry's test checks they equal what it registers.
        live: "module:attribute" of the registry that holds the builders.
        error: what `get` raises for an unknown name (see `Registry`).
    """

    def __init__(self, kind: str, names: Iterable[str], *, live: str,
                 error: type[LookupError] = UnknownNameError) -> None:
        super().__init__(kind, error=error)
        for name in names:
            self.register(name, name)
        self._live = live

    @property
    def builtin(self) -> list[str]:
        """The names listed here, without run-time additions."""
        return sorted(self._entries)

    def live_registry(self) -> Registry | None:
        """The registry that holds the builders, when its module is already imported."""
        module, _, attr = self._live.partition(":")
        if module not in sys.modules:
            return None
        return getattr(importlib.import_module(module), attr)

    def names(self) -> list[str]:
        live = self.live_registry()
        return sorted({*self._entries, *(live.names() if live is not None else ())})

    def get(self, name: str) -> str:
        """Return `name` when it is known.

        Raises:
            UnknownNameError: not a known name; lists the options and the closest match.
        """
        if name not in self:
            raise self.error(self.unknown_message(name))
        return name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._entries:
            return True
        live = self.live_registry()
        return live is not None and name in live

    def __len__(self) -> int:
        return len(self.names())
