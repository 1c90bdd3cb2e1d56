"""Every fusion head sizes itself from get_feature_channels() of every registered backbone."""

from __future__ import annotations

import pytest
import torch

from backbones import BACKBONES, LEVELS, create_backbone
from hpo.errors import UnknownNameError
from hpo.train.heads import HEADS, ConcatHead, LastHead, MSFFHead, VcrClassifier, build_head

NUM_CLASSES = 7


@pytest.fixture(autouse=True)
def _one_thread():
    # Other test processes share the two cores: oversubscribed OpenMP threads spin (25x slower).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
_built: dict[str, object] = {}


def _backbone(name: str):
    """One backbone at a time (the big timm models are slow to build on two cores)."""
    if name not in _built:
        _built.clear()
        _built[name] = create_backbone(name).eval()
    return _built[name]


def _input_width(head, channels):
    if isinstance(head, LastHead):
        return head.fc.in_features, channels["c5"]
    if isinstance(head, ConcatHead):
        return head.fc.in_features, sum(channels.values())
    assert isinstance(head, MSFFHead)
    return ({k: head.lateral[k].in_channels for k in LEVELS}, channels)


@pytest.mark.parametrize("fusion", HEADS.names())
@pytest.mark.parametrize("name", BACKBONES.names())
def test_head_sizes_itself_for_backbone(name, fusion):
    backbone = _backbone(name)
    channels = backbone.get_feature_channels()
    head = build_head(fusion, channels, NUM_CLASSES, dropout=0.2)
    got, expected = _input_width(head, channels)
    assert got == expected
    model = VcrClassifier(backbone, head).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()


def test_heads_registry_names():
    assert HEADS.names() == ["last", "msff", "simple_concat"]


def test_unknown_fusion_lists_options():
    with pytest.raises(UnknownNameError, match="Options: last, msff, simple_concat"):
        build_head("concat", {"c2": 8, "c3": 8, "c4": 8, "c5": 8}, 3, 0.0)


def test_frozen_backbone_gets_no_gradient_and_keeps_batchnorm_statistics():
    backbone = create_backbone("resnet18")
    head = build_head("msff", backbone.get_feature_channels(), 3, 0.0)
    model = VcrClassifier(backbone, head, freeze_backbone=True).train()
    assert not backbone.training and head.training
    stats = backbone.stem[1].running_mean.clone()
    loss = model(torch.randn(4, 3, 64, 64)).sum()
    loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None for p in head.parameters())
    assert torch.equal(backbone.stem[1].running_mean, stats)


def test_dropout_is_applied_in_training_only():
    channels = {"c2": 4, "c3": 4, "c4": 4, "c5": 16}
    head = build_head("last", channels, 3, dropout=0.5)
    feats = {k: torch.ones(8, c, 2, 2) for k, c in channels.items()}
    head.eval()
    assert torch.equal(head(feats), head(feats))
    head.train()
    assert not torch.equal(head(feats), head(feats))
