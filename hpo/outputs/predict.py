"""Predicting colours with a trained model (a `vcr-hpo train` folder or an exported file): CSV out.

The images go through the trial's own preprocessing: decoded and resized to `image_size` by the
data pipeline's decoder (`hpo.data`), ImageNet-normalised as in validation, under the same
autocast dtype, so a val split scored here gets the accuracy the run measured.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError

__all__ = [
    "Prediction",
    "TrainedModel",
    "accuracy",
    "list_images",
    "load_trained",
    "predict_images",
    "write_predictions",
]

MODEL_FILES = ("model.pt", "config.yaml", "metrics.json")


@dataclass(frozen=True)
class TrainedModel:
    """A model rebuilt from a `vcr-hpo train` folder (or an exported file, `folder` then being
    that file), in eval mode on `device`."""

    model: nn.Module
    cfg: TrainConfig
    class_names: tuple[str, ...]
    device: torch.device
    folder: Path


@dataclass(frozen=True)
class Prediction:
    path: str
    predicted: str
    probability: float
    label: str | None = None

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.predicted


def load_trained(folder: Path, *, device: str = "auto") -> TrainedModel:
    """Rebuild backbone + head from `config.yaml`, load `model.pt`, read the class names.

    `folder` may also be a file `vcr-hpo export` wrote (ONNX through onnxruntime, TorchScript):
    then the model is that file, run on the CPU in fp32, with the class names and config of its
    metadata (`hpo.outputs.model_export`).

    Raises:
        ConfigError: the folder or one of its files is missing or unreadable, or the weights do
            not fit the config; an exported file without metadata or without its runtime.
    """
    import yaml

    from backbones import create_backbone

    from ..train import resolve_device
    from ..train.heads import VcrClassifier, build_head

    folder = Path(folder)
    hint = "Give the --out folder of `vcr-hpo train`"
    if folder.is_file():
        return _load_exported(folder, device)
    if not folder.is_dir():
        raise ConfigError(f"--model: must be a folder written by `vcr-hpo train`, got "
                          f"{str(folder)!r} (no such folder). {hint}")
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise ConfigError(f"--model: {folder}: must hold {', '.join(MODEL_FILES)}, got no "
                          f"{', '.join(missing)}. {hint}")
    try:
        cfg = TrainConfig.from_dict(yaml.safe_load((folder / "config.yaml").read_text()) or {},
                                    where=str(folder / "config.yaml"))
        names = json.loads((folder / "metrics.json").read_text())["info"]["class_names"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"--model: {folder}: config.yaml and metrics.json (info.class_names) "
                          f"must be readable, got {type(exc).__name__}: {exc}. {hint}") from None
    dev = resolve_device(device)
    backbone = create_backbone(cfg.backbone, pretrained=False)
    head = build_head(cfg.fusion, backbone.get_feature_channels(), len(names), cfg.dropout)
    model = VcrClassifier(backbone, head, freeze_backbone=cfg.freeze_backbone)
    try:
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a damaged file or other weights: one line
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ConfigError(f"--model: {folder / 'model.pt'}: must hold the weights of "
                          f"{cfg.backbone} + {cfg.fusion} for {len(names)} classes, got "
                          f"{type(exc).__name__}: {text}. {hint}") from None
    model = model.to(dev).eval()
    return TrainedModel(model, cfg, tuple(names), dev, folder)


def _load_exported(path: Path, device: str) -> TrainedModel:
    from .model_formats import load_exported

    if device not in ("auto", "cpu"):
        raise ConfigError(f"--device: an exported model runs on the CPU, got {device!r}. Use "
                          "--device cpu, or give the model folder to predict on a GPU")
    module, meta = load_exported(path)
    cfg = TrainConfig.from_dict(meta["config"], where=f"{path} (metadata config)")
    cfg = cfg.replace(device="cpu", amp=False, channels_last=False)  # what the file runs as
    return TrainedModel(module, cfg, tuple(meta["class_names"]), torch.device("cpu"), path)


def _is_image(p: Path) -> bool:
    from ..data._sources import is_image

    return p.is_file() and is_image(p)


def list_images(source: Path, class_names: Sequence[str]) -> list[tuple[Path, str | None]]:
    """(path, label or None) for every image of a folder or a `.jsonl` manifest, sorted.

    A folder's images directly inside are unlabelled; those in sub-folders are labelled by the
    folder name (ImageFolder), which must be one of the model's classes. A manifest line is
    `{"path": ..., "label": ...}` with `label` optional; relative paths start at its folder.

    Raises:
        ConfigError: missing source, no images, unknown labels, bad manifest lines or paths.
    """
    source = Path(source)
    if not source.exists():
        raise ConfigError(f"--images: must be an image folder or a .jsonl manifest, got "
                          f"{str(source)!r} (no such file or folder). Fix the path")
    items: list[tuple[Path, str | None]] = []
    if source.is_dir():
        items += [(p, None) for p in sorted(source.iterdir()) if _is_image(p)]
        for d in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            items += [(p, d.name) for p in sorted(d.rglob("*")) if _is_image(p)]
    elif source.suffix.lower() == ".jsonl":
        items = _manifest(source)
    else:
        raise ConfigError(f"--images: a file must be a .jsonl manifest, got {str(source)!r}. "
                          "Give an image folder or a .jsonl manifest")
    if not items:
        raise ConfigError(f"--images: must hold at least one image, got none in {str(source)!r}."
                          " Add images (.jpg, .png, ...) or class sub-folders of images")
    unknown = sorted({lab for _, lab in items if lab is not None} - set(class_names))
    if unknown:
        hint = (". Give DIR/val or DIR/train, not their parent" if {"train", "val"} & set(unknown)
                else "")
        raise ConfigError(f"--images: labels must be classes of the model "
                          f"({', '.join(class_names)}), got {', '.join(map(repr, unknown[:5]))}"
                          f"{hint or '. Rename the folders or fix the labels'}")
    return items


def _manifest(path: Path) -> list[tuple[Path, str | None]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--images: {path}: must be a readable UTF-8 file, got {exc}. "
                          "Check the path") from None
    items: list[tuple[Path, str | None]] = []
    missing: list[str] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise ConfigError(f"--images: {path}:{n}: each line must be a JSON object with a "
                              f"string 'path', got {line[:60]!r}. Write "
                              '{"path": "img.jpg", "label": "red"} (label optional)')
        p = Path(row["path"]).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            missing.append(str(p))
        label = row.get("label")
        items.append((p, None if label is None else str(label)))
    if missing:
        raise ConfigError(f"--images: {path}: every path must be an existing file, got "
                          f"{len(missing)} missing: {', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''}. Fix the paths")
    return items


def predict_images(
    trained: TrainedModel,
    items: Sequence[tuple[Path, str | None]],
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> list[Prediction]:
    """The predicted class and its softmax probability per image, in the order of `items`.

    Every image is decoded before a failure is reported, so the error names all bad files.

    Raises:
        ConfigError: images that do not decode (named, up to five).
    """
    from tqdm import tqdm

    from ..data._load import _decode_one
    from ..train import normalise
    from ..train._device import amp_dtype

    cfg, dev = trained.cfg, trained.device
    amp = amp_dtype(cfg, dev)
    channels_last = cfg.channels_last and dev.type == "cuda"
    size = cfg.image_size
    out: list[Prediction] = []
    bad: list[str] = []
    bar = tqdm(total=len(items), unit="img", desc="predict", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, torch.no_grad():
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            decoded = list(pool.map(lambda it: _decode_one(it[0], size), chunk))
            bad += [f"{p} ({r})" for (p, _), r in zip(chunk, decoded) if isinstance(r, str)]
            images = [r for r in decoded if not isinstance(r, str)]  # all of them when no bad
            bar.update(len(chunk))
            if bad:  # keep decoding to name every bad file; no forward pass wasted
                continue
            x = normalise(torch.stack(images).to(dev, non_blocking=True))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits = trained.model(x)
            prob, pred = logits.float().softmax(dim=1).max(dim=1)
            out += [Prediction(str(p), trained.class_names[c], float(q), lab)
                    for (p, lab), c, q in zip(chunk, pred.tolist(), prob.tolist())]
    bar.close()
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ConfigError(f"--images: every image must decode, got {len(bad)} unreadable: "
                          f"{'; '.join(bad[:5])}{more}. Remove or replace these files")
    return out


def accuracy(preds: Sequence[Prediction]) -> tuple[int, int]:
    """(correct, labelled) over the predictions that have a label."""
    labelled = [p for p in preds if p.label is not None]
    return sum(1 for p in labelled if p.correct), len(labelled)


def write_predictions(preds: Sequence[Prediction], path: Path) -> Path:
    """CSV `path,predicted,probability` (+ `label,correct` when any image has a label).

    Written to a temporary file and moved into place, so a failure leaves no half file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled = any(p.label is not None for p in preds)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "predicted", "probability", *(["label", "correct"] if labelled else [])])
        for p in preds:
            row = [p.path, p.predicted, f"{p.probability:.6f}"]
            if labelled:
                row += ["" if p.label is None else p.label,
                        "" if p.correct is None else str(p.correct).lower()]
            w.writerow(row)
    os.replace(tmp, path)
    return path
