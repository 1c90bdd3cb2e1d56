"""Step one of a run: TrainConfig + dataset -> a TrainState at epoch 0 (model, optimizer, data)."""

from __future__ import annotations

import torch

from backbones import create_backbone

from ..config import TrainConfig
from ..data import DatasetSplits, load_dataset
from ._device import amp_dtype, resolve_device, seed_everything
from ._state import RunInfo, TrainData, TrainState
from .heads import VcrClassifier, build_head
from .losses import build_loss
from .optim import build_optimizer, build_scheduler

__all__ = ["build_state"]

_DEVICE_DATA_LIMIT = 2 << 30  # keep a dataset on the GPU when it is smaller than this (bytes)


def build_state(
    cfg: TrainConfig, *, data: DatasetSplits | None = None, monitor: str = "val_acc"
) -> TrainState:
    """Seed, build backbone + head + loss + optimizer + scheduler + scaler, place the data.

    Building twice from one config gives the same state (the seeds are set first), so a new
    state plus `load_state_dict(checkpoint)` continues a run exactly where it stopped.

    Args:
        data: already loaded splits (default: `load_dataset(cfg)`, cached).
        monitor: the metric that picks the best epoch.

    Raises:
        ConfigError: bad data, device or weights.
    """
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = data if data is not None else load_dataset(cfg)
    amp = amp_dtype(cfg, device)
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
        amp=str(amp).removeprefix("torch.") if amp is not None else None,
        channels_last=channels_last,
        class_names=data.class_names,
        num_train=len(data.train_labels),
        num_val=len(data.val_labels),
    )

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
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)

    on_device = device.type != "cpu" and data.train_images.nbytes < _DEVICE_DATA_LIMIT
    train_x = data.train_images.to(device) if on_device else data.train_images
    val_x = data.val_images.to(device) if on_device else data.val_images
    # Not on the device: the splits stay where they are (the shared, memory-mapped cache); each
    # training batch is gathered into a reusable pinned buffer (`HostBatches`), never a pinned
    # private copy of the whole set per worker.
    order_gen = torch.Generator(device=device if on_device else "cpu").manual_seed(cfg.seed)
    augment_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    sample_weights = None
    if cfg.use_weighted_sampler:  # each class drawn equally often, with replacement
        counts = torch.tensor(data.class_counts, dtype=torch.float64).clamp_min(1)
        sample_weights = (1.0 / counts)[data.train_labels].to(order_gen.device)
    placed = TrainData(
        train_x=train_x,
        train_y=data.train_labels.to(device),
        val_x=val_x,
        val_y=data.val_labels,
        num_classes=data.num_classes,
        steps=steps,
        batch=batch,
        sample_weights=sample_weights,
    )
    return TrainState(
        cfg=cfg,
        info=info,
        device=device,
        amp_dtype=amp,
        channels_last=channels_last,
        data=placed,
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        order_gen=order_gen,
        augment_gen=augment_gen,
        monitor=monitor,
    )
