"""Factory and registry: creation by name, option checking, unknown-name messages."""

from __future__ import annotations

import pytest

from backbones import (
    BACKBONES,
    BackboneFactory,
    ConfigError,
    EfficientNetBackbone,
    Registry,
    ResNetBackbone,
    UnknownNameError,
    create_backbone,
    list_backbones,
)


def test_registry_lists_required_backbones():
    required = {"resnet18", "resnet34", "resnet50", "convnext_tiny", "mobilenetv3_large_100",
                "resnet10t"} | {f"efficientnet_b{i}" for i in range(8)}
    assert required <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


def test_unknown_backbone_lists_options_and_closest_match():
    with pytest.raises(UnknownNameError) as info:
        BackboneFactory.create("resnet51", {})
    msg = str(info.value)
    assert "Did you mean 'resnet50'" in msg
    for name in BACKBONES.names():
        assert name in msg
    assert isinstance(info.value, LookupError) and not isinstance(info.value, KeyError)


def test_unknown_option_is_config_error():
    with pytest.raises(ConfigError, match="unknown option"):
        create_backbone("resnet18", pretrianed=True)


def test_factory_returns_family_classes():
    assert isinstance(BackboneFactory.create("resnet18"), ResNetBackbone)
    assert isinstance(BackboneFactory.create("efficientnet_b0"), EfficientNetBackbone)


def test_bad_output_mode():
    with pytest.raises(ConfigError, match="output must be"):
        ResNetBackbone("resnet18", output="vector")


def test_registry_rejects_duplicates():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    assert reg.get("a") == 1 and "a" in reg and len(reg) == 1
