"""A small generic name -> factory registry, and the one "did you mean" rule of both packages."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError

__all__ = ["Registry", "closest_match", "did_you_mean"]

T = TypeVar("T")


def closest_match(word: object, options: Iterable[str]) -> str | None:
    """The option a user most likely meant by `word`, or None.

    A transposition (lgo -> log) wins; otherwise the closest spelling by difflib (ratio >= 0.5).
    Non-string words match nothing.
    """
    if not isinstance(word, str):
        return None
    options = [o for o in options if isinstance(o, str)]
    for option in options:
        if option != word and sorted(option) == sorted(word):
            return option
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return close[0] if close else None


def did_you_mean(word: object, options: Iterable[str]) -> str:
    """`"Did you mean 'x'? "` for the closest option (note the trailing space), or ""."""
    close = closest_match(word, options)
    return f"Did you mean {close!r}? " if close else ""


class Registry(Generic[T]):
    """Maps names to objects (usually builders); duplicate names raise, unknown names list options.

    Args:
        kind: what the names are, used in messages ("backbone", "loss", ...).
        error: what `get` raises for an unknown name; a package that keeps its own names in a
            registry passes its own `LookupError` subclass.
    """

    def __init__(self, kind: str, *, error: type[LookupError] = UnknownNameError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register `obj` under `name`; used bare as a decorator when `obj` is omitted."""

        def add(item: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """Return the entry for `name`.

        Raises:
            UnknownNameError: (or the registry's `error`) `name` is not registered; lists the
                options and the closest match.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.error(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        """The standard message for an unknown name: options and closest match."""
        return f"unknown {self.kind} {name!r}. {did_you_mean(name, self.names())}" \
               f"Options: {', '.join(self.names())}"

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
