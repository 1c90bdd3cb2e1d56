"""Every registered backbone honours the contract, checked against a real forward pass.

Channels and strides as each backbone reports them (timm's feature_info, a dry run at 64 px for
torchvision) are compared with the tensors a forward pass at another size really returns.
"""

from __future__ import annotations

import pytest
import torch

from backbones import (
    BACKBONES,
    LEVEL_STRIDES,
    LEVELS,
    BackboneFactory,
    BaseBackbone,
    ConfigError,
    create_backbone,
)

SIZE = 96  # not the 64 px of ResNet's dry run; divisible by 32, so each stride divides it


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name):
    entry = BACKBONES.get(name)
    backbone = create_backbone(name, pretrained=False, return_nodes=True).eval()
    assert isinstance(backbone, entry.build) and isinstance(backbone, BaseBackbone)
    assert (backbone.name, backbone.family) == (name, entry.family)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        feats = backbone(x)
    assert isinstance(feats, dict) and list(feats) == list(LEVELS)
    sides = {level: tuple(f.shape[-2:]) for level, f in feats.items()}
    assert all(h == w and SIZE % h == 0 for h, w in sides.values()), sides
    measured_strides = {level: SIZE // h for level, (h, _) in sides.items()}
    measured_channels = {level: int(f.shape[1]) for level, f in feats.items()}
    assert backbone.get_feature_strides() == measured_strides == LEVEL_STRIDES
    assert backbone.get_feature_channels() == measured_channels
    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == {
        k: (measured_channels[k], measured_strides[k]) for k in LEVELS
    }
    assert all(f.shape[0] == 2 and torch.isfinite(f).all() for f in feats.values())
    assert backbone.out_channels == measured_channels["c5"]

    pooled = create_backbone(name, return_nodes=False)
    pooled.load_state_dict(backbone.state_dict())
    # forward() branches on `output` alone, so these two modes are what output= selects too
    assert (backbone.output, pooled.output, pooled.return_nodes) == ("features", "pooled", False)
    with torch.no_grad():
        vec = pooled.eval()(x)
    assert vec.shape == (2, measured_channels["c5"]) and torch.isfinite(vec).all()
    assert torch.allclose(vec, feats["c5"].mean(dim=(2, 3)), atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "resnet10t"])  # one per family class; builds cost
def test_return_nodes_builds_what_output_builds(name):
    x = torch.randn(1, 3, 64, 64)
    for nodes, output in ((False, "pooled"), (True, "features")):
        built = []
        for make in (lambda: BackboneFactory.create(name, {"return_nodes": nodes}),  # noqa: B023
                     lambda: create_backbone(name, output=output),  # noqa: B023
                     lambda: create_backbone(name, output=output, return_nodes=nodes)):  # noqa: B023
            torch.manual_seed(0)
            b = make().eval()
            with torch.no_grad():
                out = b(x)
            flat = torch.cat([out[k].flatten() for k in LEVELS]) if nodes else out
            built.append((b.output, b.return_nodes, flat))
        assert [(m, n) for m, n, _ in built] == [(output, nodes)] * 3
        assert all(torch.equal(built[0][2], o) for _, _, o in built[1:])


@pytest.mark.parametrize("name", BACKBONES.names())
@pytest.mark.parametrize("kwargs, rule", [
    ({"output": "pooled", "return_nodes": True},
     "return_nodes=True asks for output='features', got output='pooled' as well"),
    ({"output": "features", "return_nodes": False},
     "return_nodes=False asks for output='pooled', got output='features' as well"),
    ({"return_nodes": "yes"}, "return_nodes must be true (c2..c5) or false (pooled), got 'yes'"),
    ({"output": "vector"}, "output must be 'features' or 'pooled', got 'vector'"),
])
def test_conflicting_or_bad_output_keywords_are_one_clear_error(name, kwargs, rule):
    with pytest.raises(ConfigError) as err:
        create_backbone(name, **kwargs)
    assert str(err.value).startswith(f"backbone {name}: {rule}")


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_family_is_the_registered_class_family(name):
    entry = BACKBONES.get(name)
    assert entry.family == _family_in_source(name)  # what torch-free lookups read agrees
    assert entry.build.family == entry.family  # the class's own label agrees with the registry


def _family_in_source(name: str) -> str:
    from backbones import BACKBONE_NAMES

    return next(str(r.keywords["family"]) for r in BACKBONE_NAMES.registrations() if name in r.names)
