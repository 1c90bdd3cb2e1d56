"""The on-disk image cache: one raw uint8 file per source and layout, mapped read-only.

Every worker on a machine maps the same file, so its pages live once in the OS page cache and
count once, whatever the number of workers. A file is:

    MAGIC (8 bytes) | header length (8 bytes, little endian) | JSON header | zero padding to a
    page | images, uint8 (N, 3, S, S), C order

The header holds the shape, the labels and source order of the rows, the size of the train block
and the class names. A file whose magic, header, key or size does not match is a miss, and is
rebuilt. Writers fill a temp file and `os.replace` it into place, so a reader never sees half a
file; builds of one source are serialised by `flock` on `<base>.lock`, so N workers starting at
once decode the source once and then share the winner's file.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAGIC = b"VCRIMG1\n"
SUFFIX = ".imgs"
_ALIGN = 4096  # the images start on a page boundary


@dataclass(frozen=True)
class Entry:
    """One cache file, opened: `images` is a read-only, file-backed uint8 tensor."""

    path: Path
    images: torch.Tensor
    meta: dict


def file_name(name: str) -> str:
    return f"{name}{SUFFIX}"


def _header(meta: dict) -> tuple[bytes, int]:
    body = json.dumps(meta, separators=(",", ":")).encode()
    start = len(MAGIC) + 8 + len(body)
    offset = -(-start // _ALIGN) * _ALIGN
    return MAGIC + len(body).to_bytes(8, "little") + body + b"\0" * (offset - start), offset


def open_entry(path: Path, name: str) -> Entry | None:
    """Map `path` read-only; None when it is missing, truncated, foreign or corrupt."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 8)
            if len(head) < len(MAGIC) + 8 or head[: len(MAGIC)] != MAGIC:
                return None
            n = int.from_bytes(head[len(MAGIC) :], "little")
            if n > 1 << 30:
                return None
            meta = json.loads(f.read(n))
            size = os.fstat(f.fileno()).st_size
        shape = tuple(int(s) for s in meta["shape"])
        _, offset = _header(meta)
        if (
            meta.get("key") != name
            or len(shape) != 4
            or shape[1] != 3
            or size != offset + int(np.prod(shape))
            or len(meta["labels"]) != shape[0]
            or len(meta["order"]) != shape[0]
        ):
            return None
        array = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError, KeyError, TypeError):  # unreadable, bad JSON, bad fields
        return None
    with warnings.catch_warnings():  # read-only on purpose: a write faults instead of forking
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(array)
    return Entry(path, images, meta)


@contextlib.contextmanager
def build_lock(folder: Path, base: str) -> Iterator[None]:
    """Hold an exclusive lock on one source's cache entries (no-op where flock is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder / f"{base}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def siblings(folder: Path, base: str, name: str) -> Iterator[Entry]:
    """The valid entries of the same source under other layouts (to reorder, not re-decode)."""
    for path in sorted(folder.glob(f"{base}.*{SUFFIX}")):
        other = path.name[: -len(SUFFIX)]
        if other != name:
            entry = open_entry(path, other)
            if entry is not None:
                yield entry


def write_entry(
    folder: Path, name: str, meta: dict, fill: Callable[[np.ndarray], None]
) -> Entry | None:
    """Write `name` atomically (`fill` writes the images into a writable array), then open it.

    The caller holds `build_lock`. Stale temp files of this entry (a writer that died) are removed.
    Returns None when the folder cannot be written (the caller falls back to memory); an
    exception from `fill` removes the temp file and propagates.
    """
    final = folder / file_name(name)
    for stale in folder.glob(f".{name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    meta = {**meta, "key": name}
    head, offset = _header(meta)
    shape = tuple(meta["shape"])
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            size = offset + int(np.prod(shape))
            if hasattr(os, "posix_fallocate"):  # no space: OSError here, not SIGBUS in `fill`
                os.posix_fallocate(f.fileno(), 0, size)
            else:  # pragma: no cover - not Linux
                f.truncate(size)
        array = np.memmap(tmp, dtype=np.uint8, mode="r+", offset=offset, shape=shape)
        fill(array)
        array.flush()
        del array
        os.replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return open_entry(final, name)
