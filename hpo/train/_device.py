"""Where a run trains: device choice, mixed precision and the global seeds."""

from __future__ import annotations

import random

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import ConfigError

__all__ = ["amp_dtype", "resolve_device", "seed_everything"]


def resolve_device(spec: str) -> torch.device:
    """`auto` -> cuda when present, else mps, else cpu; `cuda[:N]` must exist.

    Raises:
        ConfigError: a CUDA (or MPS) device that this machine does not have.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
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
    if dev.type == "mps" and not _mps_available():
        raise ConfigError(
            f"device: must be available, got {spec!r} (no MPS here). Use device: auto or cpu"
        )
    return dev


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision only on CUDA: bf16 where supported (no loss scaling needed), else fp16."""
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (model init, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
