"""Every registered backbone honours the contract: c2..c5 at strides 4..32, channels as reported."""

from __future__ import annotations

import pytest
import torch

from backbones import BACKBONES, LEVEL_STRIDES, LEVELS, BaseBackbone, create_backbone


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name):
    backbone = create_backbone(name, pretrained=False)
    assert isinstance(backbone, BaseBackbone)
    backbone.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = backbone(x)
        pooled = create_backbone(name, output="pooled").eval()(x)
    channels = backbone.get_feature_channels()
    strides = backbone.get_feature_strides()
    assert list(feats) == list(LEVELS)
    assert strides == LEVEL_STRIDES
    for level, fmap in feats.items():
        assert fmap.shape[0] == 2
        assert fmap.shape[1] == channels[level]
        assert tuple(fmap.shape[-2:]) == (64 // strides[level], 64 // strides[level])
        assert torch.isfinite(fmap).all()
    assert pooled.shape == (2, channels["c5"])
    assert torch.isfinite(pooled).all()
    assert backbone.out_channels == channels["c5"]


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_family_registered(name):
    entry = BACKBONES.get(name)
    assert entry.family in {"resnet", "efficientnet", "timm"}
    assert entry.name == name
