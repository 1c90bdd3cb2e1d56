"""Which GPUs a run may use and which worker process gets which: `visible_gpus`, `device_plan`.

One worker per GPU: each worker process of `run_study(workers=N)` is started with its own
`CUDA_VISIBLE_DEVICES`, so inside it the GPU is `cuda:0` and `device: auto` finds it; the
physical index travels in `VCR_HPO_GPU` and each trial records it (user attr `gpu`).

`visible_gpus()` is the one inventory: `$VCR_HPO_FAKE_GPUS` (a test hook: pretend N GPUs 0..N-1
are present, so the plan and the worker environments can be tested on a CPU machine), else the
entries of `$CUDA_VISIBLE_DEVICES`, else `torch.cuda.device_count()`, which asks NVML and so does
not initialise CUDA in this process (a parent that forks trial children must not).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..attrs import GPU_ENV
from ..errors import ConfigError

__all__ = [
    "FAKE_GPUS_ENV",
    "WorkerPlacement",
    "cuda_present",
    "device_plan",
    "parse_gpus",
    "visible_gpus",
]

#: Test hook: the number of GPUs `visible_gpus` pretends to see (ids "0".."N-1").
FAKE_GPUS_ENV = "VCR_HPO_FAKE_GPUS"


def visible_gpus() -> tuple[str, ...]:
    """The GPUs this process may hand out, as `CUDA_VISIBLE_DEVICES` spells them.

    Returns:
        ids such as ("0", "1", "3") (or GPU UUIDs when `$CUDA_VISIBLE_DEVICES` uses them);
        () on a machine without CUDA.

    Raises:
        ConfigError: `$VCR_HPO_FAKE_GPUS` that is not a whole number.
    """
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake not in (None, ""):
        if not fake.isdigit():
            raise ConfigError(f"${FAKE_GPUS_ENV}: must be a whole number of GPUs, got {fake!r}. "
                              "Unset it (it is a test hook)")
        return tuple(str(i) for i in range(int(fake)))
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = []
        for item in listed.split(","):
            item = item.strip()
            if not item or item.startswith("-"):
                break  # CUDA stops at the first invalid entry; "-1" hides every GPU
            ids.append(item)
        if not ids:
            return ()
        count = _device_count()
        if count is None:
            return tuple(ids)
        return tuple(ids[:count])  # count 0: CUDA_VISIBLE_DEVICES set on a machine without GPUs
    count = _device_count()
    return tuple(str(i) for i in range(count or 0))


def _device_count() -> int | None:
    """GPUs torch sees (NVML first: no CUDA context here); None when torch is not importable."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch.cuda.device_count()


def cuda_present() -> bool:
    """Whether a CUDA GPU is visible (without initialising CUDA, so forking stays safe)."""
    return bool(visible_gpus())


def parse_gpus(text: str | None) -> tuple[str, ...] | None:
    """`--gpus 0,1,3` -> ("0", "1", "3"); None stays None.

    Raises:
        ConfigError: an empty entry or a GPU named twice.
    """
    if text is None:
        return None
    ids = tuple(item.strip() for item in str(text).split(","))
    if not all(ids):
        raise ConfigError(f"--gpus: must be GPU ids separated by commas, got {text!r}. "
                          "Write e.g. --gpus 0,1,3")
    twice = sorted({g for g in ids if ids.count(g) > 1})
    if twice:
        raise ConfigError(f"--gpus: names GPU {twice[0]} twice, got {text!r}. Name each GPU once "
                          "(use --workers-per-gpu K to share one)")
    return ids


@dataclass(frozen=True)
class WorkerPlacement:
    """Where one worker process trains.

    `gpu` is the physical id the worker's `CUDA_VISIBLE_DEVICES` holds (None: the CPU or a
    single-process run on whatever torch picks); `device` is the TrainConfig device inside it.
    """

    index: int
    gpu: str | None
    device: str

    def env(self) -> dict[str, str]:
        """Environment entries for the worker process."""
        if self.gpu is None:
            return {}
        return {"CUDA_VISIBLE_DEVICES": self.gpu, GPU_ENV: self.gpu}

    def describe(self) -> str:
        return f"worker {self.index}: " + (f"GPU {self.gpu}" if self.gpu is not None
                                           else self.device)


Workers = int | Literal["auto"]


def device_plan(
    workers: Workers,
    gpus: Sequence[str] | None = None,
    per_gpu: int | None = None,
    device: str = "auto",
    *,
    visible: Sequence[str] | None = None,
    cpu_workers: int = 1,
) -> list[WorkerPlacement]:
    """Which GPU (or the CPU) each worker process gets.

    On a CUDA run (`device` cuda, cuda:N, or auto with a GPU visible) workers go round-robin over
    the chosen GPUs (`gpus`, else `cuda:N`'s GPU, else every visible one), `per_gpu` workers
    per GPU; `workers="auto"` is one per chosen GPU times `per_gpu`. On the CPU every worker
    gets the CPU and `"auto"` is `cpu_workers`.

    Args:
        workers: a number >= 1 or "auto".
        gpus: physical ids (`--gpus`), each among `visible`.
        per_gpu: workers sharing one GPU (`--workers-per-gpu`); default: workers / GPUs.
        device: the run's TrainConfig device (auto, cpu, cuda, cuda:N, mps).
        visible: the GPU inventory (default `visible_gpus()`).
        cpu_workers: what "auto" means on the CPU.

    Returns:
        One placement per worker, in worker order.

    Raises:
        ConfigError: GPUs asked for on the CPU or that are not visible, a worker count that does
            not spread evenly over the GPUs, or more workers than the GPUs' slots.
    """
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int)
                              or workers < 1):
        raise ConfigError(f"--workers: must be a number >= 1 or auto, got {workers!r}. "
                          "Give e.g. --workers 4")
    if per_gpu is not None and (isinstance(per_gpu, bool) or not isinstance(per_gpu, int)
                                or per_gpu < 1):
        raise ConfigError(f"--workers-per-gpu: must be a number >= 1, got {per_gpu!r}. "
                          "Give e.g. --workers-per-gpu 2")
    visible = tuple(visible_gpus() if visible is None else visible)
    kind = device.split(":")[0]
    on_gpu = kind == "cuda" or (kind == "auto" and bool(visible))
    if not on_gpu:
        for flag, value in (("--gpus", gpus), ("--workers-per-gpu", per_gpu)):
            if value is not None:
                why = "no GPU is visible here" if kind == "auto" else f"--device is {device}"
                raise ConfigError(f"{flag}: needs a CUDA device, got {flag} "
                                  f"{_show(value)} while {why}. Drop {flag}"
                                  + (" or use --device cuda" if kind != "auto" else ""))
        n = cpu_workers if workers == "auto" else workers
        return [WorkerPlacement(i, None, device) for i in range(max(1, n))]

    if not visible:
        raise ConfigError(f"--device: must name a visible CUDA GPU, got {device!r} with none "
                          "visible here. Use --device cpu or auto")
    chosen = _chosen(gpus, device, visible)
    explicit = gpus is not None or ":" in device
    if per_gpu is not None:
        slots = len(chosen) * per_gpu
        n = slots if workers == "auto" else workers
        if n != slots:
            raise ConfigError(f"--workers: must fill {len(chosen)} GPU(s) x --workers-per-gpu "
                              f"{per_gpu} = {slots} slots, got {n}. Give --workers {slots} or "
                              "--workers auto")
    else:
        n = len(chosen) if workers == "auto" else workers
        if n < len(chosen):
            if explicit and workers != "auto":
                raise ConfigError(f"--workers: {n} worker(s) cannot use the {len(chosen)} GPUs "
                                  f"named, got --workers {n} with --gpus "
                                  f"{','.join(chosen)}. Give --workers {len(chosen)} or fewer "
                                  "GPUs")
            chosen = chosen[:n]
        elif n % len(chosen):
            raise ConfigError(f"--workers: must be a multiple of the {len(chosen)} GPU(s) "
                              f"({','.join(chosen)}) so each GPU gets as many, got {n}. Give "
                              f"--workers {len(chosen) * math.ceil(n / len(chosen))} or name "
                              "GPUs with --gpus")
    inner = "cuda" if kind == "cuda" else device  # the worker sees its GPU as cuda:0
    return [WorkerPlacement(i, chosen[i % len(chosen)], inner) for i in range(n)]


def _chosen(gpus: Sequence[str] | None, device: str, visible: tuple[str, ...]) -> tuple[str, ...]:
    if gpus is not None and ":" in device:
        raise ConfigError(f"--gpus: conflicts with --device {device}, got --gpus {_show(gpus)}. "
                          "Use --device cuda with --gpus, or --device cuda:N alone")
    if ":" in device:
        index = device.split(":", 1)[1]
        if not index.isdigit() or int(index) >= len(visible):
            raise ConfigError(f"--device: must be a visible CUDA GPU, got {device!r} "
                              f"({len(visible)} visible: {','.join(visible)}). Use --device cuda")
        return (visible[int(index)],)
    if gpus is None:
        return visible
    missing = [g for g in gpus if g not in visible]
    if missing:
        raise ConfigError(f"--gpus: GPU {missing[0]} is not visible here, got --gpus "
                          f"{_show(gpus)}. Visible GPUs: {','.join(visible)}")
    return tuple(gpus)


def _show(value) -> str:
    return ",".join(value) if isinstance(value, (tuple, list)) else str(value)
