"""Offline pretrained weights: torch hub cache, Hugging Face cache, explicit file, clear errors."""

from __future__ import annotations

import time

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from backbones import (
    BACKBONES,
    BackboneFactory,
    ResNetBackbone,
    WeightsNotFoundError,
    create_backbone,
    find_pretrained_weights,
)


def _assert_params_equal(backbone, state, prefix_map):
    """Every backbone parameter equals the file's tensor under the mapped name."""
    own = backbone.state_dict()
    checked = 0
    for key, value in own.items():
        src = prefix_map(key)
        if src in state:
            assert torch.equal(value, state[src]), key
            checked += 1
    assert checked >= len(own) * 0.9, (checked, len(own))


def _resnet_key(key: str) -> str:
    """ResNetBackbone names -> torchvision resnet names."""
    for ours, theirs in (("stem.0.", "conv1."), ("stem.1.", "bn1.")):
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


def _random_resnet_state(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    model = torchvision.models.get_model(name, weights=None)
    for p in model.parameters():  # make the file clearly different from a fresh init
        p.data.normal_()
    return model.state_dict()


def test_seed_factory_example_loads_torch_hub_cache(weight_caches, no_network):
    torch_home, _ = weight_caches
    state = _random_resnet_state("resnet50")
    path = ResNetBackbone.expected_weights_path("resnet50")
    assert str(path).startswith(str(torch_home))
    path.parent.mkdir(parents=True)
    torch.save(state, path)

    # The seed's "Using Factory" example, with src.core -> backbones.
    backbone = BackboneFactory.create("resnet50", {"pretrained": True})
    _assert_params_equal(backbone, state, _resnet_key)
    dummy_input = torch.randn(1, 3, 224, 224)
    features = backbone(dummy_input)
    assert backbone.get_feature_channels()["c5"] == 2048
    assert features["c5"].shape == (1, 2048, 7, 7)

    # The seed's "Direct Instantiation" example, with src.backbones -> backbones.
    backbone = ResNetBackbone("resnet50", pretrained=True)
    _assert_params_equal(backbone, state, _resnet_key)
    features = backbone(dummy_input)
    assert set(features) == {"c2", "c3", "c4", "c5"}


def test_explicit_weights_file(tmp_path, weight_caches, no_network):
    state = _random_resnet_state("resnet18")
    path = tmp_path / "my_resnet18.pth"
    torch.save(state, path)
    backbone = create_backbone("resnet18", weights=str(path))
    _assert_params_equal(backbone, state, _resnet_key)


def test_timm_weights_from_hf_cache(weight_caches, no_network):
    _, hf_home = weight_caches
    name = "efficientnet_b0"
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    torch.manual_seed(7)
    model = timm.create_model(name)
    for p in model.parameters():
        p.data.normal_()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    repo_dir = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0123abcd")
    save_file(state, str(snap / "model.safetensors"))

    backbone = create_backbone(name, pretrained=True)
    _assert_params_equal(backbone, state, lambda k: k.removeprefix("body."))


def test_timm_explicit_weights_file(tmp_path, weight_caches, no_network):
    model = timm.create_model("resnet10t")
    for p in model.parameters():
        p.data.normal_()
    path = tmp_path / "r10t.pth"
    torch.save(model.state_dict(), path)
    backbone = create_backbone("resnet10t", weights=str(path))
    _assert_params_equal(backbone, model.state_dict(), lambda k: k.removeprefix("body."))


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_tiny", "efficientnet_b7"])
def test_missing_weights_fail_fast_offline(name, weight_caches, no_network):
    torch_home, hf_home = weight_caches
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone(name, pretrained=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    msg = str(info.value)
    assert name in msg
    if name != "efficientnet_b7":  # timm has no weights of its own for b6/b7
        assert str(torch_home) in msg or str(hf_home) in msg
        assert "expected" in msg
    else:
        assert "weights:" in msg


def test_missing_explicit_file(tmp_path, no_network):
    with pytest.raises(WeightsNotFoundError, match="file not found"):
        create_backbone("resnet18", weights=str(tmp_path / "nope.pth"))


@pytest.mark.parametrize("name", BACKBONES.names())
def test_find_pretrained_weights_offline(name, weight_caches, no_network):
    """Every backbone answers "where are your weights?" at once, without building a model."""
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        find_pretrained_weights(name)
    assert time.perf_counter() - start < 2.0
    assert name in str(info.value) and "weights:" in str(info.value)


def test_find_pretrained_weights_present(weight_caches, tmp_path):
    path = ResNetBackbone.expected_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert find_pretrained_weights("resnet18") == path
    explicit = tmp_path / "w.pth"
    explicit.write_bytes(b"x")
    assert find_pretrained_weights("efficientnet_b6", explicit) == explicit
