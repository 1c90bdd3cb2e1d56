"""Equal-compute trials (`study.trial_length: compute`): every trial trains for as long as the
space's default configuration trains its `epochs` epochs, counted in measured compute.

Why: the user's final training is paid in time, and there a backbone that costs half as much
per image trains twice the epochs. With equal epochs per trial a short search judges a cheap
backbone on the epochs of an expensive one, and ranks configurations by how fast they start,
not by what the same time buys (docs/benchmarks.md, search quality).

A configuration's cost is the seconds one training step (forward, backward, optimizer step, as
`hpo.train` runs it) takes per image at its backbone, batch size, image size, head, precision
and device: the fastest of three steps after one warm-up on the training images
(`hpo.train.step_seconds`). It is
measured the first time a study meets that key and kept in the study's user attr `step_costs`,
so every later trial, every worker and a resumed run give a configuration the same epochs:

    epochs = round(epochs_default * cost(default) / cost(trial)), clamped to
             [max(1, warmup_epochs + 1), MAX_FACTOR * epochs_default]

Each trial records the epochs it trained (`trial_epochs`), and `hpo.outputs.configs` writes
them into the exported configuration, so `vcr-hpo train` repeats the trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..attrs import ATTR_STEP_COSTS
from ..config import TrainConfig

__all__ = ["MAX_FACTOR", "TRIAL_LENGTHS", "cost_key", "equal_compute_epochs", "measure_cost",
           "step_costs", "trial_epochs"]

#: `study.trial_length` values: a trial trains the configured `epochs`, or equal compute.
TRIAL_LENGTHS = ("epochs", "compute")
#: A trial trains at most this many times the default's epochs (a backbone 10x cheaper on a
#: GPU would otherwise train for ever).
MAX_FACTOR = 4


def cost_key(cfg: TrainConfig) -> str:
    """What a step's cost depends on: backbone, batch size, image size, head, frozen or not,
    and the device it runs on (CUDA: its name, mixed precision and memory format)."""
    import torch

    from ..train import resolve_device

    device = resolve_device(cfg.device)
    where = device.type
    if device.type == "cuda":
        where = (f"cuda {torch.cuda.get_device_name(device)}|amp {cfg.amp}|"
                 f"{'channels_last' if cfg.channels_last else 'nchw'}")
    return (f"{cfg.backbone}|batch {cfg.batch_size}|{cfg.image_size}px|{cfg.fusion}|"
            f"{'frozen' if cfg.freeze_backbone else 'trained'}|{where}")


def measure_cost(cfg: TrainConfig) -> float:
    """Seconds per training image of one training step of `cfg` (`hpo.train.step_seconds`)."""
    from ..train import step_seconds

    return step_seconds(cfg)


def equal_compute_epochs(epochs: int, cost_default: float, cost: float, *,
                         warmup_epochs: int = 0) -> int:
    """Epochs that cost what `epochs` epochs of the default cost (see the module doc)."""
    if not (cost > 0 and cost_default > 0):
        raise ValueError(f"costs must be positive, got {cost_default!r} and {cost!r}")
    n = math.floor(epochs * cost_default / cost + 0.5)
    return min(max(n, 1, warmup_epochs + 1), MAX_FACTOR * epochs)


def trial_epochs(study: Any, cfg: TrainConfig, default: TrainConfig,
                 measure=measure_cost) -> int:
    """The epochs `cfg` trains in `study` at the compute of `default`'s epochs; the costs it
    needs are read from the study's `step_costs`, measured and added there when missing."""
    cost, cost_default = step_costs(study, cfg, default, measure)
    return equal_compute_epochs(default.epochs, cost_default, cost,
                                warmup_epochs=cfg.warmup_epochs)


def step_costs(study: Any, cfg: TrainConfig, default: TrainConfig,
               measure=measure_cost) -> tuple[float, float]:
    """(cost of `cfg`, cost of `default`): seconds per training image, read from the study's
    `step_costs` (one read), measured and added there when missing."""
    kept: Mapping[str, float] = study.user_attrs.get(ATTR_STEP_COSTS) or {}
    costs = dict(kept)
    for c in (default, cfg):
        key = cost_key(c)
        if key not in costs:
            costs[key] = measure(c)
    if costs != kept:
        fresh = dict(study.user_attrs.get(ATTR_STEP_COSTS) or {})  # another worker's too
        study.set_user_attr(ATTR_STEP_COSTS, {**costs, **fresh})
        costs = {**costs, **fresh}
    return float(costs[cost_key(cfg)]), float(costs[cost_key(default)])
