"""A data source's images, listed and checked with none decoded: ImageFolder dirs, JSONL manifests.

`hpo.data` decodes what `source_items` lists; `check_data_source` is the cheap preflight.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ._synthetic import is_synthetic, parse_synthetic

__all__ = [
    "IMAGE_EXTENSIONS", "Item", "check_data_source", "forget_listings", "is_image", "source_items",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm")


@dataclass(frozen=True)
class Item:
    """One image of a source: its file, its class and the split the source gives it."""

    path: Path
    label: str
    split: str | None  # "train", "val" or None (split by val_fraction)


def is_image(p: Path) -> bool:
    """By the extension; hidden files (macOS `._x.jpg` forks) are not images."""
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _class_dirs(root: Path, where: str) -> list[Path]:
    try:
        return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise ConfigError(
            f"{where}: folder must be readable, got {str(root)!r} ({exc.strerror}). "
            "Check the path and its permissions"
        ) from None


def _image_files(folder: Path, read: list[Path]) -> list[Path]:
    """The image files under `folder`, recursively, sorted: what `sorted(folder.rglob("*"))`
    filtered by `is_file` and `is_image` gives (symlinked folders not entered, unreadable ones
    skipped), from directory entries instead of a stat per file. Appends each folder read to
    `read`."""
    found: list[Path] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as entries:
                listed = list(entries)
        except PermissionError:
            continue
        read.append(d)
        for e in listed:
            try:
                if e.is_dir() and not e.is_symlink():
                    stack.append(d / e.name)
                elif e.is_file() and is_image(Path(e.name)):
                    found.append(d / e.name)
            except OSError:
                continue
    return sorted(found)


def _folder_items(root: Path, split: str | None, where: str, read: list[Path]) -> list[Item]:
    items: list[Item] = []
    empty: list[str] = []
    read.append(root)
    for d in _class_dirs(root, where):
        files = _image_files(d, read)
        if not files:
            empty.append(d.name)
        items += [Item(p, d.name, split) for p in files]
    if empty:
        raise ConfigError(
            f"{where}: every class folder must hold images, got no image in "
            f"{', '.join(repr(str(root / e)) for e in empty[:5])}. Add images "
            f"({', '.join(IMAGE_EXTENSIONS)}) or remove the folder"
        )
    return items


# A listing is reused while no folder it read has changed. A folder's mtime changes when an entry
# is added, removed or renamed, but only in steps of the file system's clock tick: a listing is
# kept only when every folder it read last changed this long before the listing began.
_SETTLED_NS = 2_000_000_000
_LISTINGS: OrderedDict[str, tuple[tuple[tuple[str, int, int, int], ...], list[Item]]] = (
    OrderedDict()
)
_LISTING_SLOTS = 4


def _stamps(folders: list[Path]) -> tuple[tuple[str, int, int, int], ...] | None:
    """(path, mtime_ns, ctime_ns, inode) of each folder; None when one is gone."""
    out = []
    for d in folders:
        try:
            st = os.stat(d)
        except OSError:
            return None
        out.append((str(d), st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(out)


def _imagefolder_items(root: Path, where: str) -> list[Item]:
    """`_list_imagefolder`, reused from this process's last listing of `root` when every folder
    it read is unchanged (the preflight's listing serves the trial's load)."""
    key = os.path.abspath(root)
    kept = _LISTINGS.get(key)
    if kept is not None and _stamps([Path(f[0]) for f in kept[0]]) == kept[0]:
        _LISTINGS.move_to_end(key)
        return list(kept[1])
    started = time.time_ns()
    read: list[Path] = []
    items = _list_imagefolder(root, where, read)
    stamps = _stamps(read)
    if stamps is not None and all(s[1] < started - _SETTLED_NS for s in stamps):
        _LISTINGS[key] = (stamps, items)
        while len(_LISTINGS) > _LISTING_SLOTS:
            _LISTINGS.popitem(last=False)
    else:
        _LISTINGS.pop(key, None)
    return list(items)


def forget_listings() -> None:
    """Forget the folder listings kept in this process."""
    _LISTINGS.clear()


def _list_imagefolder(root: Path, where: str, read: list[Path]) -> list[Item]:
    """The items of an ImageFolder directory; every folder read is appended to `read`."""
    train, val = root / "train", root / "val"
    try:
        has_train, has_val = train.is_dir(), val.is_dir()
    except OSError as exc:  # a folder without search permission: stat of its entries fails
        raise ConfigError(
            f"{where}: folder must be readable, got {str(root)!r} ({exc.strerror}). "
            "Check the path and its permissions"
        ) from None
    if has_train:
        read.append(root)
        items = _folder_items(train, "train" if has_val else None, where, read)
        if has_val:
            items += _folder_items(val, "val", where, read)
        return items
    return _folder_items(root, None, where, read)


def _manifest_items(path: Path, where: str) -> list[Item]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{where}: manifest must be a readable UTF-8 file, got {str(path)!r} "
            f"({exc}). Check the path"
        ) from None
    items: list[Item] = []
    missing: list[str] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        loc = f"{where}: {path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{loc}: each line must be one JSON object, got {line[:60]!r} "
                f'({exc.msg}). Write {{"path": ..., "label": ...}}'
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str) or "label" not in row:
            raise ConfigError(
                f"{loc}: each line needs a string 'path' and a 'label', got "
                f'{line[:60]!r}. Write {{"path": "img.jpg", "label": "red"}}'
            )
        label = row["label"]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise ConfigError(
                f"{loc}: label must be a string or an integer, got {label!r}. Use the class name"
            )
        split = row.get("split")
        if split is not None:
            split = {"train": "train", "val": "val", "valid": "val", "validation": "val"}.get(split)
            if split is None:
                raise ConfigError(
                    f"{loc}: split must be train or val, got {row['split']!r}. "
                    "Use train or val, or leave it out"
                )
        p = Path(row["path"]).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            missing.append(str(p))
        items.append(Item(p, str(label), split))
    if missing:
        raise ConfigError(
            f"{where}: {path}: every path must be an existing file, got {len(missing)} "
            f"missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. "
            "Fix the paths (relative paths start at the manifest's folder)"
        )
    if items and len({i.split is None for i in items}) > 1:
        raise ConfigError(
            f"{where}: {path}: split must be given on every line or on none, got "
            "a mix. Add split to every line, or remove it to split by val_fraction"
        )
    return items


def source_items(data: str, where: str) -> list[Item]:
    """Resolve a data source to its items, without decoding anything."""
    path = Path(data).expanduser()
    if not path.exists():
        raise ConfigError(
            f"{where}: must be synthetic, an ImageFolder directory or a .jsonl "
            f"manifest, got {data!r} (no such file or folder). Fix the path"
        )
    if path.is_dir():
        items = _imagefolder_items(path, where)
    elif path.suffix.lower() == ".jsonl":
        items = _manifest_items(path, where)
    else:
        raise ConfigError(
            f"{where}: a data file must be a .jsonl manifest, got {data!r}. "
            "Give an ImageFolder directory or a .jsonl manifest"
        )
    classes = {i.label for i in items}
    if len(classes) < 2:
        raise ConfigError(
            f"{where}: needs at least 2 classes with images, got "
            f"{len(classes)} ({', '.join(sorted(classes)) or 'none'}) in {data!r}. "
            "Use class/xxx.jpg folders, train/ + val/, or a manifest with labels"
        )
    return items


def check_data_source(data: str, *, where: str = "data") -> None:
    """Cheap pre-flight of a data source: no image is decoded.

    Accepts "synthetic" (with knobs: `synthetic:colour=0.5,classes=6`), an ImageFolder directory (`class/x.jpg`, or `train/` and `val/`), or a
    `.jsonl` manifest (`path`, `label`, optional `split`).

    Raises:
        ConfigError: missing, unreadable, empty, fewer than two classes, bad manifest lines.
    """
    if is_synthetic(data):
        parse_synthetic(data, where=where)
        return
    source_items(data, where)
