"""Data sources: synthetic set, ImageFolder, JSONL manifests, caching, clear errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from hpo.config import TrainConfig
from hpo.data import (
    COLOUR_CLASSES,
    cache_dir,
    check_data_source,
    clear_memory_cache,
    load_dataset,
    make_synthetic,
)
from hpo.data import _load as data_mod
from hpo.data._sources import source_items
from hpo.errors import ConfigError

pytestmark = pytest.mark.usefixtures("fresh_data_cache")  # tests/conftest.py

COLOURS = {"red": (200, 30, 30), "blue": (30, 40, 200), "white": (235, 235, 235)}


def _write(path, rgb, size=(40, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, format=fmt)
    return path


def _imagefolder(root, per_class=4):
    for name, rgb in COLOURS.items():
        for i in range(per_class):
            ext = ".png" if i % 2 else ".jpg"
            _write(root / name / f"{i}{ext}", rgb)
    return root


def _cfg(data, **kw):
    return TrainConfig(data=str(data), image_size=kw.pop("image_size", 32), **kw)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_for_a_seed():
    a, la = make_synthetic(48, 32, seed=3)
    b, lb = make_synthetic(48, 32, seed=3)
    c, _ = make_synthetic(48, 32, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (48, 3, 32, 32)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)


def test_synthetic_classes_are_long_tailed_with_close_pairs():
    names = [c[0] for c in COLOUR_CLASSES]
    assert len(names) == 10
    assert {"white", "silver", "grey", "red", "orange", "brown"} <= set(names)
    _, labels = make_synthetic(1000, 32, seed=0)
    counts = torch.bincount(labels, minlength=10)
    assert counts.sum() == 1000
    assert counts.max() >= 8 * counts.min()  # white vs yellow: real traffic's long tail
    assert counts.tolist() == sorted(counts.tolist(), reverse=True)


def test_synthetic_images_vary_and_paint_follows_the_label():
    images, labels = make_synthetic(400, 48, seed=0)
    x = images.float() / 255
    assert x.std(dim=(1, 2, 3)).min() > 0.05  # clutter, shading and noise: never a flat image
    # The car's paint sits in the middle band; its mean colour separates red from blue on average.
    band = x[:, :, 24:34, 14:34].mean(dim=(2, 3))
    red, blue = band[labels == 5].mean(0), band[labels == 4].mean(0)
    assert red[0] > red[2] + 0.1 and blue[2] > blue[0] + 0.1
    white, black = band[labels == 0].mean(), band[labels == 1].mean()
    assert white > black + 0.2


def test_load_dataset_synthetic_splits_every_class():
    cfg = TrainConfig(data="synthetic", synthetic_size=300, image_size=32, val_fraction=0.2)
    splits = load_dataset(cfg)
    n_train, n_val = len(splits.train_labels), len(splits.val_labels)
    assert n_train + n_val == 300 and 50 <= n_val <= 70
    assert splits.train_images.shape == (n_train, 3, 32, 32)
    assert set(splits.val_labels.tolist()) == set(range(10))
    assert splits.class_counts == tuple(torch.bincount(splits.train_labels, minlength=10).tolist())
    assert splits.class_names == tuple(c[0] for c in COLOUR_CLASSES)


def test_max_train_samples_caps_train_split_only():
    cfg = TrainConfig(synthetic_size=300, image_size=32, max_train_samples=100)
    splits = load_dataset(cfg)
    assert len(splits.train_labels) == 100
    assert sum(splits.class_counts) == 100
    assert len(splits.val_labels) == len(
        load_dataset(cfg.replace(max_train_samples=None)).val_labels
    )


def test_load_dataset_reuses_memory_then_disk_cache(monkeypatch):
    cfg = TrainConfig(synthetic_size=64, image_size=32)
    first = load_dataset(cfg)
    files = list(cache_dir().glob("*.imgs"))
    assert len(files) == 1

    def never(*a, **k):
        raise AssertionError("regenerated instead of reusing the cache")

    monkeypatch.setattr(data_mod, "make_synthetic", never)
    files[0].unlink()  # only the in-process cache is left
    assert torch.equal(load_dataset(cfg).train_images, first.train_images)

    monkeypatch.undo()
    monkeypatch.setenv("VCR_HPO_CACHE", str(files[0].parent))
    load_dataset(cfg.replace(image_size=40))  # writes a new entry
    clear_memory_cache()
    monkeypatch.setattr(data_mod, "make_synthetic", never)
    assert load_dataset(cfg.replace(image_size=40)).image_size == 40  # from disk


def test_disk_cache_can_be_turned_off(monkeypatch, tmp_path):
    """VCR_HPO_CACHE=off writes no file where a cache could go: not the default ~/.cache/vcr-hpo
    (HOME is tmp_path/home here) nor a folder named "off" (the working folder is tmp_path)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VCR_HPO_CACHE")
    cfg = TrainConfig(synthetic_size=40, image_size=32)
    load_dataset(cfg)  # control: unset, the cache is the default folder, which this test sees
    assert len(list((tmp_path / "home/.cache/vcr-hpo").glob("*.imgs"))) == 1
    monkeypatch.setenv("VCR_HPO_CACHE", "off")
    clear_memory_cache()
    assert cache_dir() is None
    load_dataset(cfg.replace(image_size=40))
    assert len(list(tmp_path.rglob("*.imgs"))) == 1  # still only the control's file


# --------------------------------------------------------------------------- files


def test_imagefolder_loads_classes_and_pixels(tmp_path):
    root = _imagefolder(tmp_path / "cars")
    splits = load_dataset(_cfg(root, val_fraction=0.25))
    assert splits.class_names == ("blue", "red", "white")
    assert len(splits.train_labels) + len(splits.val_labels) == 12
    assert sorted(splits.class_counts) == [3, 3, 3]
    for images, labels in (
        (splits.train_images, splits.train_labels),
        (splits.val_images, splits.val_labels),
    ):
        assert images.shape[1:] == (3, 32, 32)
        for img, lab in zip(images, labels):
            rgb = COLOURS[splits.class_names[lab]]
            assert (img.float().mean(dim=(1, 2)) - torch.tensor(rgb)).abs().max() < 8  # JPEG slack


def test_imagefolder_train_val_layout_is_honoured(tmp_path):
    root = tmp_path / "cars"
    _imagefolder(root / "train", per_class=3)
    _imagefolder(root / "val", per_class=1)
    splits = load_dataset(_cfg(root, val_fraction=0.5))
    assert len(splits.train_labels) == 9 and len(splits.val_labels) == 3
    assert sorted(splits.val_labels.tolist()) == [0, 1, 2]


def test_manifest_loads_paths_labels_and_splits(tmp_path):
    lines = []
    for name, rgb in COLOURS.items():
        for i in range(3):
            p = _write(tmp_path / "img" / f"{name}{i}.png", rgb)
            lines.append(
                {"path": f"img/{p.name}", "label": name, "split": "val" if i == 0 else "train"}
            )
    manifest = tmp_path / "cars.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    check_data_source(str(manifest))
    splits = load_dataset(_cfg(manifest))
    assert splits.class_names == ("blue", "red", "white")
    assert len(splits.train_labels) == 6 and len(splits.val_labels) == 3
    red = splits.class_names.index("red")
    assert splits.val_images[splits.val_labels == red].float().mean(dim=(0, 2, 3))[0] > 180


def test_manifest_without_split_uses_val_fraction(tmp_path):
    rows = []
    for name, rgb in COLOURS.items():
        for i in range(4):
            rows.append({"path": str(_write(tmp_path / f"{name}{i}.png", rgb)), "label": name})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    splits = load_dataset(_cfg(manifest, val_fraction=0.25))
    assert len(splits.val_labels) == 3 and sorted(splits.val_labels.tolist()) == [0, 1, 2]


def test_corrupt_image_error_names_the_file(tmp_path):
    root = _imagefolder(tmp_path / "cars")
    bad = root / "red" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    truncated = root / "blue" / "cut.png"
    truncated.write_bytes((root / "blue" / "1.png").read_bytes()[:40])
    with pytest.raises(ConfigError) as err:
        load_dataset(_cfg(root))
    msg = str(err.value)
    assert "\n" not in msg
    assert "2 unreadable" in msg and str(bad) in msg and str(truncated) in msg
    assert msg.endswith("Remove or replace these files")
    assert not any(cache_dir().glob("*.imgs"))  # nothing half-decoded was cached


def test_changed_file_invalidates_the_disk_cache(tmp_path):
    root = _imagefolder(tmp_path / "cars", per_class=2)
    cfg = _cfg(root, val_fraction=0.5)
    before = load_dataset(cfg)
    target = root / "red" / "0.jpg"
    _write(target, (10, 200, 10))
    os.utime(target, ns=(1, 1))  # a different mtime even on coarse filesystems
    clear_memory_cache()
    after = load_dataset(cfg)
    assert len(list(cache_dir().glob("*.imgs"))) == 2
    assert not torch.equal(
        torch.cat([before.train_images, before.val_images]),
        torch.cat([after.train_images, after.val_images]),
    )


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "nope", r"no such file or folder\)\. Fix the path"),
        (
            lambda p: (p / "empty").mkdir() or p / "empty",
            r"needs at least 2 classes with images, got 0",
        ),
        (
            lambda p: _write(p / "one" / "red" / "a.png", (1, 2, 3)).parents[1],
            r"needs at least 2 classes with images, got 1 \(red\)",
        ),
        (
            lambda p: (_imagefolder(p / "d"), (p / "d" / "green").mkdir())[0],
            r"every class folder must hold images, got no image in .*green",
        ),
        (
            lambda p: (p / "x.csv").write_text("a,b") and p / "x.csv",
            r"a data file must be a \.jsonl manifest, got",
        ),
        (
            lambda p: (
                (p / "m.jsonl").write_text('{"path": "a.png", "label": "r"}\nnot json\n')
                and p / "m.jsonl"
            ),
            r"m\.jsonl:2: each line must be one JSON object, got 'not json'",
        ),
        (
            lambda p: (p / "m.jsonl").write_text('{"label": "r"}\n') and p / "m.jsonl",
            r"m\.jsonl:1: each line needs a string 'path' and a 'label'",
        ),
        (
            lambda p: (
                (p / "m.jsonl").write_text('{"path": "gone.png", "label": "r"}\n') and p / "m.jsonl"
            ),
            r"every path must be an existing file, got 1 missing: .*gone\.png",
        ),
        (
            lambda p: (
                (
                    _write(p / "a.png", (1, 1, 1)),
                    (p / "m.jsonl").write_text(
                        '{"path": "a.png", "label": "r", "split": "test"}\n'
                    ),
                )[0].parent
                / "m.jsonl"
            ),
            r"m\.jsonl:1: split must be train or val, got 'test'",
        ),
        (
            lambda p: (
                (
                    _write(p / "a.png", (1, 1, 1)),
                    (p / "m.jsonl").write_text(
                        '{"path": "a.png", "label": "r", "split": "val"}\n{"path": "a.png", "label": "b"}\n'
                    ),
                )[0].parent
                / "m.jsonl"
            ),
            r"split must be given on every line or on none, got a mix",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "one-class",
        "empty-class",
        "not-jsonl",
        "bad-json",
        "no-path",
        "missing-file",
        "bad-split",
        "mixed-split",
    ],
)
def test_check_data_source_rejects_with_one_clear_line(tmp_path, make, expected):
    target = make(tmp_path)
    with pytest.raises(ConfigError, match=expected) as err:
        check_data_source(str(target))
    msg = str(err.value)
    assert msg.startswith("data: ") and "\n" not in msg and ", got " in msg


def _manifest(p):
    for name in ("a.png", "b.png", "c.png"):
        _write(p / "img" / name, (1, 2, 3))
    (p / "m.jsonl").write_text('{"path": "img/a.png", "label": "red"}\n'
                               '{"path": "img/b.png", "label": "blue"}\n'
                               '{"path": "img/c.png", "label": 3}\n')
    return p / "m.jsonl"


def _train_val(p):
    for split in ("train", "val"):
        _imagefolder(p / "tv" / split, per_class=1)
    return p / "tv"


@pytest.mark.parametrize(("make", "n_items", "classes"), [
    (lambda p: _imagefolder(p / "cars", per_class=2), 2 * len(COLOURS), len(COLOURS)),
    (_train_val, 2 * len(COLOURS), len(COLOURS)),
    (_manifest, 3, 3),
], ids=["imagefolder", "train-val", "manifest"])
def test_check_data_source_accepts_good_sources_and_reads_them(tmp_path, make, n_items, classes):
    source = str(make(tmp_path))
    check_data_source(source)
    items = source_items(source, "data")
    assert len(items) == n_items and len({i.label for i in items}) == classes
    assert all(i.path.is_file() for i in items)


def test_check_data_source_accepts_synthetic_without_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_data_source("synthetic")  # no file named "synthetic" is looked for
    with pytest.raises(ConfigError, match="no such file or folder"):
        check_data_source("synthetic2")



def test_a_source_is_checked_without_torch(tmp_path):
    """hpo.data hands each name on from the module that defines it: checks load no torch."""
    import subprocess
    import sys

    for colour in ("red", "blue"):
        _write(tmp_path / colour / "a.png", (1, 2, 3))
    code = ("import sys; from hpo.data import COLOUR_CLASSES, check_data_source; "
            "check_data_source(sys.argv[1]); check_data_source('synthetic:classes=4'); "
            "print(sorted(m for m in ('torch', 'torchvision', 'hpo.data._load') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- shared cache file

@pytest.fixture
def _linux(require):
    require("Linux /proc/self/smaps", os.path.exists("/proc/self/smaps"), "run the tests on Linux")


_LINUX = pytest.mark.usefixtures("_linux")

# Loads the set as a trial would, touches every page, reports, then waits for one command.
_CHILD = """
import sys
from hpo.config import TrainConfig
from hpo.data import load_dataset
s = load_dataset(TrainConfig(synthetic_size=64, image_size=32))
print(int(s.train_images.sum()) + int(s.val_images.sum()), flush=True)
if sys.stdin.readline().strip() == "write":
    s.train_images[0] += 1
print("survived", flush=True)
"""


def _mapping(pid, where):
    """(perms, inode, path, rss kB, pss kB) of the mapping of `pid` holding address or file `where`."""
    with open(f"/proc/{pid}/smaps") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        head = line.split(maxsplit=5)
        if ":" in head[0]:  # a "Key: value" row, not a mapping's header
            continue
        lo, hi = (int(x, 16) for x in head[0].split("-"))
        path = head[5] if len(head) > 5 else ""
        if (lo <= where < hi) if isinstance(where, int) else path == str(where):
            kb = {}
            for row in lines[i + 1 :]:
                key, sep, rest = row.partition(":")
                if not sep or " " in key:
                    break
                kb[key] = rest.split()[0] if rest.split() else ""
            return head[1], int(head[4]), path, int(kb["Rss"]), int(kb["Pss"])
    raise AssertionError(f"no mapping of {where} in process {pid}")


@_LINUX
def test_cached_splits_are_read_only_views_of_one_mapped_file():
    cfg = TrainConfig(synthetic_size=80, image_size=32, max_train_samples=20)
    capped, full = load_dataset(cfg), load_dataset(cfg.replace(max_train_samples=None))
    (file,) = cache_dir().glob("*.imgs")
    for t in (capped.train_images, full.train_images, full.val_images):
        perms, inode, path, _, _ = _mapping("self", t.data_ptr())
        assert path == str(file) and inode == file.stat().st_ino
        assert perms.startswith("r-")  # mapped without write permission: a write faults
    # Views, not copies: the cap keeps a prefix of the train block, val follows it.
    assert capped.train_images.data_ptr() == full.train_images.data_ptr()
    assert full.val_images.data_ptr() == full.train_images[-1].data_ptr() + 3 * 32 * 32
    assert torch.equal(capped.train_images, full.train_images[:20])


@_LINUX
def test_concurrent_first_builds_make_one_file_that_both_processes_share(tmp_path):
    import signal
    import subprocess
    import sys

    env = {**os.environ, "VCR_HPO_CACHE": str(cache_dir())}
    kids = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        sums = {k.stdout.readline().strip() for k in kids}
        assert len(sums) == 1 and sums != {""}  # both loaded, and the same pixels
        files = sorted(p.name for p in cache_dir().iterdir() if not p.name.endswith(".lock"))
        assert len(files) == 1 and files[0].endswith(".imgs")  # one file, no temp left over
        (file,) = cache_dir().glob("*.imgs")
        for k in kids:
            _, inode, _, rss, pss = _mapping(k.pid, file)
            assert inode == file.stat().st_ino  # both map the final file, not a replaced one
            assert rss >= 64 * 3 * 32 * 32 // 1024 and pss <= 0.6 * rss  # pages counted once
        kids[0].stdin.write("write\n")
        kids[1].stdin.write("read\n")
        out = [k.communicate(timeout=60)[0] for k in kids]
    finally:
        for k in kids:
            k.kill() if k.poll() is None else None
    assert kids[0].returncode == -signal.SIGSEGV and "survived" not in out[0]
    assert kids[1].returncode == 0 and "survived" in out[1]
    clear_memory_cache()
    splits = load_dataset(TrainConfig(synthetic_size=64, image_size=32))
    assert {str(int(splits.train_images.sum()) + int(splits.val_images.sum()))} == sums  # no write


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_cache_file_is_rebuilt(monkeypatch, damage):
    cfg = TrainConfig(synthetic_size=64, image_size=32)
    first = load_dataset(cfg)
    (file,) = cache_dir().glob("*.imgs")
    size = file.stat().st_size
    blob = file.read_bytes()
    file.unlink()  # the old mapping stays valid; damage a fresh file in its place
    file.write_bytes(
        {"truncate": blob[: size - 100], "garbage": b"not a cache" * 500, "empty": b""}[damage]
    )
    clear_memory_cache()
    again = load_dataset(cfg)
    assert file.stat().st_size == size
    assert torch.equal(again.train_images, first.train_images)
    assert torch.equal(again.val_labels, first.val_labels)


def test_other_val_fraction_reorders_the_cached_file_without_regenerating(monkeypatch):
    cfg = TrainConfig(synthetic_size=120, image_size=32, val_fraction=0.2)
    load_dataset(cfg)
    images, labels = make_synthetic(120, 32, seed=0)

    def never(*a, **k):
        raise AssertionError("regenerated instead of reordering the cached file")

    monkeypatch.setattr(data_mod, "make_synthetic", never)
    other = load_dataset(cfg.replace(val_fraction=0.5))
    assert len(list(cache_dir().glob("*.imgs"))) == 2
    is_val = data_mod._stratified_val(labels, 0.5)
    weights = torch.arange(1, 3 * 32 * 32 + 1, dtype=torch.float64)

    def rows(x):  # the val set as sorted row fingerprints: the order does not matter
        return (x.flatten(1).double() * weights).sum(1).sort().values

    assert torch.equal(rows(other.val_images), rows(images[is_val]))
    assert sorted(other.val_labels.tolist()) == sorted(labels[is_val].tolist())
