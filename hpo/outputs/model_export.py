"""Exporting a trained model for deployment: the file, its parity check, latency and metadata.

`export_model` writes the file only after it has checked it: the exported model's logits on a
batch of the model's own images must match the torch model's within `PARITY_TOLERANCE` (fp32),
and its latency is measured on this machine (batch 1 and 32, one thread and all, p50 and p95).
The metadata (class names, preprocessing, parity, latency, the training config) goes inside
the file (ONNX `metadata_props`, a TorchScript extra file) and beside it as `<file>.json`.
The formats themselves live in `hpo.outputs.model_formats`; `hpo.outputs.predict` runs an
exported file.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, VcrHpoError
from .model_formats import FORMATS, INPUT_NAME, OUTPUT_NAME, ExportFormat, format_named

__all__ = [
    "FORMATS",
    "PARITY_IMAGES",
    "PARITY_TOLERANCE",
    "ExportResult",
    "ParityError",
    "default_output",
    "export_model",
    "max_abs_diff",
]

PARITY_TOLERANCE = 1e-4  # max |logit difference| in fp32 the exported model may show
PARITY_IMAGES = 32
_TRACE_BATCH = 2  # traced/exported at batch 2; parity at 32 proves the batch axis is dynamic
_LATENCY_BATCHES = (1, 32)
_LATENCY_BUDGET_S = 1.0  # per (batch, threads) setting, after warm-up: seconds, not minutes
_LATENCY_REPS = (5, 30)  # at least, at most


class ParityError(VcrHpoError):
    """The exported model's logits differ from the torch model's by more than the tolerance."""


# --------------------------------------------------------------------------- measuring


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute elementwise difference (inf when the shapes differ or a value is NaN)."""
    if a.shape != b.shape:
        return float("inf")
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float("inf") if np.isnan(d).any() else float(d.max(initial=0.0))


def _all_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _latency(fmt: ExportFormat, path: Path, image_size: int) -> dict[str, Any]:
    """p50/p95 ms per forward pass for each batch size and thread count, on the CPU."""
    runs = []
    for threads in sorted({1, _all_threads()}):
        runner = fmt.open(path, threads)
        for batch in _LATENCY_BATCHES:
            x = np.random.default_rng(0).standard_normal(
                (batch, 3, image_size, image_size)).astype(np.float32)
            for _ in range(2 if batch == 1 else 1):  # the first calls allocate, pick kernels
                runner(x)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < _LATENCY_REPS[1] and (
                    len(times) < _LATENCY_REPS[0]
                    or time.perf_counter() - start < _LATENCY_BUDGET_S):
                t = time.perf_counter()
                runner(x)
                times.append((time.perf_counter() - t) * 1000)
            p50, p95 = (float(v) for v in np.percentile(times, [50, 95]))
            runs.append({"batch": batch, "threads": threads, "p50_ms": round(p50, 3),
                         "p95_ms": round(p95, 3), "p50_ms_per_image": round(p50 / batch, 3),
                         "reps": len(times)})
    return {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads_available": _all_threads(),
        # other processes on the machine slow every run: the load says how busy it was
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "runtime": fmt.runtime,
        "input": [3, image_size, image_size],
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": runs,
    }


# --------------------------------------------------------------------------- images


def _parity_batch(cfg: Any, images: Path | None, class_names: Sequence[str]) -> tuple[
        torch.Tensor, str]:
    """Up to PARITY_IMAGES real images (uint8 NCHW at the model's size) and where they came from.

    `images` given: the first of that folder or manifest. Otherwise the model's own data: its
    validation images when the source gives a split, else images spread over the source (the
    synthetic set: its first images). Only these are decoded, never the whole source.
    """
    from ..data._load import _decode_one, make_synthetic
    from ..data._sources import source_items

    size = cfg.image_size
    if images is not None:
        from .predict import list_images

        paths = [p for p, _ in list_images(images, class_names)]
        where = str(images)
    elif cfg.data == "synthetic":
        batch, _ = make_synthetic(min(PARITY_IMAGES, cfg.synthetic_size), size, seed=0)
        return batch, f"synthetic (the first {len(batch)} images of the training set's draw)"
    else:
        try:
            items = source_items(cfg.data, "data")
        except ConfigError as exc:
            raise ConfigError(f"{exc} (the model's data, for the parity check: give other "
                              "images with --images)") from None
        val = [it for it in items if it.split == "val"]
        pool = val or items
        where = f"{cfg.data} ({'val split' if val else 'spread over the source'})"
        paths = [it.path for it in pool]
    if len(paths) > PARITY_IMAGES:  # spread over the (sorted, so class by class) list
        step = len(paths) / PARITY_IMAGES
        paths = [paths[int(i * step)] for i in range(PARITY_IMAGES)]
    decoded = [_decode_one(p, size) for p in paths]
    bad = [f"{p} ({r})" for p, r in zip(paths, decoded) if isinstance(r, str)]
    tensors = [r for r in decoded if not isinstance(r, str)]  # all of them when none is bad
    if bad:
        raise ConfigError(f"--images: the parity images must decode, got {len(bad)} unreadable: "
                          f"{'; '.join(bad[:3])}. Remove them or give others with --images")
    return torch.stack(tensors), f"{where}: {len(paths)} images"


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportResult:
    path: Path
    metadata_path: Path
    metadata: dict[str, Any]


def default_output(model_dir: Path, fmt: str) -> Path:
    """`<model dir>/model<suffix>`: model.onnx, model.torchscript.pt."""
    return Path(model_dir) / f"model{format_named(fmt).suffix}"


def export_model(
    model_dir: Path,
    fmt: str,
    out: Path | None = None,
    *,
    images: Path | None = None,
    tolerance: float = PARITY_TOLERANCE,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export the model of a `vcr-hpo train` folder, check parity, time it, write the metadata.

    Nothing is written unless every step succeeds (temporary files are removed).

    Args:
        model_dir: a folder written by `vcr-hpo train`.
        fmt: a name of `FORMATS` (onnx, torchscript).
        out: the exported file (default `default_output`); its metadata goes to `<out>.json`.
        images: a folder or manifest of images for the parity check (default: the model's own
            data, see `_parity_batch`).
        tolerance: the largest max absolute logit difference accepted (fp32).
        log: called with a line per step (progress).

    Raises:
        ConfigError: not a trained-model folder, a bad output name, a missing runtime, bad images.
        UnknownNameError: an unknown format (the message lists them).
        ParityError: the exported model answers differently from the torch model.
    """
    from ..study import package_version
    from ..train import normalise
    from ..train._augment import MEAN, STD
    from .predict import load_trained

    say = log or (lambda line: None)
    f = format_named(fmt)
    out = Path(out) if out is not None else default_output(model_dir, fmt)
    if not out.name.endswith(f.suffix):
        raise ConfigError(f"-o: must end in {f.suffix} for --format {f.name}, got {str(out)!r}. "
                          f"Name it e.g. {out.with_suffix('').name}{f.suffix}")
    if out.is_dir():
        raise ConfigError(f"-o: must be a file name, got the folder {str(out)!r}. "
                          f"Give e.g. {out / ('model' + f.suffix)}")
    f.check_available()
    trained = load_trained(Path(model_dir), device="cpu")
    model, cfg = trained.model.float().eval(), trained.cfg
    batch, source = _parity_batch(cfg, images, trained.class_names)
    x = normalise(batch).contiguous()
    with torch.inference_mode():
        reference = model(x).numpy()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    meta_path = out.with_name(out.name + ".json")
    meta_tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    try:
        say(f"exporting {cfg.backbone} + {cfg.fusion} to {f.name}")
        f.write(model, x[:_TRACE_BATCH].clone(), tmp)
        got = f.open(tmp, None)(x.numpy())
        diff = max_abs_diff(reference, got)
        agree = float((reference.argmax(1) == got.argmax(1)).mean()) if got.shape == \
            reference.shape else 0.0
        scale = float(np.abs(reference).max(initial=0.0))
        parity = {"images": source, "batch": len(x), "dtype": "float32",
                  "max_abs_diff": diff, "tolerance": tolerance, "passed": diff <= tolerance,
                  "same_predictions": agree, "max_abs_logit": scale}
        say(f"parity: max |logit difference| {diff:.3g} on {len(x)} images (tolerance "
            f"{tolerance:g})")
        if not diff <= tolerance:
            # fp32 rounds a logit of size L to ~L * 6e-8 per operation: huge logits (a diverged
            # run) can miss an absolute tolerance although the export is right
            rounding = scale * 1e-6 >= tolerance
            why = (f"; logits reach {scale:.3g}, where fp32 rounding alone is about "
                   f"{scale * 1e-6:.1g}: check the training (diverged?) or pass --tolerance"
                   if rounding else "; report this with the backbone and try the other format")
            raise ParityError(f"export {f.name}: the exported model's logits must match the "
                              f"torch model's within {tolerance:g}, got a max absolute "
                              f"difference of {diff:.3g} on {source} ({agree:.0%} same "
                              f"predictions). Nothing written{why}")
        say("measuring latency (batch 1 and 32, one thread and all)")
        latency = _latency(f, tmp, cfg.image_size)
        metadata = {
            "format": f.name,
            "file": out.name,
            "vcr_hpo": package_version(),
            "torch": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_dir": str(Path(model_dir).resolve()),
            "backbone": cfg.backbone,
            "fusion": cfg.fusion,
            "class_names": list(trained.class_names),
            "input": {"name": INPUT_NAME, "shape": ["batch", 3, cfg.image_size, cfg.image_size],
                      "dtype": "float32", "layout": "NCHW, RGB"},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", len(trained.class_names)],
                       "meaning": "logits; softmax gives class probabilities"},
            "preprocessing": {
                "image_size": cfg.image_size,
                "resize": f"to {cfg.image_size}x{cfg.image_size} (PIL bilinear, aspect ratio "
                          "not kept), RGB",
                "scale": "pixel / 255",
                "mean": list(MEAN),
                "std": list(STD),
                "formula": "(pixel / 255 - mean) / std, per channel",
            },
            "parity": parity,
            "latency": latency,
            "config": cfg.to_dict(),
        }
        text = json.dumps(metadata, indent=2) + "\n"
        f.add_metadata(tmp, json.dumps(metadata))
        meta_tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
        os.replace(meta_tmp, meta_path)
    finally:
        for p in (tmp, meta_tmp):
            p.unlink(missing_ok=True)
    return ExportResult(out, meta_path, metadata)


