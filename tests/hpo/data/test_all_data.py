"""`vcr-hpo train --all-data`: every image of the source trains, and no held-out score is claimed."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from hpo.cli import main
from hpo.config import TrainConfig
from hpo.data import load_dataset
from hpo.train import build_state

pytestmark = pytest.mark.usefixtures("one_thread")  # tests._threads

TINY = {"backbone": "resnet10t", "image_size": 32, "synthetic_size": 48, "batch_size": 16,
        "epochs": 1, "device": "cpu", "scheduler": "none", "max_train_samples": 20}


def _rows(images: torch.Tensor) -> list[bytes]:
    return sorted(bytes(img.numpy().tobytes()) for img in images)


def test_all_data_trains_on_every_image_of_the_source():
    cfg = TrainConfig.from_dict(TINY)
    split, every = load_dataset(cfg), load_dataset(cfg, all_data=True)
    assert len(split.train_labels) == 20 and len(split.val_labels) > 0  # a capped train split
    assert len(every.train_labels) == 48 and len(every.val_labels) == 0
    # the same images as the whole split layout (train block, val block), none twice
    laid = load_dataset(cfg.replace(max_train_samples=None))
    assert _rows(every.train_images) == _rows(torch.cat([laid.train_images, laid.val_images]))
    assert sum(every.class_counts) == 48
    state = build_state(cfg, data=every)
    assert not state.validated and len(state.data.train_y) == 48
    assert state.data.steps * state.data.batch == 48  # one epoch draws each image once


def test_train_all_data_writes_no_validation_metric(tmp_path, capsys):
    config = tmp_path / "best.yaml"
    config.write_text(yaml.safe_dump({**TINY, "epochs": 2}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--all-data"]) == 0
    text = (out / "metrics.json").read_text()
    metrics = json.loads(text)
    assert metrics["data"] == "all data, no validation" and metrics["epochs"] == 2
    assert metrics["info"]["num_train"] == 48 and metrics["info"]["num_val"] == 0
    assert [m["epoch"] for m in metrics["history"]] == [0, 1]
    assert "val_" not in text and "best" not in metrics  # no held-out score claimed
    printed = capsys.readouterr()
    assert "trained 2 epochs on all 48 images (all data, no validation)" in printed.out
    assert "max_train_samples=20 does not apply" in printed.err
    assert "val_acc" not in printed.err
