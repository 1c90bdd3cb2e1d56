"""Image preprocessing on tensors: ImageNet normalisation and hue-preserving augmentation."""

from __future__ import annotations

import torch

__all__ = ["MEAN", "STD", "augment", "normalise"]

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: pretrained backbones expect them
STD = (0.229, 0.224, 0.225)  # (an export's metadata states both)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float images -> ImageNet-normalised float."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
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
