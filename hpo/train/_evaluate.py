"""Measuring a model: validation loss, accuracy and macro-F1, per-image results; batch-1 latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._augment import normalise

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["Confusion", "PerImage", "evaluate", "evaluate_counts", "evaluate_images",
           "measure_latency"]

#: Confusion counts, rows = true class, columns = predicted class (plain ints: JSON, checkpoints).
Confusion = tuple[tuple[int, ...], ...]


@dataclass(frozen=True, eq=False)
class PerImage:
    """What each evaluated image got, in the order of the images: right or not, its loss.

    `correct` is a bool array, `loss` a float32 array (plain cross-entropy), both on the CPU.
    """

    correct: np.ndarray
    loss: np.ndarray

    def __len__(self) -> int:
        return len(self.correct)


class _EvalOptions(TypedDict, total=False):
    """How `evaluate_images` runs: rows a batch, autocast dtype (None: float32), NHWC input."""

    batch_size: int
    amp_dtype: torch.dtype | None
    channels_last: bool


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
             device: torch.device, **options: Unpack[_EvalOptions]) -> tuple[float, float, float]:
    """Cross-entropy, accuracy and macro-F1 of `model` on uint8 `images` (see `evaluate_images`)."""
    return evaluate_images(model, images, labels, num_classes, device=device, **options)[:3]


def evaluate_counts(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    num_classes: int, *, device: torch.device,
                    **options: Unpack[_EvalOptions]) -> tuple[float, float, float, Confusion]:
    """Cross-entropy, accuracy, macro-F1 and the confusion counts (see `evaluate_images`)."""
    return evaluate_images(model, images, labels, num_classes, device=device, **options)[:4]


@torch.no_grad()
def evaluate_images(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    device: torch.device,
    batch_size: int = 256,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[float, float, float, Confusion, PerImage]:
    """Cross-entropy, accuracy, macro-F1, confusion counts and per-image results of `model`
    on uint8 `images`.

    Everything comes from one pass (one bincount of labels * C + predictions per batch; the
    per-image losses are the terms the mean loss sums, kept on the device until the end).
    The loss is plain cross-entropy whatever the training loss, so trials compare on one scale.
    Macro-F1 averages over classes present in the labels or the predictions.
    """
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    n_images = len(labels)
    losses = torch.empty(n_images, device=device, dtype=torch.float32)
    hits = torch.empty(n_images, device=device, dtype=torch.bool)
    for i in range(0, len(labels), batch_size):
        x = normalise(images[i : i + batch_size].to(device, non_blocking=True))
        y = labels[i : i + batch_size].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(x)
        per = F.cross_entropy(logits.float(), y, reduction="none")
        losses[i : i + len(y)] = per
        total_loss += per.sum().double()
        pred = logits.argmax(dim=1)
        hits[i : i + len(y)] = pred == y
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes**2).view(
            num_classes, num_classes
        )
    counts = confusion.cpu()
    conf = counts.double()
    tp = conf.diag()
    support, predicted = conf.sum(1), conf.sum(0)
    present = (support + predicted) > 0
    f1 = 2 * tp / (support + predicted).clamp_min(1)
    n = max(1, len(labels))
    return (
        float(total_loss) / n,
        float(tp.sum()) / n,
        float(f1[present].mean()) if present.any() else 0.0,
        tuple(tuple(row) for row in counts.tolist()),
        PerImage(correct=hits.cpu().numpy(), loss=losses.cpu().numpy()),
    )


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    image_size: int,
    device: torch.device,
    *,
    runs: int = 20,
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Median milliseconds of one batch-1 forward pass at `image_size` on `device`.

    Runs under the same autocast dtype as training, so CUDA latency reflects mixed precision.
    """
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(runs + 3):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 3:  # the first calls allocate and pick kernels
            times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)
