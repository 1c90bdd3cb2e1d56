"""Image data for trials: the synthetic vehicle-colour set, ImageFolder dirs, JSONL manifests."""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import TrainConfig

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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm")
SPLIT_SEED = 20240  # one fixed split for every trial, so trials are compared on the same images
_SYNTHETIC_VERSION = 1  # bump when the generator changes: it is part of the cache key
_MEMORY_SLOTS = 6  # decoded datasets kept in-process (one per source and image_size)

#: (name, RGB in [0, 1], share of traffic, metallic paint). Shares follow real fleet statistics:
#: a long tail from white/black/grey down to orange/yellow. Close pairs on purpose:
#: white/silver/grey and red/orange/brown.
COLOUR_CLASSES: tuple[tuple[str, tuple[float, float, float], float, bool], ...] = (
    ("white", (0.92, 0.92, 0.91), 0.23, False),
    ("black", (0.07, 0.07, 0.08), 0.19, False),
    ("grey", (0.40, 0.41, 0.43), 0.14, True),
    ("silver", (0.68, 0.69, 0.71), 0.12, True),
    ("blue", (0.12, 0.24, 0.58), 0.09, False),
    ("red", (0.70, 0.09, 0.08), 0.08, False),
    ("brown", (0.38, 0.24, 0.14), 0.05, False),
    ("green", (0.12, 0.38, 0.20), 0.04, False),
    ("orange", (0.88, 0.42, 0.08), 0.035, False),
    ("yellow", (0.90, 0.78, 0.12), 0.025, False),
)


@dataclass(frozen=True)
class DatasetSplits:
    """Decoded, resized images as uint8 tensors (N, 3, S, S) with int64 labels.

    `class_counts` counts the training split per class (for weighted sampling and long-tail losses).
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
class _Decoded:
    """A whole source decoded at one size; `split` is 0 train, 1 val, -1 unassigned."""

    images: torch.Tensor
    labels: torch.Tensor
    split: torch.Tensor
    class_names: tuple[str, ...]


_MEMORY: OrderedDict[str, _Decoded] = OrderedDict()


def clear_memory_cache() -> None:
    """Forget the datasets decoded in this process (the on-disk cache stays)."""
    _MEMORY.clear()


def cache_dir() -> Path | None:
    """The on-disk cache folder: `$VCR_HPO_CACHE`, else `~/.cache/vcr-hpo`; None when set to off."""
    env = os.environ.get("VCR_HPO_CACHE")
    if env is not None and env.strip().lower() in ("", "0", "off", "none", "false"):
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vcr-hpo"


# --------------------------------------------------------------------------- source checks


@dataclass(frozen=True)
class _Item:
    path: Path
    label: str
    split: str | None  # "train", "val" or None (split by val_fraction)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _class_dirs(root: Path, where: str) -> list[Path]:
    try:
        return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise ConfigError(
            f"{where}: folder must be readable, got {str(root)!r} ({exc.strerror}). "
            "Check the path and its permissions"
        ) from None


def _folder_items(root: Path, split: str | None, where: str) -> list[_Item]:
    items: list[_Item] = []
    empty: list[str] = []
    for d in _class_dirs(root, where):
        files = sorted(p for p in d.rglob("*") if p.is_file() and _is_image(p))
        if not files:
            empty.append(d.name)
        items += [_Item(p, d.name, split) for p in files]
    if empty:
        raise ConfigError(
            f"{where}: every class folder must hold images, got no image in "
            f"{', '.join(repr(str(root / e)) for e in empty[:5])}. Add images "
            f"({', '.join(IMAGE_EXTENSIONS)}) or remove the folder"
        )
    return items


def _imagefolder_items(root: Path, where: str) -> list[_Item]:
    train, val = root / "train", root / "val"
    try:
        has_train, has_val = train.is_dir(), val.is_dir()
    except OSError as exc:  # a folder without search permission: stat of its entries fails
        raise ConfigError(
            f"{where}: folder must be readable, got {str(root)!r} ({exc.strerror}). "
            "Check the path and its permissions"
        ) from None
    if has_train:
        items = _folder_items(train, "train" if has_val else None, where)
        if has_val:
            items += _folder_items(val, "val", where)
        return items
    return _folder_items(root, None, where)


def _manifest_items(path: Path, where: str) -> list[_Item]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{where}: manifest must be a readable UTF-8 file, got {str(path)!r} "
            f"({exc}). Check the path"
        ) from None
    items: list[_Item] = []
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
        items.append(_Item(p, str(label), split))
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


def _source_items(data: str, where: str) -> list[_Item]:
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

    Accepts "synthetic", an ImageFolder directory (`class/x.jpg`, or `train/` and `val/`), or a
    `.jsonl` manifest (`path`, `label`, optional `split`).

    Raises:
        ConfigError: missing, unreadable, empty, fewer than two classes, bad manifest lines.
    """
    if data == "synthetic":
        return
    _source_items(data, where)


# --------------------------------------------------------------------------- synthetic set


def _class_sequence(n: int, gen: torch.Generator) -> torch.Tensor:
    """Long-tailed labels: counts follow the traffic shares, every class at least twice."""
    shares = torch.tensor([c[2] for c in COLOUR_CLASSES], dtype=torch.float64)
    counts = torch.clamp(torch.floor(shares / shares.sum() * n), min=2).long()
    while counts.sum() > n:  # tiny n: take back from the largest classes
        counts[counts.argmax()] -= 1
    counts[0] += n - counts.sum()
    labels = torch.repeat_interleave(torch.arange(len(COLOUR_CLASSES)), counts)
    return labels[torch.randperm(n, generator=gen)]


def _draw(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Draw one chunk of car images, vectorised over the batch. Returns uint8 (N, 3, S, S)."""
    n = labels.numel()

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *(shape or (1, 1)), generator=gen)

    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = g.view(1, size, 1), g.view(1, 1, size)

    # Background: sky/buildings above a horizon, road below, both greyish with a random cast.
    horizon = u(0.35, 0.6)
    sky = u(0.35, 0.85, 3, 1, 1) * u(0.85, 1.0, 1, 1, 1)
    road = u(0.2, 0.55, 1, 1, 1) + u(-0.04, 0.04, 3, 1, 1)
    img = torch.where((y < horizon).unsqueeze(1), sky, road).expand(n, 3, size, size).clone()
    img = img * (0.85 + 0.3 * y).unsqueeze(1)  # vertical light falloff

    # Clutter: boxes of any colour (signs, buildings, other cars) behind the car.
    for _ in range(4):
        cx, cy, w, h = u(0, 1), u(0.05, 0.7), u(0.05, 0.3), u(0.05, 0.35)
        box = ((x - cx).abs() < w / 2) & ((y - cy).abs() < h / 2) & (u(0, 1) < 0.8)
        img = torch.where(box.unsqueeze(1), u(0.05, 0.95, 3, 1, 1), img)

    # Car geometry, in image fractions.
    length = u(0.55, 0.92)
    cx = 0.5 + u(-0.12, 0.12)
    ground = u(0.72, 0.92)
    wheel_r = length * u(0.085, 0.11)
    body_bot = ground - wheel_r * 0.9
    body_h = length * u(0.2, 0.28)
    body_top = body_bot - body_h
    body_cy = (body_top + body_bot) / 2
    body = ((x - cx).abs() / (length / 2)) ** 4 + ((y - body_cy).abs() / (body_h / 2)) ** 4 <= 1

    facing = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    cab_cx = cx + facing * length * u(-0.12, 0.05)
    cab_h = body_h * u(0.7, 1.05)
    cab_bot_w, cab_top_w = length * u(0.28, 0.36), length * u(0.16, 0.24)
    t = ((body_top - y) / cab_h).clamp(0, 1)  # 0 at the cabin's bottom, 1 at its roof
    half_w = cab_bot_w - (cab_bot_w - cab_top_w) * t
    in_cab_rows = (y >= body_top - cab_h) & (y <= body_top + 0.01)
    cabin = in_cab_rows & ((x - cab_cx).abs() <= half_w)
    window = (
        (y >= body_top - cab_h * 0.85)
        & (y <= body_top - cab_h * 0.12)
        & ((x - cab_cx).abs() <= half_w - 0.025)
        & ((x - cab_cx).abs() >= 0.012)
    )
    paint_mask = (body | cabin) & ~window

    wheel_dx = length * u(0.29, 0.33)
    wheel_cy = ground - wheel_r
    wheels = torch.zeros(n, size, size, dtype=torch.bool)
    hubs = torch.zeros_like(wheels)
    for side in (-1.0, 1.0):
        d2 = (x - cx - side * wheel_dx) ** 2 + (y - wheel_cy) ** 2
        wheels |= d2 <= wheel_r**2
        hubs |= d2 <= (wheel_r * 0.45) ** 2

    # Shadow on the ground under the car.
    shadow = ((x - cx) / (length * 0.6)) ** 2 + ((y - ground) / (wheel_r * 0.8)) ** 2 <= 1
    img = torch.where(shadow.unsqueeze(1), img * u(0.35, 0.6, 1, 1, 1), img)

    # Paint: class colour with per-car variation in shade and a small channel jitter.
    base = torch.tensor([c[1] for c in COLOUR_CLASSES])[labels].view(n, 3, 1, 1)
    metallic = torch.tensor([float(c[3]) for c in COLOUR_CLASSES])[labels].view(n, 1, 1, 1)
    paint = base * u(0.82, 1.12, 1, 1, 1) + u(-0.035, 0.035, 3, 1, 1)
    # Shading: the roof and upper body catch more light than the sills.
    rel = ((y - (body_top - cab_h)) / (body_bot - body_top + cab_h)).clamp(0, 1).unsqueeze(1)
    paint = paint * (1.12 - 0.4 * rel)
    # Specular highlight: a soft streak along the shoulder line, stronger on metallic paint.
    streak_y = body_top + body_h * u(0.1, 0.35)
    streak = torch.exp(-(((y - streak_y) / (body_h * 0.12)) ** 2)).unsqueeze(1)
    strength = u(0.0, 0.35, 1, 1, 1) + 0.25 * metallic
    paint = paint + strength * streak * (1.0 - paint)
    img = torch.where(paint_mask.unsqueeze(1), paint, img)

    glass = u(0.08, 0.25, 1, 1, 1) + torch.tensor([0.0, 0.02, 0.05]).view(1, 3, 1, 1)
    glass = glass + 0.25 * (1 - t).unsqueeze(1) * u(0, 0.6, 1, 1, 1)  # sky reflection
    img = torch.where(window.unsqueeze(1), glass, img)
    img = torch.where(wheels.unsqueeze(1), u(0.03, 0.1, 1, 1, 1), img)
    img = torch.where(hubs.unsqueeze(1), u(0.35, 0.6, 1, 1, 1), img)

    # Scene lighting: overall exposure and a mild colour temperature, then sensor noise.
    temp = u(-0.05, 0.05)
    tint = torch.stack([1 + temp, torch.ones_like(temp), 1 - temp], dim=1)
    img = img * u(0.55, 1.25, 1, 1, 1) * tint
    img = img + u(0.01, 0.06, 1, 1, 1) * torch.randn(img.shape, generator=gen)
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def make_synthetic(n: int, image_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `n` vehicle images of `image_size` px: the same images for the same arguments.

    Returns:
        images uint8 (n, 3, S, S) and labels int64 (n,) indexing `COLOUR_CLASSES`.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = _class_sequence(n, gen)
    chunk = max(16, (1 << 21) // (image_size * image_size))  # bounded temporaries at any size
    parts = [_draw(labels[i : i + chunk], image_size, gen) for i in range(0, n, chunk)]
    return torch.cat(parts), labels


# --------------------------------------------------------------------------- decoding


def _decode_one(path: Path, size: int) -> torch.Tensor | str:
    """One file -> uint8 (3, S, S), or the reason it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=2.0)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types; all mean "unreadable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    return data.view(size, size, 3).permute(2, 0, 1).contiguous()


def _decode_items(items: Sequence[_Item], size: int, data: str, workers: int) -> list[torch.Tensor]:
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL releases the GIL
        out = list(pool.map(lambda it: _decode_one(it.path, size), items))
    bad = [(it.path, r) for it, r in zip(items, out) if isinstance(r, str)]
    if bad:
        shown = "; ".join(f"{p} ({r})" for p, r in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ConfigError(
            f"data: {data}: every image must decode, got {len(bad)} unreadable: "
            f"{shown}{more}. Remove or replace these files"
        )
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- caching


def _source_key(cfg: TrainConfig, items: Sequence[_Item] | None) -> str:
    h = hashlib.sha256()
    if items is None:
        h.update(f"synthetic:v{_SYNTHETIC_VERSION}:{cfg.synthetic_size}".encode())
    else:
        for it in items:
            st = it.path.stat()
            h.update(
                f"{it.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{it.label}|{it.split}\n".encode()
            )
    h.update(f"|size={cfg.image_size}".encode())
    return h.hexdigest()[:24]


def _read_disk(key: str) -> _Decoded | None:
    folder = cache_dir()
    if folder is None or not (folder / f"{key}.pt").is_file():
        return None
    try:
        blob = torch.load(folder / f"{key}.pt", map_location="cpu", weights_only=True)
        return _Decoded(blob["images"], blob["labels"], blob["split"], tuple(blob["class_names"]))
    except Exception:  # noqa: BLE001 - a partial or stale file is only a cache miss
        return None


def _write_disk(key: str, dec: _Decoded) -> None:
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        torch.save(
            {
                "images": dec.images,
                "labels": dec.labels,
                "split": dec.split,
                "class_names": list(dec.class_names),
            },
            tmp,
        )
        os.replace(tmp, folder / f"{key}.pt")  # atomic: concurrent workers never see half a file
    except OSError:
        pass  # a read-only home only costs the next process a re-decode


def _decode_source(cfg: TrainConfig) -> _Decoded:
    items = None if cfg.data == "synthetic" else _source_items(cfg.data, "data")
    key = _source_key(cfg, items)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    dec = _read_disk(key)
    if dec is None:
        if items is None:
            images, labels = make_synthetic(cfg.synthetic_size, cfg.image_size, seed=0)
            names = tuple(c[0] for c in COLOUR_CLASSES)
            split = torch.full((len(labels),), -1, dtype=torch.int8)
        else:
            names = tuple(sorted({it.label for it in items}))
            index = {name: i for i, name in enumerate(names)}
            images = torch.stack(_decode_items(items, cfg.image_size, cfg.data, cfg.num_workers))
            labels = torch.tensor([index[it.label] for it in items], dtype=torch.int64)
            split = torch.tensor(
                [{"train": 0, "val": 1, None: -1}[it.split] for it in items], dtype=torch.int8
            )
        dec = _Decoded(images, labels, split, names)
        _write_disk(key, dec)
    _MEMORY[key] = dec
    while len(_MEMORY) > _MEMORY_SLOTS:
        _MEMORY.popitem(last=False)
    return dec


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


def load_dataset(cfg: TrainConfig) -> DatasetSplits:
    """The train and val images of `cfg.data` at `cfg.image_size`, decoded once and cached.

    Decoded tensors are kept in-process and on disk (`cache_dir()`), keyed by a hash of the file
    list, sizes, mtimes, labels and image size. The val split is fixed (not seeded per trial).

    Raises:
        ConfigError: a bad source (see `check_data_source`) or unreadable images (listed).
    """
    dec = _decode_source(cfg)
    if (dec.split >= 0).all():
        is_val = dec.split == 1
    else:
        is_val = _stratified_val(dec.labels, cfg.val_fraction)
    train_idx = (~is_val).nonzero().flatten()
    val_idx = is_val.nonzero().flatten()
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(train_idx):
        gen = torch.Generator().manual_seed(SPLIT_SEED + 1)
        keep = torch.randperm(len(train_idx), generator=gen)[: cfg.max_train_samples]
        train_idx = train_idx[keep.sort().values]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(
            f"data: {cfg.data}: needs images in both splits, got {len(train_idx)} "
            f"train and {len(val_idx)} val. Add images or change val_fraction"
        )
    train_labels = dec.labels[train_idx]
    counts = torch.bincount(train_labels, minlength=len(dec.class_names))
    return DatasetSplits(
        train_images=dec.images[train_idx],
        train_labels=train_labels,
        val_images=dec.images[val_idx],
        val_labels=dec.labels[val_idx],
        class_names=dec.class_names,
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

    Returns the number of images checked (0 for synthetic data).

    Raises:
        ConfigError: the source check fails, or one line naming the files that do not decode.
    """
    if data == "synthetic":
        return 0
    items = _source_items(data, where)
    _decode_items(items, 8, data, workers)
    return len(items)
