"""The synthetic task family: `data: synthetic:colour=..,noise=..,classes=..` knobs."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hpo.cli import main
from hpo.config import TrainConfig
from hpo.data import clear_memory_cache, load_dataset
from hpo.data._load import _source_key
from hpo.data._synthetic import COLOUR_CLASSES, _palette, make_synthetic, parse_synthetic
from hpo.errors import ConfigError
from hpo.run.preflight import check_data


def _digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


# Digests of make_synthetic before the knobs existed (commit e0434ad): the default set must not move.
PINNED = {
    (50, 32, 0): "124ad8d70455fc9b45920984a800f055c441dbfea85eb91a39ba0616a1119724",
    (40, 48, 3): "4e66319e90da9b21348117a1937d498d646d55cd39c03ab48869089e7a3f20b7",
}


@pytest.mark.parametrize("args", list(PINNED))
@pytest.mark.parametrize("spec", [None, "synthetic:colour=1,noise=0,classes=10"])
def test_default_knobs_draw_the_same_images_bit_for_bit(args, spec):
    n, size, seed = args
    assert _digest(*make_synthetic(n, size, seed=seed, spec=spec)) == PINNED[args]


def test_default_cache_key_is_unchanged_and_knobs_are_in_it():
    old = hashlib.sha256(b"synthetic:v1:1000|size=64").hexdigest()[:24]  # the key before knobs
    assert _source_key(TrainConfig(), None) == old
    keys = {_source_key(TrainConfig(data=d), None) for d in (
        "synthetic", "synthetic:colour=0.5", "synthetic:noise=0.1", "synthetic:classes=4",
        "synthetic:colour=0.5,classes=4")}
    assert len(keys) == 5
    # the same task spelled another way is the same cache entry
    assert _source_key(TrainConfig(data="synthetic:classes=4,colour=0.5"), None) == \
        _source_key(TrainConfig(data="synthetic:colour=0.50,classes=4"), None)


def test_colour_distance_moves_the_paint_toward_the_mean_and_changes_the_images():
    base, labels = make_synthetic(60, 32, seed=0)
    close, close_labels = make_synthetic(60, 32, seed=0, spec="synthetic:colour=0.5")
    assert torch.equal(labels, close_labels)  # same cars, other paint
    assert not torch.equal(base, close)
    full, half = _palette(1.0), _palette(0.5)
    assert torch.allclose(torch.cdist(half, half), 0.5 * torch.cdist(full, full), atol=1e-6)


def test_noise_level_adds_pixel_noise():
    base, labels = make_synthetic(30, 32, seed=0)
    noisy, noisy_labels = make_synthetic(30, 32, seed=0, spec="synthetic:noise=0.2")
    assert torch.equal(labels, noisy_labels)
    diff = noisy.float() - base.float()
    assert 0.1 * 255 < diff.std() < 0.3 * 255


def test_class_count_keeps_the_most_common_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("VCR_HPO_CACHE", str(tmp_path / "cache"))
    clear_memory_cache()
    _, labels = make_synthetic(80, 32, seed=0, spec="synthetic:classes=4")
    assert sorted(labels.unique().tolist()) == [0, 1, 2, 3]
    splits = load_dataset(TrainConfig(data="synthetic:classes=4", synthetic_size=80, image_size=32))
    assert splits.class_names == tuple(c[0] for c in COLOUR_CLASSES[:4])
    assert splits.num_classes == 4 and int(splits.train_labels.max()) == 3
    assert set(splits.val_labels.tolist()) == {0, 1, 2, 3}
    full = load_dataset(TrainConfig(synthetic_size=80, image_size=32))
    assert full.num_classes == 10
    clear_memory_cache()


@pytest.mark.parametrize("data, rule", [
    ("synthetic:color=0.5", "unknown synthetic knob, got 'color'"),
    ("synthetic:colour=0", "colour must be a number in (0, 2]"),
    ("synthetic:colour=3", "colour must be a number in (0, 2]"),
    ("synthetic:noise=-0.1", "noise must be a number in [0, 1]"),
    ("synthetic:noise=abc", "noise must be a number in [0, 1]"),
    ("synthetic:classes=1", "classes must be a whole number in [2, 10]"),
    ("synthetic:classes=4.5", "classes must be a whole number in [2, 10]"),
    ("synthetic:classes", "classes must be a whole number in [2, 10]"),
    ("synthetic:classes=4,classes=5", "each knob once"),
])
def test_bad_knob_is_one_line_error(data, rule):
    with pytest.raises(ConfigError) as info:
        parse_synthetic(data)
    assert rule in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="fixed.data"):
        check_data(data, where="s.yaml: fixed.data")


def test_bad_knob_in_a_space_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(
        "hyperparameters:\n  lr: {type: float, low: 0.001, high: 0.01}\n"
        "fixed:\n  data: synthetic:colour=0.5,nois=0.1\n")
    assert main(["validate", "--space", "s.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown synthetic knob, got 'nois'" in err
    assert "Did you mean 'noise'?" in err and "fixed.data" in err
