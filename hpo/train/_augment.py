"""Image preprocessing on tensors: ImageNet normalisation and hue-preserving augmentation.

Every step after the uint8 gather is an affine map per image and channel, so a batch costs one
uint8 -> float copy (flip and shift done by that copy on the CPU), one per-channel sum (the grey
level contrast blends toward), one multiply-add that holds 1/255, contrast, brightness, mean and
std together, and, with augmentation, one clamp.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = ["MEAN", "STD", "augment", "normalise", "prepare_batch"]

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: pretrained backbones expect them
STD = (0.229, 0.224, 0.225)  # (an export's metadata states both)
_LUMA = (0.299, 0.587, 0.114)  # the grey level contrast blends toward
_SCALE = tuple(1.0 / s for s in STD)  # normalising is x * scale + shift per channel
_SHIFT = tuple(-m / s for m, s in zip(MEAN, STD))


@lru_cache(maxsize=16)
def _affine(device: torch.device, normalised: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift), shape (1, 3, 1, 1): [0, 1] values -> what training reads."""
    if not normalised:
        return torch.ones(1, 3, 1, 1, device=device), torch.zeros(1, 3, 1, 1, device=device)
    std = torch.tensor(STD, dtype=torch.float64)
    scale, shift = 1.0 / std, -torch.tensor(MEAN, dtype=torch.float64) / std
    return (scale.float().view(1, 3, 1, 1).to(device), shift.float().view(1, 3, 1, 1).to(device))


def _float_buffer(
    shape: tuple[int, ...], device: torch.device, out: torch.Tensor | None, channels_last: bool
) -> torch.Tensor:
    if out is not None:
        return out
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=torch.float32, device=device, memory_format=fmt)


def normalise(
    images: torch.Tensor, *, out: torch.Tensor | None = None, channels_last: bool = False
) -> torch.Tensor:
    """uint8 or [0, 1] float images -> ImageNet-normalised float.

    uint8 is converted once (into `out` when given, channels-last when asked) and scaled and
    shifted in place: x * (1 / (255 std)) - mean / std, one multiply-add.
    """
    scale, shift = _affine(images.device, True)
    if images.dtype != torch.uint8:
        return torch.addcmul(shift, images, scale)
    x = _float_buffer(images.shape, images.device, out, channels_last)
    x.copy_(images)
    return torch.addcmul(shift, x, scale / 255.0, out=x)


def _draws(n: int, h: int, gen: torch.Generator | None, device: torch.device):
    """Per image: row and column shift, flip, contrast, brightness (in this order, always)."""

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=device)

    pad = max(1, h // 8)  # shifts up to 1/8 of the side
    oy = (rand(n) * (2 * pad + 1)).long() - pad
    ox = (rand(n) * (2 * pad + 1)).long() - pad
    flip = rand(n) < 0.5
    contrast = 0.9 + 0.2 * rand(n)
    brightness = 0.9 + 0.2 * rand(n)
    return oy, ox, flip, contrast, brightness


def _span(shift: int, size: int) -> tuple[int, int, int]:
    """(first source index, first target index, length) of a shift by `shift` with clamping."""
    src = max(0, shift)
    return src, src - shift, min(size, size + shift) - src


def _moved_into(out: np.ndarray, image: np.ndarray, dy: int, dx: int, flip: bool) -> None:
    """out[c, i, j] = image[c, clamp(i + dy), f(clamp(j + dx))], f the flip when asked.

    One strided copy (converting to float) of the part that moves, then the border rows and
    columns copied from the target's own edge: replicate padding. A flip is a negative stride
    (a view), so flipping costs nothing; shifting the flipped image shifts as the gather did.
    """
    _, h, w = image.shape
    src = image[:, :, ::-1] if flip else image
    r0, d0, rn = _span(dy, h)
    c0, e0, cn = _span(dx, w)
    band = out[:, d0 : d0 + rn]
    np.copyto(band[:, :, e0 : e0 + cn], src[:, r0 : r0 + rn, c0 : c0 + cn], casting="unsafe")
    if e0 > 0:
        band[:, :, :e0] = band[:, :, e0 : e0 + 1]
    if e0 + cn < w:
        band[:, :, e0 + cn :] = band[:, :, e0 + cn - 1 : e0 + cn]
    if d0 > 0:
        out[:, :d0] = out[:, d0 : d0 + 1]
    if d0 + rn < h:
        out[:, d0 + rn :] = out[:, d0 + rn - 1 : d0 + rn]


def _prepare_on_cpu(
    images: torch.Tensor, picks: list[int], draws: tuple | None, normalised: bool,
    x: torch.Tensor,
) -> torch.Tensor:
    """`prepare_batch` on the CPU: one image at a time, each pass over it while it is in cache.

    NumPy, not torch: per-image torch ops start the intra-op thread pool each time, which costs
    more than the work on a busy machine.
    """
    src, out = images.numpy(), x.numpy()
    scale = _SCALE if normalised else (1.0, 1.0, 1.0)
    shift = _SHIFT if normalised else (0.0, 0.0, 0.0)
    if draws is None:
        for k, i in enumerate(picks):
            o = out[k]
            np.copyto(o, src[i], casting="unsafe")
            for c in range(3):
                np.multiply(o[c], scale[c] / 255.0, out=o[c])
                np.add(o[c], shift[c], out=o[c])
        return x
    h, w = images.shape[2:]
    oy, ox, flip, contrast, brightness = (t.tolist() for t in draws)
    for k, i in enumerate(picks):
        o = out[k]
        _moved_into(o, src[i], oy[k], ox[k], flip[k])
        sums = o.sum(axis=(1, 2)).tolist()
        grey = sum(lum * s for lum, s in zip(_LUMA, sums)) / (255.0 * h * w)
        a = contrast[k] * brightness[k] / 255.0
        b = grey * (1 - contrast[k]) * brightness[k]
        for c in range(3):
            np.multiply(o[c], a * scale[c], out=o[c])
            np.add(o[c], b * scale[c] + shift[c], out=o[c])
            np.clip(o[c], shift[c], scale[c] + shift[c], out=o[c])
    return x


def prepare_batch(
    images: torch.Tensor,
    idx: torch.Tensor | None = None,
    gen: torch.Generator | None = None,
    *,
    augment: bool = True,
    normalised: bool = True,
    out: torch.Tensor | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 images (rows `idx` of them) -> the float batch training reads.

    With `augment`: a random flip, translation (up to 1/8 of the side, edges replicated) and
    brightness/contrast per image. Colour is the label, so nothing changes hue: brightness scales
    all channels alike and contrast blends toward the image's own grey level. With `normalised`
    the result is ImageNet-normalised, else in [0, 1].

    On the CPU each image goes once from `images` into the float batch (shifted and flipped by
    that copy) and is finished while in cache; on a device the rows are gathered as uint8, then
    a few whole-batch passes. Equal, within float rounding, to the step-by-step definition
    (`tests/hpo/test_augment.py` holds it).

    Args:
        images: uint8 (M, 3, S, S) on any device.
        idx: the rows to take (default all), on the images' device.
        gen: a generator on the images' device.
        out: a float32 (len(idx), 3, S, S) buffer to fill (default a new tensor).
        channels_last: a new result is channels-last (the copy converts the layout).
    """
    dev = images.device
    n = images.shape[0] if idx is None else len(idx)
    draws = _draws(n, images.shape[2], gen, dev) if augment else None
    if dev.type == "cpu":
        x = _float_buffer((n, *images.shape[1:]), dev, out, channels_last)
        picks = list(range(n)) if idx is None else idx.tolist()
        return _prepare_on_cpu(images, picks, draws, normalised, x)
    src = images if idx is None else images[idx]
    return _prepare_on_device(src, draws, normalised, out, channels_last)


def _prepare_on_device(
    src: torch.Tensor, draws: tuple | None, normalised: bool, out: torch.Tensor | None,
    channels_last: bool,
) -> torch.Tensor:
    """`prepare_batch` of gathered uint8 rows in whole-batch passes (any device)."""
    dev, (n, _, h, w) = src.device, src.shape
    if draws is None:
        if normalised:
            return normalise(src, out=out, channels_last=channels_last)
        return _float_buffer(src.shape, dev, out, channels_last).copy_(src).div_(255.0)
    oy, ox, flip, contrast, brightness = draws
    x = _float_buffer(src.shape, dev, out, channels_last)
    rows = (oy[:, None] + torch.arange(h, device=dev)).clamp(0, h - 1)
    cols = (ox[:, None] + torch.arange(w, device=dev)).clamp(0, w - 1)
    cols = torch.where(flip[:, None], w - 1 - cols, cols)
    x.copy_(src[torch.arange(n, device=dev)[:, None, None, None],  # one gather on uint8:
                torch.arange(3, device=dev)[None, :, None, None],  # clamped indices act as
                rows[:, None, :, None], cols[:, None, None, :]])  # replicate padding
    # v = ((x/255 - g) c + g) b = x (c b / 255) + g (1 - c) b, clamped to [0, 1], then
    # v * scale + shift per channel: one multiply-add, and the clamp moved past it (scale > 0).
    grey = (x.sum(dim=(2, 3)) @ torch.tensor(_LUMA, device=dev)) / (255.0 * h * w)
    scale, shift = _affine(dev, normalised)
    a = (contrast * brightness / 255.0).view(n, 1, 1, 1) * scale
    b = (grey * (1 - contrast) * brightness).view(n, 1, 1, 1) * scale + shift
    torch.addcmul(b, x, a, out=x)
    return x.clamp_(shift, scale + shift)


def augment(images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random flip, translation (up to 1/8 of the side) and brightness/contrast, per image.

    `prepare_batch` without the normalisation.

    Args:
        images: uint8 (N, 3, S, S) on any device.
        gen: a generator on the images' device.

    Returns:
        float images in [0, 1].
    """
    return prepare_batch(images, gen=gen, normalised=False)
