"""The study-name rule: one pattern for the space's `study.name`, `--study-name` and file names."""

from __future__ import annotations

import re

from .errors import ConfigError

__all__ = ["STUDY_NAME", "STUDY_NAME_RULE", "check_study_name", "is_study_name"]

_MAX_CHARS = 128
#: A study name also names its SQLite file (studies/<name>.db): no separators, no leading dot.
STUDY_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{_MAX_CHARS - 1}}}$")
#: The rule in words, for messages of the shape `<where>: <rule>, got <value>. <fix>`.
STUDY_NAME_RULE = (f"must be a name of letters, digits, '.', '_' or '-' (1-{_MAX_CHARS}, "
                   "starting with a letter or digit; it names a file)")
_FIX = "Write a name such as vcr-demo"


def is_study_name(name: object) -> bool:
    """Whether `name` is a valid study name."""
    return isinstance(name, str) and STUDY_NAME.match(name) is not None


def check_study_name(name: object, where: str) -> str:
    """Return `name` if it is a valid study name.

    Args:
        name: the candidate.
        where: the message's location, e.g. "--study-name" or "space.yaml: study.name".

    Raises:
        ConfigError: `<where>: must be a name of letters, ..., got 'x'. Write a name such as ...`.
    """
    if not is_study_name(name):
        raise ConfigError(f"{where}: {STUDY_NAME_RULE}, got {name!r}. {_FIX}")
    return name  # type: ignore[return-value]
