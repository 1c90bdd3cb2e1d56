"""Search-space files: lookup of a bare name, reading, and the JSON Schema of the grammar."""

from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from backbones import did_you_mean

from ..errors import ConfigError
from ._parse import parse_search_space
from ._types import SearchSpace

__all__ = ["ShippedSpace", "copy_shipped_space", "load_search_space", "schema", "shipped_spaces"]

_SEARCH_DIR = "search_spaces"

@dataclass(frozen=True)
class ShippedSpace:
    """A search space shipped with the package: file name, first comment line, and its text."""

    name: str
    description: str
    resource: Traversable

    def read_text(self) -> str:
        return self.resource.read_text(encoding="utf-8")


def _shipped_dir() -> Traversable | None:
    """hpo/search_spaces/: a link to search_spaces/ in a checkout, a copy in a wheel."""
    folder = importlib.resources.files("hpo").joinpath(_SEARCH_DIR)
    return folder if folder.is_dir() else None


def shipped_spaces() -> list[ShippedSpace]:
    """The search spaces shipped with the package, sorted by name (the start-up portfolio
    beside them, `_portfolio_file.PORTFOLIO_FILE`, is data, not a space)."""
    from ._portfolio_file import PORTFOLIO_FILE

    folder = _shipped_dir()
    if folder is None:
        return []
    out = []
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        if (item.is_file() and item.name.endswith((".yaml", ".yml"))
                and item.name != PORTFOLIO_FILE):
            text = item.read_text(encoding="utf-8")
            out.append(ShippedSpace(item.name, _description(text), item))
    return out


def copy_shipped_space(name: str, dest: str | os.PathLike | None = None) -> Path:
    """Copy a shipped search space as a starting point; never overwrites.

    Args:
        name: a shipped file name (`.yaml` may be left out).
        dest: the new file, or an existing folder to copy into; default: `name` in the current
            folder.

    Returns:
        The path written.

    Raises:
        ConfigError: no such shipped space, the destination exists, or it cannot be written.
    """
    spaces = {s.name: s for s in shipped_spaces()}
    space = spaces.get(name) or spaces.get(f"{name}.yaml")
    if space is None:
        raise ConfigError(f"--copy: no shipped search space of this name, got {name!r}. "
                          f"{did_you_mean(name, spaces)}Shipped: {', '.join(spaces) or 'none'}")
    target = Path(space.name if dest is None else dest)
    if target.is_dir():
        target = target / space.name
    try:
        with open(target, "x", encoding="utf-8") as f:
            f.write(space.read_text())
    except FileExistsError:
        raise ConfigError(f"{target}: already exists, got {str(target)!r}. Choose another "
                          "destination or remove the file; nothing was overwritten") from None
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the copy, got {exc.strerror}. Check the "
                          "folder and its permissions") from None
    return target


def _description(text: str) -> str:
    """The first comment line of a YAML file that is not an editor modeline."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("#"):
            if line:
                break
            continue
        words = line.lstrip("#").strip()
        if words and not words.startswith("yaml-language-server:"):
            return words
    return ""


def _resolve_path(path: str | os.PathLike) -> tuple[Path | Traversable, str]:
    """The file to read and the name to show in messages.

    A bare name is looked up in the current folder, then ./search_spaces/, then the spaces
    shipped with the package (DESIGN section 8); any other path is read as given.
    """
    p = Path(path)
    if p.is_file():
        return p, str(path)
    looked = [str(p)]
    if len(p.parts) == 1:
        local = Path(_SEARCH_DIR) / p.name
        if local.is_file():
            return local, str(local)
        looked.append(str(local))
        folder = _shipped_dir()
        if folder is not None:
            shipped = folder.joinpath(p.name)
            if shipped.is_file():
                return shipped, str(shipped)
            looked.append(str(folder))
    names = ", ".join(s.name for s in shipped_spaces()) or "none"
    raise ConfigError(f"{path}: search space file not found, got {str(path)!r} (looked in "
                      f"{', '.join(looked)}). Give the path of a YAML file, or a shipped space: "
                      f"{names} (`vcr-hpo spaces`)")


def load_search_space(path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space file.

    Args:
        path: a file path; a bare name not in the current folder is looked up in
            ./search_spaces/, then among the spaces shipped with the package.

    Raises:
        ConfigError: the file is missing or unreadable.
        SearchSpaceError: the content breaks the grammar (every problem listed).
    """
    p, shown = _resolve_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text, got byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}. Save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the file, got {exc.strerror}. Check the path and "
                          "permissions") from None
    return parse_search_space(text, source=shown)


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the search-space grammar, shipped as hpo/schema.json."""
    return json.loads(importlib.resources.files("hpo").joinpath("schema.json").read_text("utf-8"))
