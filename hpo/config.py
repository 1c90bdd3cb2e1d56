"""TrainConfig: the one mapping from parameter names (YAML, CLI, exports) to trainer fields."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from backbones import BACKBONE_NAMES, Registry

from ._choices import FUSION_NAMES, LOSS_NAMES, OPTIMIZER_NAMES, SCHEDULER_NAMES
from .errors import ConfigError, UnknownNameError

__all__ = ["FIELDS", "FIELD_NAMES", "FIELD_REGISTRIES", "TrainConfig", "check_field", "field_type"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. YAML parameter names equal these field names."""

    # model
    backbone: str = "resnet18"
    pretrained: bool = False
    weights: str | None = None
    freeze_backbone: bool = False
    fusion: str = "last"
    dropout: float = 0.0
    # loss
    loss_fn: str = "cross_entropy"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    tau: float = 1.0
    # optimisation
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    batch_size: int = 32
    epochs: int = 3
    # data
    image_size: int = 64
    augment: bool = True
    use_weighted_sampler: bool = False
    data: str = "synthetic"
    val_fraction: float = 0.2
    max_train_samples: int | None = None
    synthetic_size: int = 1000  # images drawn when data is "synthetic" (train + val)
    # runtime
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    amp: bool = True
    channels_last: bool = True
    experiment_name: str = "vcr"

    def __post_init__(self) -> None:
        for f in fields(self):
            check_field(f.name, getattr(self, f.name), where="TrainConfig")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str = "config") -> TrainConfig:
        """Build from a name -> value mapping; unknown names and bad values raise ConfigError.

        Numeric values are normalised (an int given for a float field becomes a float).
        """
        unknown = sorted(set(values) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(_unknown_field_message(unknown[0], where))
        clean = {k: check_field(k, v, where=where) for k, v in values.items()}
        return cls(**clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in fields(TrainConfig)}
FIELD_NAMES: tuple[str, ...] = tuple(FIELDS)
_HINTS = typing.get_type_hints(TrainConfig)

#: Fields whose values are names in a registry: the registries' name tables (no torch import).
FIELD_REGISTRIES: dict[str, Registry] = {
    "backbone": BACKBONE_NAMES,
    "fusion": FUSION_NAMES,
    "loss_fn": LOSS_NAMES,
    "optimizer": OPTIMIZER_NAMES,
    "scheduler": SCHEDULER_NAMES,
}

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
# (low, high, low inclusive, high inclusive)
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "dropout": (0.0, 1.0, True, False),
    "label_smoothing": (0.0, 1.0, True, False),
    "focal_gamma": (0.0, math.inf, True, False),
    "focal_alpha": (0.0, 1.0, False, True),
    "tau": (0.0, math.inf, True, False),
    "lr": (0.0, math.inf, False, False),
    "weight_decay": (0.0, math.inf, True, False),
    "momentum": (0.0, 1.0, True, False),
    "warmup_epochs": (0, math.inf, True, False),
    "batch_size": (1, math.inf, True, False),
    "epochs": (1, math.inf, True, False),
    "image_size": (32, 4096, True, True),
    "val_fraction": (0.0, 1.0, False, False),
    "max_train_samples": (1, math.inf, True, False),
    "synthetic_size": (20, 10_000_000, True, True),
    "num_workers": (0, 256, True, True),
    "seed": (0, 2**32 - 1, True, True),
}


def field_type(name: str) -> type:
    """The base type of a field: bool, int, float or str (Optional stripped)."""
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def field_optional(name: str) -> bool:
    return type(None) in typing.get_args(_HINTS[name])


def _unknown_field_message(name: str, where: str) -> str:
    from backbones import did_you_mean

    return (f"{where}: {name}: not a trainer field, got {name!r}. "
            f"{did_you_mean(name, FIELD_NAMES)}Fields: {', '.join(sorted(FIELD_NAMES))}")


def check_field(name: str, value: Any, *, where: str = "config") -> Any:
    """Validate one field value; return it normalised (int -> float for float fields).

    Raises:
        ConfigError: unknown field, wrong type, out of range, or a name not in its registry.
    """
    if name not in FIELDS:
        raise ConfigError(_unknown_field_message(name, where))
    loc = f"{where}: {name}"
    if value is None:
        if field_optional(name):
            return None
        raise ConfigError(f"{loc}: must not be null, got null. Give a {field_type(name).__name__}")
    kind = field_type(name)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{loc}: must be true or false, got {value!r}. Write true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{loc}: must be an integer, got {value!r}. Write a whole number")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{loc}: must be a number, got {value!r}. Write a number such as 0.001")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{loc}: must be finite, got {value!r}. Write a finite number")
    elif kind is str and not isinstance(value, str):
        raise ConfigError(f"{loc}: must be a string, got {value!r}. Quote it")
    if name in _RANGES:
        lo, hi, lo_inc, hi_inc = _RANGES[name]
        ok = (value >= lo if lo_inc else value > lo) and (value <= hi if hi_inc else value < hi)
        if not ok:
            interval = f"{'[' if lo_inc else '('}{lo}, {hi}{']' if hi_inc else ')'}"
            raise ConfigError(f"{loc}: must lie in {interval}, got {value!r}. Choose a value inside")
    if name in FIELD_REGISTRIES:
        reg = FIELD_REGISTRIES[name]
        if value not in reg:
            raise UnknownNameError(f"{loc}: {reg.unknown_message(value)}")
    if name == "device" and not _DEVICE.match(value):
        raise ConfigError(f"{loc}: must be auto, cpu, cuda or cuda:N, got {value!r}. Pick one of those")
    return value
