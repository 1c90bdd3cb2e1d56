"""Reports within an epoch (`study.report_every`): when to report, at which step, which pruner units.

The step reported to the pruner is the number of training images seen, counted on the trial's
training split: report k of epoch e (fraction f = k * report_every) is step
`e * n_train + round(f * n_train)`, the epoch end is `(e + 1) * n_train`. Batch size never moves a
step (the evaluation runs after the first batch that reaches the fraction), and a trial resumed at
an epoch end reports the steps an uninterrupted one does. Mid-epoch reports score the first
`report_val_images` images of the (fixed) validation split; the epoch end scores all of it and
stays what the trial returns.

Pruner arguments that count steps are written in epochs (fractions allowed with report_every)
and become images when the pruner is built (`scale_pruner`); `patience` counts reports. With
`study.fidelity: seconds` or `compute` (`hpo.trial.fidelity`) they are whole seconds of training,
or whole epochs of the default's compute, instead, on the report grid (`grid_arg_problems`).

Imports no torch at module level: the space parser uses `proxy_args` and the step table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._values import FrozenDict

if TYPE_CHECKING:
    from ..algorithms import AlgorithmSpec
    from ..config import TrainConfig
    from ..train import RunInfo, TrainState

__all__ = [
    "DEFAULT_VAL_IMAGES",
    "STEP_ARGS",
    "SubEpochReports",
    "epoch_images",
    "grid_arg_problems",
    "proxy_args",
    "report_batches",
    "scale_pruner",
]

#: Validation images scored at a mid-epoch report unless `report_val_images` says otherwise.
DEFAULT_VAL_IMAGES = 512
#: Pruner arguments that count steps: epochs in the YAML, images once built with report_every.
STEP_ARGS: dict[str, tuple[str, ...]] = {
    "MedianPruner": ("n_warmup_steps", "interval_steps"),
    "Percentile": ("n_warmup_steps", "interval_steps"),
    "Threshold": ("n_warmup_steps", "interval_steps"),
    "SuccessiveHalving": ("min_resource",),
    "Hyperband": ("min_resource", "max_resource"),
    "Wilcoxon": ("n_startup_steps",),
}
_PROXY = 1000  # validation stand-in for one epoch: fractions of an epoch become whole numbers


def proxy_args(name: str, args: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Args for checking a pruner against its signature when its step args are in epochs.

    Returns the args with each numeric step arg as a whole number (epochs x 1000), and the names
    of step args that are not numbers ("auto" and other strings are left as they are).
    """
    out, bad = dict(args), []
    for key in STEP_ARGS.get(name, ()):
        value = args.get(key)
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            bad.append(key)
            continue
        out[key] = math.ceil(value * _PROXY) if value > 0 else int(value)
    return out, bad


#: Step arguments that place a rung or the end of a warm-up: on the grid with fidelity: seconds.
_GRID_ARGS = frozenset({"n_warmup_steps", "min_resource", "max_resource"})


def grid_arg_problems(name: str, args: Mapping[str, Any], every: int,
                      unit: str = "seconds") -> list[tuple[str, str, str]]:
    """(arg, rule, fix) for each step arg of pruner `name` that is not a whole grid point.

    `unit`: the fidelity, "seconds" (a grid of `every` seconds) or "compute" (a grid of one
    epoch of the default's compute; `every` is 1). Steps are grid points in whole units, so
    step args are whole numbers; with seconds a rung or warm-up end is a multiple of `every`
    (0 allowed), which also catches a value meant as epochs. "auto" is left to Optuna (it
    derives it from the first trials' steps, grid points already). Wilcoxon's
    `n_startup_steps` counts common reports.
    """
    out = []
    for key in STEP_ARGS.get(name, ()):
        value = args.get(key)
        if value is None or isinstance(value, str):
            continue
        whole = (not isinstance(value, bool) and isinstance(value, (int, float))
                 and math.isfinite(value) and float(value).is_integer())
        if not whole:
            if unit == "compute":
                rule = "counts whole epochs of the default's compute (fidelity: compute)"
                out.append((key, rule, "Write whole default epochs such as 1 or 3"))
            else:
                out.append((key, "counts whole seconds of training (fidelity: seconds)",
                            f"Write whole seconds such as {every * 3}"))
        elif key in _GRID_ARGS and value > 0 and value % every:
            rule = ("counts seconds of training (fidelity: seconds) and must be a multiple of "
                    f"report_seconds ({every})")
            fix = f"Write e.g. {max(1, round(value / every)) * every} seconds (not epochs)"
            out.append((key, rule, fix))
    return out


def scale_pruner(spec: AlgorithmSpec | None, images: int) -> AlgorithmSpec | None:
    """The pruner spec with step args turned from epochs into training images (nested too).

    A positive value never rounds to 0 images; "auto" stays (Optuna derives it from the first
    trial's steps, which are images already).
    """
    from ..algorithms import AlgorithmSpec

    if spec is None:
        return None
    args: dict[str, Any] = {}
    for key, value in spec.args.items():
        if isinstance(value, AlgorithmSpec):
            value = scale_pruner(value, images)
        elif key in STEP_ARGS.get(spec.type, ()) and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            value = max(1, round(value * images)) if value > 0 else int(value)
        args[key] = value
    return AlgorithmSpec(spec.type, FrozenDict(args))


def epoch_images(cfg: TrainConfig) -> int:
    """Training images in one epoch of `cfg` (its training split): the pruner's epoch unit."""
    from ..data import load_dataset

    return len(load_dataset(cfg).train_labels)


def report_batches(every: float, steps: int, n_train: int) -> dict[int, int]:
    """Mid-epoch report points of one epoch: batches done -> images into the epoch (the step).

    Fractions k * every below 1; each is scored after the first batch whose images reach it
    (`steps` batches make the epoch). Fractions that fall on the epoch's last batch are left to
    the epoch end; two fractions on one batch report once (the first).
    """
    points: dict[int, int] = {}
    k = 1
    while k * every < 1 - 1e-9:
        frac = k * every
        batch = max(1, math.ceil(frac * steps - 1e-9))
        if batch < steps and batch not in points:
            points[batch] = round(frac * n_train)
        k += 1
    return points


class SubEpochReports:
    """Calls `report(step, value)` at each mid-epoch point (wire `on_batch` into `train_model`).

    Args:
        every: the fraction of an epoch between reports, in (0, 1].
        val_images: validation images scored at a mid-epoch report (the first ones of the split).
        metric: val_acc, val_macro_f1 or val_loss.
        report: receives (images seen, value); it may raise (the objective raises TrialPruned).
    """

    def __init__(self, every: float, val_images: int, metric: str,
                 report: Callable[[int, float], None]) -> None:
        self.every, self.val_images, self.metric, self.report = every, val_images, metric, report
        self.n_train = 0
        self._points: dict[int, int] = {}
        self._steps = -1
        self.seconds = 0.0  # spent scoring subsets (it counts in the epoch's images/s too)
        self.count = 0

    def start(self, info: RunInfo) -> None:
        """Learn the training split's size (call from `on_start`)."""
        self.n_train = info.num_train

    def epoch_step(self, epoch: int) -> int:
        """The step of epoch `epoch`'s end (0-based): images seen once it is trained."""
        return (epoch + 1) * self.n_train

    def on_batch(self, s: TrainState, batch: int) -> None:
        """After `batch` batches of epoch `s.epoch`: score the subset and report at a point."""
        if s.data.steps != self._steps:
            self._steps = s.data.steps
            self._points = report_batches(self.every, s.data.steps, len(s.data.train_y))
            self.n_train = len(s.data.train_y)
        into = self._points.get(batch)
        if into is None:
            return
        import time

        from ..train import validate

        t0 = time.perf_counter()
        val_loss, val_acc, val_f1 = validate(s, images=self.val_images)
        s.model.train()  # validate() left it in eval mode; the epoch goes on
        self.seconds += time.perf_counter() - t0
        self.count += 1
        value = {"val_loss": val_loss, "val_acc": val_acc, "val_macro_f1": val_f1}[self.metric]
        self.report(s.epoch * self.n_train + into, value)
