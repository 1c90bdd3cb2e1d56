"""Image data for trials: the synthetic vehicle-colour set, ImageFolder dirs, JSONL manifests.

Decoded images live once per machine: in a read-only, memory-mapped cache file (`_data_cache`)
laid out train block then val block, so the splits a trial gets are views of it, not copies.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConfigError
from . import _cache as _data_cache
from ._sources import IMAGE_EXTENSIONS, Item, check_data_source, forget_listings, source_items
from ._synthetic import (
    COLOUR_CLASSES,
    _class_sequence,
    is_synthetic,
    make_synthetic,
    parse_synthetic,
)

if TYPE_CHECKING:
    from ..config import TrainConfig

__all__ = [
    "COLOUR_CLASSES",
    "IMAGE_EXTENSIONS",
    "DatasetSplits",
    "cache_dir",
    "check_data_source",
    "clear_memory_cache",
    "describe",
    "load_dataset",
    "make_synthetic",
]

SPLIT_SEED = 20240  # one fixed split for every trial, so trials are compared on the same images
_SYNTHETIC_VERSION = 1  # bump when the generator changes: it is part of the cache key
_MEMORY_SLOTS = 6  # datasets kept in-process (one per source, image_size and split layout)
_CHUNK_BYTES = 64 << 20  # rows copied at a time when a cache file is filled or reordered


@dataclass(frozen=True)
class DatasetSplits:
    """Decoded, resized images as uint8 tensors (N, 3, S, S) with int64 labels.

    `class_counts` counts the training split per class (for weighted sampling and long-tail losses).
    With the disk cache on, the images are read-only views of one memory-mapped file that every
    process on the machine shares: an in-place write faults, so `.clone()` before writing.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    source: str
    image_size: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class _Laid:
    """A whole source at one size in split layout: rows [0, n_train) train, the rest val."""

    images: torch.Tensor
    labels: torch.Tensor
    n_train: int
    class_names: tuple[str, ...]


_MEMORY: OrderedDict[str, _Laid] = OrderedDict()


def clear_memory_cache() -> None:
    """Forget the datasets decoded and the folders listed in this process (the on-disk cache
    stays)."""
    _MEMORY.clear()
    forget_listings()


def cache_dir() -> Path | None:
    """The on-disk cache folder: `$VCR_HPO_CACHE`, else `~/.cache/vcr-hpo`; None when set to off."""
    env = os.environ.get("VCR_HPO_CACHE")
    if env is not None and env.strip().lower() in ("", "0", "off", "none", "false"):
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vcr-hpo"


# --------------------------------------------------------------------------- decoding


def _decode_one(path: Path, size: int) -> torch.Tensor | str:
    """One file -> uint8 (3, S, S), or the reason it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR,
                                          reducing_gap=2.0)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types; all mean "unreadable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    return data.view(size, size, 3).permute(2, 0, 1).contiguous()


def _decode_items(
    items: Sequence[Item], size: int, data: str, workers: int, out: torch.Tensor
) -> None:
    """Decode `items` into the rows of `out` (uint8 (N, 3, S, S)), one image at a time."""

    def one(i: int) -> str | None:
        r = _decode_one(items[i].path, size)
        if isinstance(r, str):
            return r
        out[i].copy_(r)
        return None

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL releases the GIL
        res = list(pool.map(one, range(len(items))))
    bad = [(it.path, r) for it, r in zip(items, res) if r is not None]
    if bad:
        shown = "; ".join(f"{p} ({r})" for p, r in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ConfigError(
            f"data: {data}: every image must decode, got {len(bad)} unreadable: "
            f"{shown}{more}. Remove or replace these files"
        )


# --------------------------------------------------------------------------- caching


def _listing_digest(items: Sequence[Item]) -> str:
    """A hash of a source listing: each file's path, size, mtime, ctime, inode, label and split.

    ctime changes on every write and rename and cannot be set back, so a file replaced by one
    of the same size and mtime (`cp -p`, `rsync -a`, `tar x`) still changes the digest. Folders
    are resolved once each (a file's own symlink is followed by its stat, not its path).
    """
    h = hashlib.sha256()
    folders: dict[Path, Path] = {}
    for it in items:
        st = it.path.stat()
        parent = folders.get(it.path.parent)
        if parent is None:
            parent = folders[it.path.parent] = it.path.parent.resolve()
        h.update(
            f"{parent / it.path.name}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|"
            f"{st.st_ino}|{it.label}|{it.split}\n".encode()
        )
    return h.hexdigest()[:24]


def _source_key(cfg: TrainConfig, digest: str | None) -> str:
    """The cache key of a source (its listing digest; None: synthetic) at `cfg.image_size`."""
    if digest is None:
        src = f"synthetic:v{_SYNTHETIC_VERSION}:{cfg.synthetic_size}"
        spec = str(parse_synthetic(cfg.data))  # knobs only when not the defaults: keys stay
        if spec != "synthetic":
            src += f"|{spec}"
    else:
        src = digest
    return hashlib.sha256(f"{src}|size={cfg.image_size}".encode()).hexdigest()[:24]


def _labels_of(
    cfg: TrainConfig, items: Sequence[Item] | None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Labels (int64) and given split (int8: 0 train, 1 val, -1 none) in source order; cheap."""
    if items is None:  # the labels make_synthetic(n, size, seed=0) draws first
        spec = parse_synthetic(cfg.data)
        labels = _class_sequence(cfg.synthetic_size, torch.Generator().manual_seed(0), spec.classes)
        split = torch.full((len(labels),), -1, dtype=torch.int8)
        return labels, split, spec.class_names
    names = tuple(sorted({it.label for it in items}))
    index = {name: i for i, name in enumerate(names)}
    labels = torch.tensor([index[it.label] for it in items], dtype=torch.int64)
    split = torch.tensor(
        [{"train": 0, "val": 1, None: -1}[it.split] for it in items], dtype=torch.int8
    )
    return labels, split, names


def _layout(
    cfg: TrainConfig, labels: torch.Tensor, split: torch.Tensor
) -> tuple[torch.Tensor, int, str]:
    """The source row of each cached row (train block, then val block), the train size, a tag.

    The train block is in one fixed shuffled order, so `max_train_samples` keeps a prefix of it:
    the same images a sorted random pick kept, as a view instead of a copy.
    """
    if (split >= 0).all():
        is_val, tag = split == 1, "given"
    else:
        is_val, tag = _stratified_val(labels, cfg.val_fraction), f"v{cfg.val_fraction!r}"
    train_idx = (~is_val).nonzero().flatten()
    val_idx = is_val.nonzero().flatten()
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(
            f"data: {cfg.data}: needs images in both splits, got {len(train_idx)} "
            f"train and {len(val_idx)} val. Add images or change val_fraction"
        )
    gen = torch.Generator().manual_seed(SPLIT_SEED + 1)
    train_idx = train_idx[torch.randperm(len(train_idx), generator=gen)]
    return torch.cat([train_idx, val_idx]), len(train_idx), tag


def _copy_rows(out: torch.Tensor, src: torch.Tensor, rows: torch.Tensor) -> None:
    """out[i] = src[rows[i]], a bounded chunk at a time."""
    step = max(1, _CHUNK_BYTES // max(1, out[0].numel()))
    for i in range(0, len(rows), step):
        out[i : i + step] = src[rows[i : i + step]]


def _fill(
    dst: np.ndarray,
    cfg: TrainConfig,
    items: Sequence[Item] | None,
    order: torch.Tensor,
    folder: Path | None,
    base: str,
    name: str,
) -> None:
    """Write the images of `order` into `dst`: reordered from a cached sibling, else decoded."""
    out = torch.from_numpy(dst)
    for sib in _data_cache.siblings(folder, base, name) if folder is not None else ():
        if tuple(sib.meta["shape"]) == tuple(dst.shape):  # same source, other val_fraction
            pos = torch.empty_like(order)
            pos[torch.tensor(sib.meta["order"])] = torch.arange(len(order))
            _copy_rows(out, sib.images, pos[order])
            return
    if items is None:
        images, _ = make_synthetic(cfg.synthetic_size, cfg.image_size, seed=0, spec=cfg.data)
        _copy_rows(out, images, order)
    else:
        chosen = [items[i] for i in order.tolist()]
        _decode_items(chosen, cfg.image_size, cfg.data, cfg.num_workers, out)


def _images(
    cfg: TrainConfig,
    items: Sequence[Item] | None,
    base: str,
    name: str,
    meta: dict,
) -> torch.Tensor:
    """The cached images of `name`: mapped from disk, built under a lock on a miss.

    Falls back to a private in-memory tensor when the cache is off or its folder is unwritable.
    """
    order = torch.tensor(meta["order"])
    folder = cache_dir()

    def fill(dst: np.ndarray) -> None:
        _fill(dst, cfg, items, order, folder, base, name)

    def valid(e: _data_cache.Entry | None) -> bool:
        return e is not None and all(e.meta.get(k) == v for k, v in meta.items())

    if folder is not None:
        path = folder / _data_cache.file_name(name)
        entry = _data_cache.open_entry(path, name)
        if not valid(entry):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with _data_cache.build_lock(folder, base):
                    entry = _data_cache.open_entry(path, name)  # built by another worker?
                    if not valid(entry):
                        entry = _data_cache.write_entry(folder, name, meta, fill)
            except OSError:  # a read-only home only costs a private copy
                entry = None
        if entry is not None and valid(entry):
            return entry.images
    out = torch.empty(tuple(meta["shape"]), dtype=torch.uint8)
    fill(out.numpy())
    return out


def _laid_out(cfg: TrainConfig) -> _Laid:
    items = None if is_synthetic(cfg.data) else source_items(cfg.data, "data")
    labels, split, names = _labels_of(cfg, items)
    order, n_train, tag = _layout(cfg, labels, split)  # bad splits fail before any decoding
    digest = None if items is None else _listing_digest(items)
    base = _source_key(cfg, digest)
    name = f"{base}.{tag}"
    if name in _MEMORY:
        _MEMORY.move_to_end(name)
        return _MEMORY[name]
    laid_labels = labels[order]
    meta = {
        "shape": [len(order), 3, cfg.image_size, cfg.image_size],
        "labels": laid_labels.tolist(),
        "order": order.tolist(),
        "n_train": n_train,
        "class_names": list(names),
    }
    laid = _Laid(_images(cfg, items, base, name, meta), laid_labels, n_train, names)
    if digest is not None:  # decoded now, or cached under a key made of this digest
        _data_cache.mark_decoded(cache_dir(), digest)
    _MEMORY[name] = laid
    while len(_MEMORY) > _MEMORY_SLOTS:
        _MEMORY.popitem(last=False)
    return laid


# --------------------------------------------------------------------------- splitting


def _stratified_val(labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean val mask: `fraction` of each class (at least one when the class has two)."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = min(max(round(fraction * len(idx)), 1 if len(idx) >= 2 else 0), len(idx) - 1)
        is_val[idx[:k]] = True
    return is_val


def load_dataset(cfg: TrainConfig, *, all_data: bool = False) -> DatasetSplits:
    """The train and val images of `cfg.data` at `cfg.image_size`, decoded once and cached.

    With `all_data` every image of the source is in the training split (train and val
    together, `max_train_samples` not applied) and the val split is empty: the last training
    after model selection, which claims no held-out score.

    Images are decoded once per machine into a cache file (`cache_dir()`) keyed by a hash of the
    file list, sizes, mtimes, labels and image size (plus `val_fraction` when the source gives no
    split), mapped read-only and shared by every process; the splits are views of it. The val
    split is fixed (not seeded per trial).

    Raises:
        ConfigError: a bad source (see `check_data_source`) or unreadable images (listed).
    """
    laid = _laid_out(cfg)
    n = laid.n_train
    m = n if cfg.max_train_samples is None else min(n, cfg.max_train_samples)
    if all_data:  # the layout is the train block then the val block: all of it is one view
        n = m = len(laid.labels)
    train_labels = laid.labels[:m]
    counts = torch.bincount(train_labels, minlength=len(laid.class_names))
    return DatasetSplits(
        train_images=laid.images[:m],
        train_labels=train_labels,
        val_images=laid.images[n:],
        val_labels=laid.labels[n:],
        class_names=laid.class_names,
        class_counts=tuple(int(c) for c in counts),
        source=cfg.data,
        image_size=cfg.image_size,
    )


def describe(splits: DatasetSplits) -> str:
    """One line: sizes and the class balance of the training split."""
    total = max(1, sum(splits.class_counts))
    tail = ", ".join(
        f"{n} {c / total:.0%}" for n, c in zip(splits.class_names, splits.class_counts)
    )
    return (
        f"{splits.source} @ {splits.image_size}px: {len(splits.train_labels)} train, "
        f"{len(splits.val_labels)} val; {tail}"
    )


# --------------------------------------------------------------------------- preflight decode


def check_images_decode(data: str, *, where: str = "data", workers: int = 0) -> int:
    """Open and decode every image of a source once (at 8 px), before any trial trains.

    Skipped when this exact listing (paths, sizes, mtimes, ctimes, labels) already decoded on
    this machine: checked here before, or built into the disk cache. Returns the number of
    images checked (0 for synthetic data).

    Raises:
        ConfigError: the source check fails, or one line naming the files that do not decode.
    """
    if is_synthetic(data):
        parse_synthetic(data, where=where)
        return 0
    items = source_items(data, where)
    digest = _listing_digest(items)
    if _data_cache.decoded(cache_dir(), digest):
        return len(items)
    scratch = torch.empty((len(items), 3, 8, 8), dtype=torch.uint8)
    _decode_items(items, 8, data, workers, scratch)
    _data_cache.mark_decoded(cache_dir(), digest)
    return len(items)
