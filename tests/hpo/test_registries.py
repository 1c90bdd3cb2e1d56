"""A builder registered in one place is a choice everywhere: parsed in a space, built, listed.

For each registry the trainer reads by name (backbone, fusion, loss, optimizer, scheduler) a
dummy builder is registered at run time with the registry's own decorator, and nothing else is
touched: a space offers it, the trainer builds and steps with it, and an unknown name's message
lists it. A backbone family is also one file: a module dropped into `backbones/` is read from
source (no import) for the names and the family, and built on first use.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import backbones
from backbones import (
    BACKBONE_NAMES,
    BACKBONES,
    LEVEL_STRIDES,
    BaseBackbone,
    FeatureSpec,
    create_backbone,
    family_of,
    register_backbone,
)
from backbones.errors import ConfigError as BackboneConfigError
from hpo.config import check_field
from hpo.errors import UnknownNameError
from hpo.space import parse_search_space
from hpo.train import build_state
from hpo.train.heads import HEADS
from hpo.train.losses import LOSSES, EpochAware
from hpo.train.optim import OPTIMIZERS, SCHEDULERS

FIXED = {"backbone": "resnet10t", "data": "synthetic", "synthetic_size": 20, "image_size": 32,
         "batch_size": 4, "epochs": 1, "device": "cpu", "amp": False, "channels_last": False}


class DummyBackbone(BaseBackbone):
    """One strided conv per level: c2..c5 at strides 4..32, 8 channels each."""

    def __init__(self, name: str, pretrained: bool = False, **kwargs) -> None:
        super().__init__(name, **{k: v for k, v in kwargs.items() if k in ("output", "return_nodes")})
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 8, 8, 3, stride=4 if i == 0 else 2,
                                             padding=1) for i in range(4))
        self._specs = {lvl: FeatureSpec(8, s) for lvl, s in LEVEL_STRIDES.items()}

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for level, conv in zip(LEVEL_STRIDES, self.convs):
            x = out[level] = conv(x)
        return out


class DummyHead(nn.Module):
    def __init__(self, channels, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(channels["c5"], num_classes)

    def forward(self, feats):
        return self.fc(feats["c5"].mean(dim=(2, 3)))


class DummyLoss(EpochAware):
    def __init__(self, label_smoothing: float, class_counts) -> None:
        super().__init__()
        self.label_smoothing, self.class_counts = label_smoothing, list(class_counts)

    def forward(self, logits, target):
        return nn.functional.cross_entropy(logits, target, label_smoothing=self.label_smoothing)


class DummyOptimizer(torch.optim.SGD):
    pass


def _dummy_optimizer(params, lr, weight_decay, momentum, fused):
    return DummyOptimizer(params, lr=lr)


def _half(progress: float) -> float:
    return 0.5


# field, registry, the one registration, how the built state shows the dummy
CASES = {
    "backbone": (BACKBONES, lambda n: register_backbone((n,), family="dummy")(DummyBackbone),
                 lambda s: isinstance(s.model.backbone, DummyBackbone) and s.model.backbone.family == "dummy"),
    "fusion": (HEADS, lambda n: HEADS.register(n, DummyHead),
               lambda s: isinstance(s.model.head, DummyHead)),
    "loss_fn": (LOSSES, lambda n: LOSSES.register(n, DummyLoss),
                lambda s: isinstance(s.criterion, DummyLoss) and s.criterion.label_smoothing == 0.1
                and sum(s.criterion.class_counts) == s.info.num_train),
    "optimizer": (OPTIMIZERS, lambda n: OPTIMIZERS.register(n, _dummy_optimizer),
                  lambda s: isinstance(s.optimizer, DummyOptimizer)),
    "scheduler": (SCHEDULERS, lambda n: SCHEDULERS.register(n, _half),
                  lambda s: s.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * s.cfg.lr)),
}


@pytest.fixture
def restore(monkeypatch):
    """Registrations made in a test are undone after it."""

    def keep(registry):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))

    return keep


@pytest.mark.parametrize("field", list(CASES))
def test_a_builder_registered_at_run_time_is_usable_end_to_end(field, restore):
    registry, register, shows = CASES[field]
    restore(registry)
    name = "zzdummy"
    assert name not in registry
    register(name)

    with pytest.raises(UnknownNameError) as err:  # listed among the options, and the close match
        check_field(field, "zzdumy", where="s.yaml")
    assert f"Did you mean {name!r}" in str(err.value) and f", {name}" in str(err.value)

    other = next(n for n in registry.names() if n != name)
    fixed = {k: v for k, v in {**FIXED, "label_smoothing": 0.1}.items() if k != field}
    space = parse_search_space(
        f"hyperparameters:\n  {field}: {{type: categorical, choices: [{name}, {other}], "
        f"default: {name}}}\nfixed: {fixed}\n".replace("'", ""), source="s.yaml")
    assert space.param(field).choices == (name, other)
    cfg = space.config_for(space.baseline())
    assert getattr(cfg, field) == name

    state = build_state(cfg)
    assert shows(state)
    x, y = state.data.train_x[:4].float() / 255, state.data.train_y[:4]
    loss = state.criterion(state.model(x), y)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    assert torch.isfinite(loss)


FAMILY_FILE = '''
from backbones import register_backbone
from backbones.base import BaseBackbone

NAMES = ("dropnet_s", "dropnet_m")


@register_backbone(NAMES, family="dropnet")
class DropNet(BaseBackbone):
    def __init__(self, name, pretrained=False, **kwargs):
        super().__init__(name)

    def forward_features(self, x):
        return {}
'''


def test_a_backbone_family_is_one_file_read_without_importing_it(tmp_path, monkeypatch, restore):
    (tmp_path / "dropnet.py").write_text(FAMILY_FILE)
    monkeypatch.setattr(backbones, "__path__", [*backbones.__path__, str(tmp_path)])
    monkeypatch.setattr(BACKBONE_NAMES, "_scanned", None)  # read the package again
    monkeypatch.delitem(sys.modules, "backbones.dropnet", raising=False)
    restore(BACKBONES)

    assert {"dropnet_s", "dropnet_m"} <= set(BACKBONE_NAMES.names())
    assert family_of("dropnet_m") == "dropnet" and "backbones.dropnet" not in sys.modules
    assert check_field("backbone", "dropnet_s") == "dropnet_s"
    with pytest.raises(UnknownNameError, match="Did you mean 'dropnet_s'.*dropnet_m"):
        check_field("backbone", "dropnet_z")

    built = create_backbone("dropnet_s")  # the factory imports the module on first use
    assert type(built).__name__ == "DropNet" and built.family == "dropnet"
    assert "dropnet_m" in BACKBONES and BACKBONES.get("dropnet_m").family == "dropnet"


def test_a_registration_whose_names_are_computed_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "badnet.py").write_text(FAMILY_FILE.replace(
        'NAMES = ("dropnet_s", "dropnet_m")', 'NAMES = tuple(f"badnet_{s}" for s in "sm")'))
    monkeypatch.syspath_prepend(str(tmp_path))
    from backbones._names import scan_registrations

    with pytest.raises(BackboneConfigError) as err:
        scan_registrations("badnet", "register_backbone")
    msg = str(err.value)
    assert "badnet.py:8: register_backbone: names must be literal strings" in msg
    assert "got NAMES" in msg and "\n" not in msg


def test_every_loss_takes_trainer_fields_only():
    import inspect

    from hpo.config import FIELD_NAMES

    for name in LOSSES.names():
        params = set(inspect.signature(LOSSES.get(name)).parameters) - {"class_counts"}
        assert params <= set(FIELD_NAMES), (name, params - set(FIELD_NAMES))

