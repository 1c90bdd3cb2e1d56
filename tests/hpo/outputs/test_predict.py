"""`vcr-hpo predict` on a model trained by `vcr-hpo train`: rows, accuracy, bad input."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from PIL import Image

from hpo.cli import main
from hpo.data import COLOUR_CLASSES, make_synthetic
from tests._threads import one_thread

pytestmark = pytest.mark.usefixtures("one_thread")  # tests._threads

CLASSES = [c[0] for c in COLOUR_CLASSES]


def _image_folder(root, n=120, size=40):
    """train/ + val/ ImageFolder of synthetic cars saved as PNG at 40 px (trained at 32)."""
    images, labels = make_synthetic(n, size, seed=3)
    for i, (img, lab) in enumerate(zip(images, labels.tolist())):
        split = "val" if i % 4 == 0 else "train"
        folder = root / split / CLASSES[lab]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    # a class present in train but not val would break nothing; keep every val class in train
    for d in (root / "val").iterdir():
        assert (root / "train" / d.name).is_dir()
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder, run folder) of a 2-epoch resnet10t trained by `vcr-hpo train`."""
    root = tmp_path_factory.mktemp("predict")
    data = _image_folder(root / "cars")
    config = root / "best.yaml"
    config.write_text(yaml.safe_dump({
        "backbone": "resnet10t", "data": str(data), "image_size": 32, "epochs": 2,
        "batch_size": 16, "device": "cpu", "lr": 0.003, "scheduler": "none"}))
    run = root / "run"
    with one_thread():
        assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    return data, run


@pytest.mark.slow
def test_predict_on_the_val_split_gets_the_val_accuracy_the_run_measured(trained, tmp_path,
                                                                         capsys):
    data, run = trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["info"]["class_names"] == sorted(p.name for p in (data / "train").iterdir())
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(run), "--images", str(data / "val"), "-o", str(out),
                 "--device", "cpu"]) == 0
    rows = list(csv.DictReader(out.open()))
    val_files = sorted(str(p) for p in (data / "val").rglob("*.png"))
    assert sorted(r["path"] for r in rows) == val_files  # one row per image
    assert list(rows[0]) == ["path", "predicted", "probability", "label", "correct"]
    assert all(r["predicted"] in metrics["info"]["class_names"] for r in rows)
    assert all(0 < float(r["probability"]) <= 1 for r in rows)
    right = sum(r["correct"] == "true" for r in rows)
    assert len(rows) == metrics["info"]["num_val"]
    # model.pt holds the final epoch's weights: predict must see what that epoch's validation saw
    final = metrics["history"][-1]["val_acc"]
    assert right / len(rows) == pytest.approx(final, abs=1e-12)
    printed = capsys.readouterr().out
    assert f"accuracy {final:.4f} ({right}/{len(rows)} labelled)" in printed


@pytest.mark.slow
def test_predict_unlabelled_folder_and_manifest(trained, tmp_path):
    data, run = trained
    flat = tmp_path / "flat"
    flat.mkdir()
    some = sorted((data / "val").rglob("*.png"))[:5]
    for p in some:
        (flat / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "flat.csv"
    assert main(["predict", "--model", str(run), "--images", str(flat), "-o", str(out),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and list(rows[0]) == ["path", "predicted", "probability"]

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(p), "label": p.parent.name}) + "\n"
                                for p in some))
    assert main(["predict", "--model", str(run), "--images", str(manifest), "-o",
                 str(tmp_path / "m.csv"), "--quiet"]) == 0
    by_path = {r["path"]: r for r in csv.DictReader((tmp_path / "m.csv").open())}
    for p in some:  # same image, same prediction from a folder and from a manifest
        assert by_path[str(p)]["label"] == p.parent.name
        assert by_path[str(p)]["predicted"] == next(r for r in rows
                                                    if r["path"].endswith(p.name))["predicted"]


@pytest.mark.slow
@pytest.mark.parametrize("case, message", [
    ("no_model", "no such folder"),
    ("no_weights", "got no model.pt"),
    ("no_images", "no such file or folder"),
    ("empty", "at least one image, got none"),
    ("unreadable", "broken.png"),
    ("parent", "Give DIR/val or DIR/train"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(trained, tmp_path, capsys, case,
                                                          message):
    data, run = trained
    model, images = str(run), str(data / "val")
    if case == "no_model":
        model = str(tmp_path / "nope")
    elif case == "no_weights":
        (tmp_path / "m").mkdir()
        for f in ("config.yaml", "metrics.json"):
            (tmp_path / "m" / f).write_bytes((run / f).read_bytes())
        model = str(tmp_path / "m")
    elif case == "no_images":
        images = str(tmp_path / "missing")
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        images = str(tmp_path / "empty")
    elif case == "unreadable":
        (tmp_path / "imgs").mkdir()
        (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
        first = next((data / "val").rglob("*.png"))
        (tmp_path / "imgs" / "good.png").write_bytes(first.read_bytes())
        images = str(tmp_path / "imgs")
    elif case == "parent":
        images = str(data)
    out = tmp_path / "preds.csv"
    capsys.readouterr()
    assert main(["predict", "--model", model, "--images", images, "-o", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_best_then_train_init_weights_then_predict(tmp_path, capsys):
    """The closing loop: a study on an ImageFolder, `best` (config + kept weights), `train
    --init-weights`, `predict` on val/: one row per image, the accuracy the run measured."""
    data = _image_folder(tmp_path / "cars", n=100)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "study": {"name": "loop", "metric": "val_acc", "direction": "maximize", "n_trials": 1,
                  "sampler": {"type": "Random", "seed": 1}, "pruner": None},
        "hyperparameters": {"lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
        "fixed": {"backbone": "resnet10t", "data": str(data), "image_size": 32, "epochs": 1,
                  "batch_size": 16, "device": "cpu", "scheduler": "none"}}))
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    assert main(["run", "--space", str(space), "--storage", url, "--quiet"]) == 0
    best = tmp_path / "best.yaml"
    assert main(["best", "--storage", url, "-o", str(best)]) == 0
    assert best.with_suffix(".pt").is_file()  # the trial's kept final weights
    run = tmp_path / "run"
    assert main(["train", "--config", str(best), "--init-weights", str(best.with_suffix(".pt")),
                 "--out", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(run), "--images", str(data / "val"), "-o", str(out),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in (data / "val").rglob("*.png"))
    final = json.loads((run / "metrics.json").read_text())["history"][-1]["val_acc"]
    right = sum(r["correct"] == "true" for r in rows)
    assert right / len(rows) == pytest.approx(final, abs=1e-12)
    assert f"accuracy {final:.4f} ({right}/{len(rows)} labelled)" in capsys.readouterr().out
