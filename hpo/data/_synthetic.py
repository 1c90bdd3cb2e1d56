"""The synthetic vehicle-colour set: long-tailed colour classes drawn as cars on busy scenes.

A task of the family is named by a data source string: `synthetic` (today's set) or
`synthetic:colour=0.5,noise=0.1,classes=6` (`SyntheticSpec`); set and image size stay the
`synthetic_size` and `image_size` fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["COLOUR_CLASSES", "SyntheticSpec", "is_synthetic", "make_synthetic", "parse_synthetic"]

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


_SOURCE = "synthetic"
_FORM = "Write e.g. synthetic:colour=0.5,noise=0.1,classes=6"


@dataclass(frozen=True)
class SyntheticSpec:
    """The knobs of one synthetic task; the defaults draw today's set, bit for bit.

    colour: how far apart the class colours are: each paint colour is moved toward the palette's
        mean colour, `mean + colour * (c - mean)` (1 as designed, 0.3 hard; above 1 further apart).
    noise: standard deviation of extra Gaussian pixel noise, in [0, 1] intensity units (0: none
        beyond the simulated sensor's).
    classes: how many colour classes: the first `classes` of `COLOUR_CLASSES` (the most common).
    """

    colour: float = 1.0
    noise: float = 0.0
    classes: int = len(COLOUR_CLASSES)

    def __str__(self) -> str:
        """The data source string: `synthetic`, plus the knobs that differ from the defaults."""
        knobs = [f"{f.name}={getattr(self, f.name):g}" for f in fields(self)
                 if getattr(self, f.name) != f.default]
        return _SOURCE + (":" + ",".join(knobs) if knobs else "")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in COLOUR_CLASSES[: self.classes])


#: knob -> (type, low, high, rule) with both ends inclusive unless the rule says otherwise
_KNOBS = {
    "colour": (float, 0.0, 2.0, "must be a number in (0, 2]"),
    "noise": (float, 0.0, 1.0, "must be a number in [0, 1]"),
    "classes": (int, 2, len(COLOUR_CLASSES), f"must be a whole number in [2, {len(COLOUR_CLASSES)}]"),
}


def is_synthetic(data: str) -> bool:
    """Whether a data source names the synthetic set (with or without knobs)."""
    return data == _SOURCE or data.startswith(_SOURCE + ":")


def parse_synthetic(data: str, *, where: str = "data") -> SyntheticSpec:
    """`synthetic[:knob=value,...]` -> SyntheticSpec.

    Raises:
        ConfigError: an unknown knob, a knob given twice, or a bad value (one line).
    """
    if not is_synthetic(data):
        raise ConfigError(f"{where}: must be synthetic or synthetic:knob=value,..., got {data!r}. "
                          f"{_FORM}")
    values: dict[str, Any] = {}  # knob -> float, or int for the class count
    body = data[len(_SOURCE) + 1:] if data != _SOURCE else ""
    for part in body.split(",") if body else ():
        name, eq, raw = part.strip().partition("=")
        name = name.strip()
        if name not in _KNOBS:
            from backbones import did_you_mean

            raise ConfigError(f"{where}: unknown synthetic knob, got {name!r} in {data!r}. "
                              f"{did_you_mean(name, tuple(_KNOBS))}Knobs: {', '.join(_KNOBS)}")
        if name in values:
            raise ConfigError(f"{where}: each knob once, got {name} twice in {data!r}. {_FORM}")
        kind, lo, hi, rule = _KNOBS[name]
        try:
            value = float(raw) if eq else math.nan
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and lo <= value <= hi and (name != "colour" or value > 0)
        if ok and kind is int:
            ok = value.is_integer()
            value = int(value)
        if not ok:
            raise ConfigError(f"{where}: synthetic {name} {rule}, got {raw.strip() if eq else ''!r} "
                              f"in {data!r}. {_FORM}")
        values[name] = value
    return SyntheticSpec(**values)


def _class_sequence(n: int, gen: torch.Generator, classes: int = len(COLOUR_CLASSES)) -> torch.Tensor:
    """Long-tailed labels: counts follow the traffic shares, every class at least twice."""
    import torch

    shares = torch.tensor([c[2] for c in COLOUR_CLASSES[:classes]], dtype=torch.float64)
    counts = torch.clamp(torch.floor(shares / shares.sum() * n), min=2).long()
    while counts.sum() > n:  # tiny n: take back from the largest classes
        counts[counts.argmax()] -= 1
    counts[0] += n - counts.sum()
    labels = torch.repeat_interleave(torch.arange(classes), counts)
    return labels[torch.randperm(n, generator=gen)]


def _palette(colour: float) -> torch.Tensor:
    """The class colours (10, 3), moved toward their mean by `colour` (1: as listed)."""
    import torch

    rgb = torch.tensor([c[1] for c in COLOUR_CLASSES])
    if colour == 1.0:  # exactly today's values, not a round trip through the mean
        return rgb
    mean = rgb.mean(dim=0, keepdim=True)
    return (mean + colour * (rgb - mean)).clamp(0, 1)


def _draw(labels: torch.Tensor, size: int, gen: torch.Generator,
          spec: SyntheticSpec = SyntheticSpec()) -> torch.Tensor:
    """Draw one chunk of car images, vectorised over the batch. Returns uint8 (N, 3, S, S)."""
    import torch

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
    base = _palette(spec.colour)[labels].view(n, 3, 1, 1)
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
    if spec.noise > 0:  # no draw at 0: the default set stays bit-identical
        img = img + spec.noise * torch.randn(img.shape, generator=gen)
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def make_synthetic(n: int, image_size: int, seed: int = 0,
                   spec: SyntheticSpec | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `n` vehicle images of `image_size` px: the same images for the same arguments.

    Args:
        spec: the task's knobs (a SyntheticSpec or its `synthetic:...` string); None: defaults.

    Returns:
        images uint8 (n, 3, S, S) and labels int64 (n,) indexing `COLOUR_CLASSES`.
    """
    import torch

    if not isinstance(spec, SyntheticSpec):
        spec = parse_synthetic(spec or _SOURCE)
    gen = torch.Generator().manual_seed(seed)
    labels = _class_sequence(n, gen, spec.classes)
    chunk = max(16, (1 << 21) // (image_size * image_size))  # bounded temporaries at any size
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    for i in range(0, n, chunk):  # filled in place: no second full-size copy from a concat
        images[i : i + chunk] = _draw(labels[i : i + chunk], image_size, gen, spec)
    return images, labels
