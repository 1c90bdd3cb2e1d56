"""Pretrained weights a space may ask for are checked at validation time, before any training."""

from __future__ import annotations

import pytest

from backbones import ResNetBackbone
from hpo.cli import main
from hpo.space import SearchSpaceError, parse_search_space

_SPACE = """\
study: {{name: w, metric: val_acc, direction: maximize, n_trials: 2}}
hyperparameters:
  backbone: {{type: categorical, choices: [resnet18, efficientnet_b0]}}
  lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
fixed:
{fixed}
"""


def test_missing_pretrained_weights_name_each_backbone(weight_caches, no_network):
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(_SPACE.format(fixed="  pretrained: true"), source="s.yaml")
    errors = info.value.errors
    assert len(errors) == 2
    assert errors[0].startswith("s.yaml: hyperparameters.backbone.choices[0] (line 3): resnet18")
    assert "expected" in errors[0] and str(ResNetBackbone.expected_weights_path("resnet18")) in errors[0]
    assert "efficientnet_b0" in errors[1]


def test_weights_present_or_not_pretrained_pass(weight_caches, tmp_path):
    parse_search_space(_SPACE.format(fixed="  pretrained: false"))
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    parse_search_space(_SPACE.format(fixed=f"  pretrained: true\n  weights: {weights}"))


def test_missing_weights_file_through_cli(weight_caches, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(_SPACE.format(fixed=f"  pretrained: true\n  weights: {tmp_path / 'none.pth'}"))
    assert main(["validate", "--space", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fixed.weights" in err[0] and "file not found" in err[0]
