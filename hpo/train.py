"""The training loop: TrainConfig -> model trained on cached uint8 tensors -> per-epoch metrics."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backbones import create_backbone

from .config import TrainConfig
from .data import DatasetSplits, load_dataset
from .errors import ConfigError, VcrHpoError
from .heads import VcrClassifier, build_head
from .losses import build_loss
from .optim import build_optimizer, build_scheduler

__all__ = [
    "EpochMetrics",
    "NonFiniteLossError",
    "RunInfo",
    "TrainResult",
    "augment",
    "evaluate",
    "measure_latency",
    "normalise",
    "resolve_device",
    "save_run",
    "train_model",
]

Monitor = Literal["val_acc", "val_macro_f1", "val_loss"]
_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: pretrained backbones expect them
_STD = (0.229, 0.224, 0.225)
_DEVICE_DATA_LIMIT = 2 << 30  # keep a dataset on the GPU when it is smaller than this (bytes)
_CUDA_CHECK_EVERY = 8  # steps between loss checks on CUDA (each check waits for the GPU)


class NonFiniteLossError(VcrHpoError):
    """The training loss became NaN or infinite (learning rate too high, bad combination)."""


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics after one epoch. `epoch` is 0-based: the step reported to a pruner.

    `seconds` covers training and validation; `images_per_s` training only; `lr` is the rate of
    the epoch's last step.
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    val_macro_f1: float
    seconds: float
    images_per_s: float
    lr: float


@dataclass(frozen=True)
class RunInfo:
    """What is known once the model is built, before the first step."""

    backbone: str
    feature_channels: dict[str, int]
    feature_strides: dict[str, int]
    num_params: int
    params_m: float
    device: str
    device_name: str
    amp: str | None
    channels_last: bool
    class_names: tuple[str, ...]
    num_train: int
    num_val: int


@dataclass
class TrainResult:
    """A finished run. `model` holds the final epoch's weights; `best` is the best epoch."""

    model: nn.Module
    info: RunInfo
    history: list[EpochMetrics]
    best_epoch: int
    best: EpochMetrics
    latency_ms: float | None = None
    monitor: str = "val_acc"

    @property
    def num_params(self) -> int:
        return self.info.num_params

    @property
    def params_m(self) -> float:
        return self.info.params_m

    @property
    def feature_channels(self) -> dict[str, int]:
        return self.info.feature_channels

    @property
    def feature_strides(self) -> dict[str, int]:
        return self.info.feature_strides

    @property
    def device(self) -> str:
        return self.info.device

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names


def resolve_device(spec: str) -> torch.device:
    """`auto` -> cuda when present, else mps, else cpu; `cuda[:N]` must exist.

    Raises:
        ConfigError: a CUDA (or MPS) device that this machine does not have.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise ConfigError(
                f"device: must be a CUDA device present here, got {spec!r} "
                f"({count} CUDA device(s) visible). Use device: auto or cpu"
            )
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError(
            f"device: must be available, got {spec!r} (no MPS here). Use device: auto or cpu"
        )
    return dev


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float images -> ImageNet-normalised float."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.tensor(_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random flip, translation (up to 1/8 of the side) and brightness/contrast, per image.

    Colour is the label, so nothing here changes hue: brightness scales all channels alike and
    contrast blends toward the image's own grey level.

    Args:
        images: uint8 (N, 3, S, S) on any device.
        gen: a generator on the images' device.

    Returns:
        float images in [0, 1].
    """
    n, _, h, w = images.shape
    dev = images.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=dev)

    # Flip and shift in one gather on uint8: clamped indices act as replicate padding.
    pad = max(1, h // 8)
    oy = (rand(n) * (2 * pad + 1)).long() - pad
    ox = (rand(n) * (2 * pad + 1)).long() - pad
    rows = (oy[:, None] + torch.arange(h, device=dev)).clamp(0, h - 1)
    cols = (ox[:, None] + torch.arange(w, device=dev)).clamp(0, w - 1)
    flip = rand(n) < 0.5
    cols = torch.where(flip[:, None], w - 1 - cols, cols)
    x = images[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(3, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    x = x.float() / 255.0
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2)).view(n, 1, 1, 1)
    contrast = (0.9 + 0.2 * rand(n)).view(n, 1, 1, 1)
    brightness = (0.9 + 0.2 * rand(n)).view(n, 1, 1, 1)
    return (((x - grey) * contrast + grey) * brightness).clamp(0, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    device: torch.device,
    batch_size: int = 256,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[float, float, float]:
    """Cross-entropy, accuracy and macro-F1 of `model` on uint8 `images`.

    The loss is plain cross-entropy whatever the training loss, so trials compare on one scale.
    Macro-F1 averages over classes present in the labels or the predictions.
    """
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for i in range(0, len(labels), batch_size):
        x = normalise(images[i : i + batch_size].to(device, non_blocking=True))
        y = labels[i : i + batch_size].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(x)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum").double()
        pred = logits.argmax(dim=1)
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes**2).view(
            num_classes, num_classes
        )
    conf = confusion.cpu().double()
    tp = conf.diag()
    support, predicted = conf.sum(1), conf.sum(0)
    present = (support + predicted) > 0
    f1 = 2 * tp / (support + predicted).clamp_min(1)
    n = max(1, len(labels))
    return (
        float(total_loss) / n,
        float(tp.sum()) / n,
        float(f1[present].mean()) if present.any() else 0.0,
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


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision only on CUDA: bf16 where supported (no loss scaling needed), else fp16."""
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _epoch_order(
    n: int, count: int, weights: torch.Tensor | None, gen: torch.Generator
) -> torch.Tensor:
    """Indices for one epoch: a permutation, or `count` weighted draws with replacement."""
    if weights is not None:
        return torch.multinomial(weights, count, replacement=True, generator=gen)
    return torch.randperm(n, generator=gen, device=gen.device)


def _is_better(a: EpochMetrics, b: EpochMetrics, monitor: str) -> bool:
    if monitor == "val_loss":
        return a.val_loss < b.val_loss
    return getattr(a, monitor) > getattr(b, monitor)


def train_model(
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_start: Callable[[RunInfo], None] | None = None,
    monitor: Monitor = "val_acc",
    measure_latency_ms: bool = False,
    data: DatasetSplits | None = None,
) -> TrainResult:
    """Train `cfg.backbone` + `cfg.fusion` head for `cfg.epochs` epochs on `cfg.data`.

    Args:
        on_epoch: called after every epoch; an exception it raises stops training and propagates
            (the objective raises optuna.TrialPruned from it).
        on_start: called once the model is built, before the first step.
        monitor: the metric that picks `best_epoch` (val_loss is minimised, the others maximised).
        measure_latency_ms: also time a batch-1 forward pass after training.
        data: already loaded splits (default: `load_dataset(cfg)`, cached).

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the message names epoch and step.
        ConfigError: bad data, device or weights.
    """
    device = resolve_device(cfg.device)
    _seed_everything(cfg.seed)
    data = data if data is not None else load_dataset(cfg)
    amp_dtype = _amp_dtype(cfg, device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels once

    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)
    head = build_head(cfg.fusion, backbone.get_feature_channels(), data.num_classes, cfg.dropout)
    model = VcrClassifier(backbone, head, freeze_backbone=cfg.freeze_backbone).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    num_params = sum(p.numel() for p in model.parameters())
    info = RunInfo(
        backbone=cfg.backbone,
        feature_channels=backbone.get_feature_channels(),
        feature_strides=backbone.get_feature_strides(),
        num_params=num_params,
        params_m=num_params / 1e6,
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        amp=str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None,
        channels_last=channels_last,
        class_names=data.class_names,
        num_train=len(data.train_labels),
        num_val=len(data.val_labels),
    )
    if on_start is not None:
        on_start(info)

    criterion = build_loss(cfg, data.class_counts).to(device)
    optimizer = build_optimizer(
        cfg.optimizer,
        model.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
    )
    n_train = len(data.train_labels)
    # Drop a ragged last batch (BatchNorm cannot train on one image); keep one batch when tiny.
    steps = max(1, n_train // cfg.batch_size)
    batch = min(cfg.batch_size, n_train)
    scheduler = build_scheduler(
        cfg.scheduler,
        optimizer,
        epochs=cfg.epochs,
        steps_per_epoch=steps,
        warmup_epochs=cfg.warmup_epochs,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    on_device = device.type != "cpu" and data.train_images.nbytes < _DEVICE_DATA_LIMIT
    train_x = data.train_images.to(device) if on_device else data.train_images
    train_y = data.train_labels.to(device)
    val_x = data.val_images.to(device) if on_device else data.val_images
    if device.type == "cuda" and not on_device:
        train_x, val_x = train_x.pin_memory(), val_x.pin_memory()
    gen = torch.Generator(device=device if on_device else "cpu").manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    sample_weights = None
    if cfg.use_weighted_sampler:  # each class drawn equally often, with replacement
        counts = torch.tensor(data.class_counts, dtype=torch.float64).clamp_min(1)
        sample_weights = (1.0 / counts)[data.train_labels].to(gen.device)
    check_every = 1 if device.type == "cpu" else _CUDA_CHECK_EVERY

    history: list[EpochMetrics] = []
    best: EpochMetrics | None = None
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        criterion.set_epoch(epoch, cfg.epochs)
        model.train()
        order = _epoch_order(n_train, steps * batch, sample_weights, gen)
        running = torch.zeros((), device=device, dtype=torch.float64)
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            x = train_x[idx].to(device, non_blocking=True)
            y = train_y[idx.to(device)]
            x = normalise(augment(x, aug_gen) if cfg.augment else x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            last_lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            scheduler.step()
            running += loss.detach().double()
            checking = (step + 1) % check_every == 0 or step == steps - 1
            if checking and not math.isfinite(float(running)):
                raise NonFiniteLossError(
                    f"loss became {float(loss.detach())} at epoch {epoch} step {step} "
                    f"(lr={cfg.lr:g}, optimizer={cfg.optimizer}, loss_fn={cfg.loss_fn}). "
                    "Lower lr or add warmup"
                )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - t0
        val_loss, val_acc, val_f1 = evaluate(
            model,
            val_x,
            data.val_labels,
            data.num_classes,
            device=device,
            batch_size=max(256, cfg.batch_size),
            amp_dtype=amp_dtype,
            channels_last=channels_last,
        )
        m = EpochMetrics(
            epoch=epoch,
            train_loss=float(running) / steps,
            val_loss=val_loss,
            val_acc=val_acc,
            val_macro_f1=val_f1,
            seconds=time.perf_counter() - t0,
            images_per_s=steps * batch / train_seconds if train_seconds > 0 else float("inf"),
            lr=last_lr,
        )
        history.append(m)
        if best is None or _is_better(m, best, monitor):
            best = m
        if on_epoch is not None:
            on_epoch(m)

    assert best is not None  # epochs >= 1 is validated by TrainConfig
    latency = None
    if measure_latency_ms:
        latency = measure_latency(
            model, cfg.image_size, device, channels_last=channels_last, amp_dtype=amp_dtype
        )
    return TrainResult(
        model=model,
        info=info,
        history=history,
        best_epoch=best.epoch,
        best=best,
        latency_ms=latency,
        monitor=monitor,
    )


def save_run(result: TrainResult, cfg: TrainConfig, out_dir: Path) -> Path:
    """Write `model.pt` (state_dict), `metrics.json` and `config.yaml` into `out_dir`.

    Returns:
        `out_dir`, created if needed.
    """
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(state, out_dir / "model.pt")
    metrics = {
        "weights": "final epoch",
        "monitor": result.monitor,
        "best_epoch": result.best_epoch,
        "best": asdict(result.best),
        "history": [asdict(m) for m in result.history],
        "latency_ms": result.latency_ms,
        "info": {**asdict(result.info), "class_names": list(result.info.class_names)},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return out_dir
