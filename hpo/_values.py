"""Read-only, picklable values and their one-line display (search spaces, algorithm specs)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["FrozenDict", "jsonable", "show"]


class FrozenDict(dict):
    """A read-only dict that still pickles (worker processes receive specs) and JSON-dumps."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this mapping is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore
    __ior__ = _read_only  # type: ignore

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(jsonable(self), sort_keys=True))


def jsonable(value: Any) -> Any:
    """Plain JSON data for `value`; an object with a `canonical()` method gives its result."""
    canonical = getattr(value, "canonical", None)
    if callable(canonical):
        return canonical()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def show(value: Any) -> str:
    """A value as the user would write it in YAML, shortened to 80 characters."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    elif isinstance(value, (str, int, float)):
        text = repr(value)
    else:
        try:
            text = json.dumps(jsonable(value), default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
