"""The synthetic vehicle-colour set: long-tailed colour classes drawn as cars on busy scenes."""

from __future__ import annotations

import torch

__all__ = ["COLOUR_CLASSES", "make_synthetic"]

#: (name, RGB in [0, 1], share of traffic, metallic paint). Shares follow real fleet statistics:
#: a long tail from white/black/grey down to orange/yellow. Close pairs on purpose:
#: white/silver/grey and red/orange/brown.
COLOUR_CLASSES: tuple[tuple[str, tuple[float, float, float], float, bool], ...] = (
    ("white", (0.92, 0.92, 0.91), 0.23, False),
    ("black", (0.07, 0.07, 0.08), 0.19, False),
    ("grey", (0.40, 0.41, 0.43), 0.14, True),
    ("silver", (0.68, 0.69, 0.71), 0.12, True),
    ("blue", (0.12, 0.24, 0.58), 0.09, False),
    ("red", (0.70, 0.09, 0.08), 0.08, False),
    ("brown", (0.38, 0.24, 0.14), 0.05, False),
    ("green", (0.12, 0.38, 0.20), 0.04, False),
    ("orange", (0.88, 0.42, 0.08), 0.035, False),
    ("yellow", (0.90, 0.78, 0.12), 0.025, False),
)


def _class_sequence(n: int, gen: torch.Generator) -> torch.Tensor:
    """Long-tailed labels: counts follow the traffic shares, every class at least twice."""
    shares = torch.tensor([c[2] for c in COLOUR_CLASSES], dtype=torch.float64)
    counts = torch.clamp(torch.floor(shares / shares.sum() * n), min=2).long()
    while counts.sum() > n:  # tiny n: take back from the largest classes
        counts[counts.argmax()] -= 1
    counts[0] += n - counts.sum()
    labels = torch.repeat_interleave(torch.arange(len(COLOUR_CLASSES)), counts)
    return labels[torch.randperm(n, generator=gen)]


def _draw(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Draw one chunk of car images, vectorised over the batch. Returns uint8 (N, 3, S, S)."""
    n = labels.numel()

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *(shape or (1, 1)), generator=gen)

    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = g.view(1, size, 1), g.view(1, 1, size)

    # Background: sky/buildings above a horizon, road below, both greyish with a random cast.
    horizon = u(0.35, 0.6)
    sky = u(0.35, 0.85, 3, 1, 1) * u(0.85, 1.0, 1, 1, 1)
    road = u(0.2, 0.55, 1, 1, 1) + u(-0.04, 0.04, 3, 1, 1)
    img = torch.where((y < horizon).unsqueeze(1), sky, road).expand(n, 3, size, size).clone()
    img = img * (0.85 + 0.3 * y).unsqueeze(1)  # vertical light falloff

    # Clutter: boxes of any colour (signs, buildings, other cars) behind the car.
    for _ in range(4):
        cx, cy, w, h = u(0, 1), u(0.05, 0.7), u(0.05, 0.3), u(0.05, 0.35)
        box = ((x - cx).abs() < w / 2) & ((y - cy).abs() < h / 2) & (u(0, 1) < 0.8)
        img = torch.where(box.unsqueeze(1), u(0.05, 0.95, 3, 1, 1), img)

    # Car geometry, in image fractions.
    length = u(0.55, 0.92)
    cx = 0.5 + u(-0.12, 0.12)
    ground = u(0.72, 0.92)
    wheel_r = length * u(0.085, 0.11)
    body_bot = ground - wheel_r * 0.9
    body_h = length * u(0.2, 0.28)
    body_top = body_bot - body_h
    body_cy = (body_top + body_bot) / 2
    body = ((x - cx).abs() / (length / 2)) ** 4 + ((y - body_cy).abs() / (body_h / 2)) ** 4 <= 1

    facing = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    cab_cx = cx + facing * length * u(-0.12, 0.05)
    cab_h = body_h * u(0.7, 1.05)
    cab_bot_w, cab_top_w = length * u(0.28, 0.36), length * u(0.16, 0.24)
    t = ((body_top - y) / cab_h).clamp(0, 1)  # 0 at the cabin's bottom, 1 at its roof
    half_w = cab_bot_w - (cab_bot_w - cab_top_w) * t
    in_cab_rows = (y >= body_top - cab_h) & (y <= body_top + 0.01)
    cabin = in_cab_rows & ((x - cab_cx).abs() <= half_w)
    window = (
        (y >= body_top - cab_h * 0.85)
        & (y <= body_top - cab_h * 0.12)
        & ((x - cab_cx).abs() <= half_w - 0.025)
        & ((x - cab_cx).abs() >= 0.012)
    )
    paint_mask = (body | cabin) & ~window

    wheel_dx = length * u(0.29, 0.33)
    wheel_cy = ground - wheel_r
    wheels = torch.zeros(n, size, size, dtype=torch.bool)
    hubs = torch.zeros_like(wheels)
    for side in (-1.0, 1.0):
        d2 = (x - cx - side * wheel_dx) ** 2 + (y - wheel_cy) ** 2
        wheels |= d2 <= wheel_r**2
        hubs |= d2 <= (wheel_r * 0.45) ** 2

    # Shadow on the ground under the car.
    shadow = ((x - cx) / (length * 0.6)) ** 2 + ((y - ground) / (wheel_r * 0.8)) ** 2 <= 1
    img = torch.where(shadow.unsqueeze(1), img * u(0.35, 0.6, 1, 1, 1), img)

    # Paint: class colour with per-car variation in shade and a small channel jitter.
    base = torch.tensor([c[1] for c in COLOUR_CLASSES])[labels].view(n, 3, 1, 1)
    metallic = torch.tensor([float(c[3]) for c in COLOUR_CLASSES])[labels].view(n, 1, 1, 1)
    paint = base * u(0.82, 1.12, 1, 1, 1) + u(-0.035, 0.035, 3, 1, 1)
    # Shading: the roof and upper body catch more light than the sills.
    rel = ((y - (body_top - cab_h)) / (body_bot - body_top + cab_h)).clamp(0, 1).unsqueeze(1)
    paint = paint * (1.12 - 0.4 * rel)
    # Specular highlight: a soft streak along the shoulder line, stronger on metallic paint.
    streak_y = body_top + body_h * u(0.1, 0.35)
    streak = torch.exp(-(((y - streak_y) / (body_h * 0.12)) ** 2)).unsqueeze(1)
    strength = u(0.0, 0.35, 1, 1, 1) + 0.25 * metallic
    paint = paint + strength * streak * (1.0 - paint)
    img = torch.where(paint_mask.unsqueeze(1), paint, img)

    glass = u(0.08, 0.25, 1, 1, 1) + torch.tensor([0.0, 0.02, 0.05]).view(1, 3, 1, 1)
    glass = glass + 0.25 * (1 - t).unsqueeze(1) * u(0, 0.6, 1, 1, 1)  # sky reflection
    img = torch.where(window.unsqueeze(1), glass, img)
    img = torch.where(wheels.unsqueeze(1), u(0.03, 0.1, 1, 1, 1), img)
    img = torch.where(hubs.unsqueeze(1), u(0.35, 0.6, 1, 1, 1), img)

    # Scene lighting: overall exposure and a mild colour temperature, then sensor noise.
    temp = u(-0.05, 0.05)
    tint = torch.stack([1 + temp, torch.ones_like(temp), 1 - temp], dim=1)
    img = img * u(0.55, 1.25, 1, 1, 1) * tint
    img = img + u(0.01, 0.06, 1, 1, 1) * torch.randn(img.shape, generator=gen)
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def make_synthetic(n: int, image_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `n` vehicle images of `image_size` px: the same images for the same arguments.

    Returns:
        images uint8 (n, 3, S, S) and labels int64 (n,) indexing `COLOUR_CLASSES`.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = _class_sequence(n, gen)
    chunk = max(16, (1 << 21) // (image_size * image_size))  # bounded temporaries at any size
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    for i in range(0, n, chunk):  # filled in place: no second full-size copy from a concat
        images[i : i + chunk] = _draw(labels[i : i + chunk], image_size, gen)
    return images, labels
