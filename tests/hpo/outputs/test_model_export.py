"""`vcr-hpo export`: ONNX and TorchScript files that answer as the torch model, their metadata,
measured latency, predict from the exported file, and bad input."""

from __future__ import annotations

import copy
import csv
import json
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hpo.cli import main
from hpo.data import COLOUR_CLASSES, load_dataset, make_synthetic
from hpo.outputs.model_export import PARITY_TOLERANCE
from hpo.outputs.model_formats import FORMATS, load_exported, read_metadata
from hpo.outputs.predict import load_trained
from hpo.train import normalise
from hpo.train._augment import MEAN, STD
from tests._threads import one_thread

pytestmark = pytest.mark.usefixtures("one_thread")  # tests._threads

CLASSES = [c[0] for c in COLOUR_CLASSES]


def _train(root, **cfg):
    """The folder `vcr-hpo train` writes for a tiny config (cpu, 32 px)."""
    config = root / "best.yaml"
    config.write_text(yaml.safe_dump({"image_size": 32, "batch_size": 16, "device": "cpu",
                                      "scheduler": "none", "lr": 0.003, **cfg}))
    run = root / "run"
    with one_thread():
        assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A resnet10t trained one epoch on 48 synthetic images (a few seconds)."""
    return _train(tmp_path_factory.mktemp("tiny"), backbone="resnet10t", epochs=1,
                  synthetic_size=48)


def _image_folder(root, n=96, size=40):
    """train/ + val/ ImageFolder of synthetic cars saved as PNG at 40 px (trained at 32)."""
    images, labels = make_synthetic(n, size, seed=3)
    for i, (img, lab) in enumerate(zip(images, labels.tolist())):
        folder = root / ("val" if i % 4 == 0 else "train") / CLASSES[lab]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module", params=["resnet18", "resnet10t"])
def trained(request, tmp_path_factory):
    """(data folder, run folder) of a torchvision (resnet18) and a timm (resnet10t) backbone."""
    root = tmp_path_factory.mktemp(request.param)
    data = _image_folder(root / "cars")
    return data, _train(root, backbone=request.param, data=str(data), epochs=2, lr=0.001,
                        fusion="msff" if request.param == "resnet10t" else "last")


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --------------------------------------------------------------------------- parity, metadata


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_the_torch_model_and_records_metadata_and_latency(trained, fmt, capsys):
    _data, run = trained
    assert main(["export", "--model", str(run), "--format", fmt]) == 0
    path = run / f"model{FORMATS.get(fmt).suffix}"
    beside = json.loads((run / f"{path.name}.json").read_text())
    assert read_metadata(path) == beside  # inside the file and beside it: the same document
    cfg = load_trained(run, device="cpu").cfg
    assert beside["format"] == fmt and beside["backbone"] == cfg.backbone
    assert beside["class_names"] == json.loads((run / "metrics.json").read_text())["info"][
        "class_names"]
    pre = beside["preprocessing"]
    assert pre["image_size"] == 32 and pre["mean"] == list(MEAN) and pre["std"] == list(STD)
    parity = beside["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= PARITY_TOLERANCE == parity["tolerance"]
    assert parity["batch"] == 24 and "val split" in parity["images"]  # the model's own val images
    assert beside["config"] == cfg.to_dict()

    # independently of the recorded number: the file against the torch model on the val split
    module, _ = load_exported(path)
    torch_model = load_trained(run, device="cpu").model
    val = normalise(load_dataset(cfg).val_images)
    with torch.inference_mode():
        want, got = torch_model(val), module(val)
    assert got.shape == want.shape == (24, len(beside["class_names"]))  # dynamic batch axis
    assert float((got - want).abs().max()) <= PARITY_TOLERANCE
    with torch.inference_mode():  # batch 1 works too
        assert float((module(val[:1]) - torch_model(val[:1])).abs().max()) <= PARITY_TOLERANCE

    lat = beside["latency"]
    runs = {(r["batch"], r["threads"]): r for r in lat["runs"]}
    every = lat["threads_available"]
    assert set(runs) == {(b, t) for b in (1, 32) for t in {1, every}}
    for (batch, _), r in runs.items():
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["reps"] >= 5
        assert r["p50_ms_per_image"] == pytest.approx(r["p50_ms"] / batch, abs=1e-3)
    assert lat["device"] == "cpu" and lat["input"] == [3, 32, 32]
    out = capsys.readouterr()
    assert f"{fmt} -> {path}" in out.out and "latency batch 32, 1 thread(s): p50" in out.err


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_predict_from_the_exported_file_equals_predict_from_the_torch_model(trained, fmt,
                                                                            tmp_path):
    data, run = trained
    path = run / f"model{FORMATS.get(fmt).suffix}"
    if not path.exists():
        assert main(["export", "--model", str(run), "--format", fmt, "-o", str(path)]) == 0
    rows = {}
    for name, model in (("torch", run), (fmt, path)):
        out = tmp_path / f"{name}.csv"
        assert main(["predict", "--model", str(model), "--images", str(data / "val"), "-o",
                     str(out), "--quiet", "--device", "cpu"]) == 0
        rows[name] = list(csv.DictReader(out.open()))
    assert len(rows["torch"]) == 24
    for a, b in zip(rows["torch"], rows[fmt], strict=True):
        assert (a["path"], a["predicted"], a["label"]) == (b["path"], b["predicted"], b["label"])
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=2e-6)


# --------------------------------------------------------------------------- a broken export


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_perturbed_export_fails_the_parity_check_and_writes_nothing(tiny, fmt, monkeypatch,
                                                                      capsys):
    f = FORMATS.get(fmt)
    write = f.write

    def perturbed(model, example, path):  # what a faulty exporter would ship
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.head.fc.bias += 1e-3
        write(model, example, path)

    monkeypatch.setattr(f, "write", perturbed)
    before = _files(tiny)
    capsys.readouterr()
    assert main(["export", "--model", str(tiny), "--format", fmt]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: export {fmt}: the exported model's logits must match the "
                              "torch model's within 0.0001, got a max absolute difference of "
                              "0.001 on synthetic"), err
    assert _files(tiny) == before  # no file, no metadata, no temporary left


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case, message", [
    ("not_a_model", ("--model: {root}/other: must hold model.pt, config.yaml, metrics.json, "
                    "got no model.pt, config.yaml, metrics.json")),
    ("no_folder", "no such folder"),
    ("unknown_format", "--format: unknown export format 'tflite'. Options: onnx, torchscript"),
    ("onnxruntime_missing", ("--format onnx: needs the packages onnx and onnxruntime, got no "
                            "onnxruntime. Install the extra: pip install 'vcr-hpo[onnx]'")),
    ("bad_suffix", "-o: must end in .onnx for --format onnx, got"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tiny, tmp_path, monkeypatch, capsys,
                                                          case, message):
    model, fmt, extra = str(tiny), "onnx", []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a model")
    if case == "not_a_model":
        model = str(tmp_path / "other")
    elif case == "no_folder":
        model = str(tmp_path / "nope")
    elif case == "unknown_format":
        fmt = "tflite"
    elif case == "onnxruntime_missing":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    elif case == "bad_suffix":
        extra = ["-o", str(tmp_path / "model.pt")]
    before, before_tiny = _files(tmp_path), _files(tiny)
    capsys.readouterr()
    assert main(["export", "--model", model, "--format", fmt, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(root=tmp_path) in err[0], err
    assert _files(tmp_path) == before and _files(tiny) == before_tiny


def test_predict_refuses_a_file_that_is_not_an_export(tiny, tmp_path, capsys):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx")
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    for model, message in ((bogus, "must be a file `vcr-hpo export` wrote (onnx)"),
                           (tiny / "config.yaml", ("an exported file must end in .onnx, "
                                                  ".torchscript.pt"))):
        capsys.readouterr()
        assert main(["predict", "--model", str(model), "--images", str(tmp_path / "imgs"),
                     "-o", str(tmp_path / "p.csv"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "p.csv").exists()
