"""The on-disk image cache: one raw uint8 file per source and layout, mapped read-only.

Every worker on a machine maps the same file, so its pages live once in the OS page cache and
count once, whatever the number of workers. A file is:

    MAGIC (8 bytes) | header length (8 bytes, little endian) | JSON header | zero padding to a
    page | images, uint8 (N, 3, S, S), C order

The header holds the shape, the labels and source order of the rows, the size of the train block
and the class names. A file whose magic, header, key or size does not match is a miss, and is
rebuilt. Writers fill a temp file `.<name>.<pid>.tmp`, sync it and `os.replace` it into place,
so a reader never sees half a file, even after a writer is killed; builds of one source are
serialised by `flock` on `<base>.lock`, so N workers starting at once decode the source once and
then share the winner's file. A temp file whose source lock nobody holds is a dead writer's, and
the next build removes it. `<digest>.decoded` (empty) records that every file of a source
listing decoded, so the preflight need not decode them again.
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


def _building(folder: Path, base: str) -> bool:
    """Whether a live process holds `base`'s build lock (False where flock is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    try:
        fd = os.open(folder / f"{base}.lock", os.O_RDWR)
    except FileNotFoundError:  # writers take the lock before they make a temp file
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def sweep_temps(folder: Path, base: str) -> None:
    """Remove the temp files of dead writers: `base`'s (the caller holds its lock) and any other
    source's whose lock nobody holds (its writer died before `os.replace`)."""
    for tmp in folder.glob(".*.tmp"):
        other = tmp.name[1:].split(".", 1)[0]
        if other == base or not _building(folder, other):
            with contextlib.suppress(OSError):
                tmp.unlink()


def mark_decoded(folder: Path | None, digest: str) -> None:
    """Record that every file of the source listing `digest` decoded (best effort)."""
    if folder is not None:
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{digest}.decoded").touch()


def decoded(folder: Path | None, digest: str) -> bool:
    return folder is not None and (folder / f"{digest}.decoded").is_file()


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

    The caller holds `build_lock`. Stale temp files (writers that died) are removed first.
    Returns None when the folder cannot be written (the caller falls back to memory); an
    exception from `fill` removes the temp file and propagates.
    """
    final = folder / file_name(name)
    sweep_temps(folder, name.split(".", 1)[0])
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
        array.flush()  # msync: the pixels are on disk before the name is
        del array
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the header and the file's size too
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
