"""Offline pretrained weights: torch hub cache, Hugging Face cache, or an explicit file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import ConfigError, WeightsNotFoundError

__all__ = ["hf_cached_file", "hub_checkpoint_path", "load_state_dict_file"]

_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub keeps the file downloaded from `url` (`$TORCH_HOME/hub/checkpoints/...`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment each call."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def hf_cached_file(repo_id: str) -> Path | None:
    """The weights file of `repo_id` in the local Hugging Face cache, or None. Never networks.

    Reads the cache layout directly (`models--org--name/snapshots/<rev>/<file>`), preferring the
    revision that `refs/main` names.
    """
    repo_dir = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / "main"
    revisions = [ref.read_text().strip()] if ref.is_file() else []
    revisions += sorted(p.name for p in snapshots.iterdir() if p.name not in revisions)
    for rev in revisions:
        for fname in _HF_FILES:
            candidate = snapshots / rev / fname
            if candidate.is_file():
                return candidate
    return None


def hf_expected_path(repo_id: str) -> Path:
    return hf_cache_dir() / ("models--" + repo_id.replace("/", "--")) / "snapshots/<rev>/model.safetensors"


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state_dict from a .pth/.pt/.bin or .safetensors file (a checkpoint dict works too).

    Raises:
        WeightsNotFoundError: the file does not exist.
        ConfigError: the file is not a state_dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights: file not found, got {str(path)!r}. Give the path of a state_dict file."
        )
    state: object  # whatever the file holds, checked below
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  (torch raises several types for corrupt files)
            raise ConfigError(
                f"weights: cannot read {str(path)!r} as a state_dict, got {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Save it with torch.save(model.state_dict(), path)."
            ) from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"weights: {str(path)!r} is not a state_dict of tensors. "
            "Save it with torch.save(model.state_dict(), path)."
        )
    return {k.removeprefix("module."): v for k, v in state.items()}
