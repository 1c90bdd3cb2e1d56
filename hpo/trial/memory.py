"""The memory preflight: one training step and one validation batch before a trial trains.

A configuration that cannot fit (batch size x image size x backbone) fails here in seconds,
not at the first validation after a whole epoch (validation runs at max(256, batch_size)).

- On CUDA the step really runs on the trial's model; peak memory is measured
  (`torch.cuda.max_memory_allocated`) and an out-of-memory error propagates.
- With `$VCR_HPO_MEMORY_CAP_MB` set (any device) the training memory is also estimated from
  the model (weights, gradients, two optimizer moments) and the activations one forward pass
  keeps for backward (summed from module outputs at batch 1, times the batch size); an estimate
  over the cap raises `MemoryBudgetError`. A CPU machine shared by several workers uses it to
  keep one trial from taking the whole machine; the constraint test uses it as a fixed budget.

The model's buffers (BatchNorm statistics), gradients and RNG states are restored afterwards,
so a trial with the preflight trains exactly as one without it.
"""

from __future__ import annotations

import os

import torch

from ..errors import ConfigError

__all__ = ["MEMORY_CAP_ENV", "MemoryBudgetError", "estimate_train_bytes", "memory_preflight"]

MEMORY_CAP_ENV = "VCR_HPO_MEMORY_CAP_MB"
_OPTIMIZER_COPIES = 4  # weights, gradients, two Adam moments


class MemoryBudgetError(MemoryError):
    """The estimated training memory of a configuration exceeds `$VCR_HPO_MEMORY_CAP_MB`."""


def memory_cap_bytes() -> int | None:
    """`$VCR_HPO_MEMORY_CAP_MB` in bytes, None when unset.

    Raises:
        ConfigError: not a positive whole number.
    """
    raw = os.environ.get(MEMORY_CAP_ENV)
    if raw in (None, ""):
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"${MEMORY_CAP_ENV}: must be a whole number of MiB >= 1, got {raw!r}. "
                          "Unset it or give e.g. 4096")
    return int(raw) << 20


@torch.no_grad()
def _activation_bytes(model: torch.nn.Module, image_size: int, device: torch.device) -> int:
    """Bytes of the outputs of every leaf module for one image (what backward keeps)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * 4  # fp32 activations

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()  # batch 1: BatchNorm in train mode refuses it; sizes are the same
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def estimate_train_bytes(model: torch.nn.Module, batch: int, image_size: int,
                         device: torch.device | str = "cpu") -> int:
    """Estimated bytes to train `model` at `batch` images of `image_size` px."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params * _OPTIMIZER_COPIES + batch * _activation_bytes(model, image_size,
                                                                  torch.device(device))


def memory_preflight(state) -> dict[str, float]:
    """Check that a built `hpo.train.TrainState` fits in memory; returns what was measured.

    Returns:
        {"estimate_mb": ...} when a cap is set, {"peak_mb": ...} on CUDA (either may be absent).

    Raises:
        MemoryBudgetError: the estimate exceeds `$VCR_HPO_MEMORY_CAP_MB`.
        torch.cuda.OutOfMemoryError: the CUDA step ran out of memory.
    """
    cfg, device, model = state.cfg, state.device, state.model
    out: dict[str, float] = {}
    batch, size = state.data.batch, cfg.image_size
    cap = memory_cap_bytes()
    if cap is not None:
        need = estimate_train_bytes(model, batch, size, device)
        out["estimate_mb"] = round(need / 2**20, 1)
        if need > cap:
            raise MemoryBudgetError(
                f"out of memory: batch_size {batch} at image_size {size} needs ~{need >> 20} MiB "
                f"for {cfg.backbone}, over ${MEMORY_CAP_ENV}={cap >> 20}")
    if device.type == "cuda":
        out["peak_mb"] = round(_cuda_step(state) / 2**20, 1)
    return out


def _cuda_step(state) -> int:
    """Peak bytes of one train step at the batch size plus one validation batch."""
    model, device = state.model, state.device
    buffers = {k: v.clone() for k, v in model.state_dict().items()
               if not any(k == n for n, _ in model.named_parameters())}
    rng = (torch.get_rng_state(), torch.cuda.get_rng_state(device))
    torch.cuda.reset_peak_memory_stats(device)
    size = state.cfg.image_size
    fmt = torch.channels_last if state.channels_last else torch.contiguous_format
    try:
        model.train()
        x = torch.zeros(state.data.batch, 3, size, size, device=device).contiguous(
            memory_format=fmt)
        y = torch.zeros(state.data.batch, dtype=torch.long, device=device)
        with torch.autocast("cuda", dtype=state.amp_dtype or torch.float32,
                            enabled=state.amp_dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        del x, y, loss
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=state.amp_dtype or torch.float32,
                                             enabled=state.amp_dtype is not None):
            n = max(256, state.cfg.batch_size)
            model(torch.zeros(min(n, len(state.data.val_y)), 3, size, size, device=device)
                  .contiguous(memory_format=fmt))
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    finally:
        state.optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        model.load_state_dict(buffers, strict=False)
        torch.set_rng_state(rng[0])
        torch.cuda.set_rng_state(rng[1], device)
        model.train()
