"""Preflight: facts about this machine (device, data, driver, weights) stop `run`, `validate`
and `train` with one line and exit 2 before any storage is touched."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from backbones import ResNetBackbone
from hpo.cli import main
from hpo.errors import ConfigError
from hpo.run.preflight import check_storage_driver, check_weights, weight_backbones
from hpo.space import parse_search_space

_SPACE = """\
study: {{name: w, metric: val_acc, direction: maximize, n_trials: 2}}
hyperparameters:
  backbone: {{type: categorical, choices: [resnet18, efficientnet_b0]}}
  lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
{extra}fixed:
{fixed}
"""


@pytest.fixture(autouse=True)
def _cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default storage is ./studies/<study>.db


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _baseline(space):
    return space.config_for(space.baseline())


def test_missing_pretrained_weights_name_every_backbone_choice(weight_caches, no_network):
    space = parse_search_space(_SPACE.format(extra="", fixed="  pretrained: false"),
                               source="s.yaml")
    cfg = _baseline(space).replace(pretrained=True)
    assert [n for n, _ in weight_backbones(space, cfg)] == ["resnet18", "efficientnet_b0"]
    with pytest.raises(ConfigError) as info:
        check_weights(space, cfg, where="s.yaml")
    text = str(info.value)
    assert text.startswith("s.yaml: hyperparameters.backbone.choices[0]: ")
    assert str(ResNetBackbone.expected_weights_path("resnet18")) in text
    assert weight_backbones(space, _baseline(space)) == []  # not pretrained: nothing to check


def test_searched_pretrained_counts_as_asking_for_weights(weight_caches, no_network):
    import dataclasses

    space = parse_search_space(_SPACE.format(extra="", fixed="  epochs: 1"))
    # pretrained: {type: categorical, choices: [false, true]}, built from a parsed categorical
    # (a parser that still checks weight files would refuse the YAML before preflight runs)
    searched = dataclasses.replace(space.param("backbone"), name="pretrained", choices=(False, True))
    space = dataclasses.replace(space, params=(*space.params, searched))
    assert len(weight_backbones(space, _baseline(space))) == 2
    with pytest.raises(ConfigError, match="resnet18"):
        check_weights(space, _baseline(space), where="s.yaml")


def test_weights_file_present_passes_and_is_the_file_checked(weight_caches, tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    space = parse_search_space(_SPACE.format(extra="", fixed=f"  pretrained: true\n  weights: {weights}"))
    assert [name for name, _ in weight_backbones(space, _baseline(space))] == [
        "resnet18", "efficientnet_b0"]
    check_weights(space, _baseline(space), where="s.yaml")
    weights.unlink()  # the same space without the file: the check looked at that file
    with pytest.raises(ConfigError, match=r"fixed\.weights.*w\.pth"):
        check_weights(space, _baseline(space), where="s.yaml")


def test_missing_weights_file_through_validate(weight_caches, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(_SPACE.format(extra="", fixed=f"  pretrained: true\n  weights: {tmp_path / 'none.pth'}"))
    assert main(["validate", "--space", str(path)]) == 2
    line = _one_line(capsys)
    assert "fixed.weights" in line and "file not found" in line


def test_missing_weights_override_through_run(weight_caches, tiny_space, tmp_path, capsys):
    assert main(["run", "--space", str(tiny_space()), "--set", "pretrained=true", "--set",
                 f"weights={tmp_path / 'none.pth'}"]) == 2
    assert _one_line(capsys).startswith("error: --set weights: ")
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("command", ["run", "validate"])
def test_absent_cuda_device_exits_2_and_writes_nothing(command, tiny_space, tmp_path, capsys):
    absent = f"cuda:{max(torch.cuda.device_count(), 7)}"  # no such GPU, even with 8 or more
    argv = [command, "--space", str(tiny_space())]
    if command == "run":
        argv += ["--device", absent]
    else:
        text = tiny_space().read_text().replace("device: cpu", f"device: {absent}")
        (tmp_path / "gpu.yaml").write_text(text)
        argv = [command, "--space", str(tmp_path / "gpu.yaml")]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert absent in line and "CUDA device present here" in line
    assert not (tmp_path / "studies").exists()


def _image_folder(root):
    for cls, colour in (("red", (200, 20, 20)), ("blue", (20, 20, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), colour).save(root / cls / f"{i}.png")
    (root / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    return root


def test_undecodable_image_exits_2_before_training_and_names_it(tiny_space, tmp_path, capsys):
    data = _image_folder(tmp_path / "cars")
    assert main(["run", "--space", str(tiny_space()), "--data", str(data)]) == 2
    line = _one_line(capsys)
    assert "broken.jpg" in line and "1 unreadable" in line
    assert not (tmp_path / "studies").exists()


def test_undecodable_image_stops_train_too(tmp_path, capsys):
    data = _image_folder(tmp_path / "cars")
    config = tmp_path / "best.yaml"
    config.write_text(f"backbone: resnet10t\nepochs: 1\nimage_size: 32\ndata: {data}\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "broken.jpg" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_storage_without_its_driver_is_one_line(tiny_space, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # missing, installed or not
    url = "mysql://user:secret@localhost/vcr"
    assert main(["run", "--space", str(tiny_space()), "--storage", url]) == 2
    line = _one_line(capsys)
    assert "driver is not installed" in line and "MySQLdb" in line and "secret" not in line
    assert not (tmp_path / "studies").exists()
    with pytest.raises(ConfigError, match="unknown database driver"):
        check_storage_driver("postgresql+nosuchdriver://u@h/db")
