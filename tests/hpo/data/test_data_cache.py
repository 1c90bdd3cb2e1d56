"""The disk cache under trouble: a writer killed mid-build, changed sources, read-only data, dead temps."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from hpo.config import TrainConfig
from hpo.data import _cache, cache_dir, check_images_decode, clear_memory_cache, load_dataset
from hpo.data import _load as data_mod
from hpo.errors import ConfigError

pytestmark = pytest.mark.usefixtures("fresh_data_cache")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[3]
RGB = {"red": (200, 30, 30), "blue": (30, 40, 200), "white": (235, 235, 235)}


def _folder(root: Path, per_class: int = 4) -> Path:
    """PPM files: a file's size depends only on its pixel size, so content can change alone."""
    for c, (name, rgb) in enumerate(RGB.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shade = tuple((v + 7 * i) % 256 for v in rgb)
            Image.new("RGB", (20 + i % 5, 12 + c), shade).save(root / name / f"{i:03d}.ppm")
    return root


def _cfg(root: Path) -> TrainConfig:
    return TrainConfig(data=str(root), image_size=32, val_fraction=0.25)


def _digest(s) -> str:
    """A hash of everything a load returns: pixels, labels and splits."""
    h = hashlib.sha256()
    for t in (s.train_images, s.val_images, s.train_labels, s.val_labels):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _clean_build(root: Path, monkeypatch, where: Path):
    """The same load from an empty cache folder, then back to the test's cache."""
    before = os.environ["VCR_HPO_CACHE"]
    monkeypatch.setenv("VCR_HPO_CACHE", str(where))
    clear_memory_cache()
    try:
        return load_dataset(_cfg(root))
    finally:
        monkeypatch.setenv("VCR_HPO_CACHE", before)
        clear_memory_cache()


def _never(*a, **k):
    raise AssertionError("decoded again instead of reading the cache")


def _entries(folder: Path) -> tuple[list[str], list[str]]:
    return (sorted(p.name for p in folder.glob("*.imgs")),
            sorted(p.name for p in folder.glob(".*.tmp")))


# --------------------------------------------------------------------------- killed writer

# Builds the cache of argv[1] at 32 px; with argv[2] == "slow", says "mid" after 60 decoded
# images and then slows down, so the parent can kill it mid-build. Prints the load's digest.
_BUILDER = """
import hashlib, sys, time
import hpo.data._load as d
from hpo.config import TrainConfig
if sys.argv[2] == "slow":
    real, n = d._decode_one, [0]
    def slow(path, size):
        n[0] += 1
        if n[0] == 60:
            print("mid", flush=True)
        if n[0] >= 60:
            time.sleep(0.2)
        return real(path, size)
    d._decode_one = slow
s = d.load_dataset(TrainConfig(data=sys.argv[1], image_size=32, val_fraction=0.25))
h = hashlib.sha256()
for t in (s.train_images, s.val_images, s.train_labels, s.val_labels):
    h.update(t.contiguous().numpy().tobytes())
print(h.hexdigest(), flush=True)
"""


def _builder(root: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", _BUILDER, str(root), mode],
                            stdout=subprocess.PIPE, text=True, env=env)


def _waits_on_flock(pid: int) -> bool:
    """Whether `pid` is blocked on a flock (a `->` line of /proc/locks)."""
    with open("/proc/locks") as f:
        return any("->" in line and line.split()[5] == str(pid) for line in f)


@pytest.mark.slow
def test_sigkill_mid_build_leaves_nothing_trusted_and_the_waiting_worker_builds_clean(
    tmp_path, monkeypatch
):
    """A worker killed while it writes the cache: no cache file appears; a second worker that
    was waiting on the build lock takes over, removes the dead writer's temp file, and its data
    equal a clean build's; a later load reads that file."""
    root = _folder(tmp_path / "cars", per_class=100)  # 300 images
    cache = cache_dir()
    first = _builder(root, "slow")
    second = None
    try:
        assert first.stdout.readline().strip() == "mid"
        files, temps = _entries(cache)
        assert files == [] and len(temps) == 1  # mid-build: only the temp file exists
        second = _builder(root, "plain")
        deadline = time.monotonic() + 120
        while not _waits_on_flock(second.pid):  # it reached the lock the first one holds
            assert second.poll() is None and time.monotonic() < deadline, "never waited"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        out, _ = second.communicate(timeout=300)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    assert second.returncode == 0
    clean = _clean_build(root, monkeypatch, tmp_path / "clean")
    assert out.strip() == _digest(clean)
    files, temps = _entries(cache)
    assert len(files) == 1 and temps == []  # the dead writer's temp file was removed
    monkeypatch.setattr(data_mod, "_decode_one", _never)
    assert _digest(load_dataset(_cfg(root))) == _digest(clean)  # read from the file


@pytest.mark.slow
def test_sigkill_mid_build_then_a_later_run_rebuilds(tmp_path, monkeypatch):
    root = _folder(tmp_path / "cars", per_class=100)
    first = _builder(root, "slow")
    try:
        assert first.stdout.readline().strip() == "mid"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    files, temps = _entries(cache_dir())
    assert files == [] and len(temps) == 1
    temp = cache_dir() / temps[0]
    assert temp.stat().st_size > 0  # the half-written file is there, and must not be read
    loaded = load_dataset(_cfg(root))
    assert _digest(loaded) == _digest(_clean_build(root, monkeypatch, tmp_path / "clean"))
    files, temps = _entries(cache_dir())
    assert len(files) == 1 and temps == []


# --------------------------------------------------------------------------- invalidation


def _same_size_and_mtime(root: Path) -> None:
    target = root / "red" / "001.ppm"
    st = target.stat()
    Image.new("RGB", Image.open(target).size, (0, 255, 0)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p / rsync -a leave it
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns


def _new_mtime_only(root: Path) -> None:
    target = root / "blue" / "000.ppm"
    os.utime(target, ns=(1, 1))


def _added(root: Path) -> None:
    Image.new("RGB", (21, 13), (250, 250, 0)).save(root / "white" / "zzz.ppm")


def _removed(root: Path) -> None:
    (root / "white" / "002.ppm").unlink()


def _relabelled(root: Path) -> None:  # moved to another class: same bytes, new label
    (root / "red" / "003.ppm").rename(root / "blue" / "red-003.ppm")


@pytest.mark.parametrize(
    "change", [_same_size_and_mtime, _new_mtime_only, _added, _removed, _relabelled],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_changed_source_misses_the_cache_and_loads_what_a_clean_build_loads(
    tmp_path, monkeypatch, change
):
    root = _folder(tmp_path / "cars", per_class=4)
    before = load_dataset(_cfg(root))
    (old,), _ = _entries(cache_dir())
    time.sleep(0.02)  # a new ctime even on a coarse clock
    change(root)
    clear_memory_cache()
    after = load_dataset(_cfg(root))
    files, temps = _entries(cache_dir())
    assert len(files) == 2 and old in files and temps == []  # a second file, built afresh
    assert _digest(after) == _digest(_clean_build(root, monkeypatch, tmp_path / "clean"))
    if change is not _new_mtime_only:
        assert _digest(after) != _digest(before)


def test_preflight_decode_is_skipped_only_for_a_listing_that_already_decoded(monkeypatch, tmp_path):
    root = _folder(tmp_path / "cars", per_class=4)
    load_dataset(_cfg(root))  # decoded into the cache
    never = _never
    real = data_mod._decode_one
    monkeypatch.setattr(data_mod, "_decode_one", never)
    assert check_images_decode(str(root)) == 12
    monkeypatch.setattr(data_mod, "_decode_one", real)
    bad = root / "red" / "000.ppm"
    bad.write_bytes(b"P6 not an image")
    with pytest.raises(ConfigError, match=r"1 unreadable: .*000\.ppm"):
        check_images_decode(str(root))
    bad.unlink()
    assert check_images_decode(str(root)) == 11  # decoded, then recorded
    monkeypatch.setattr(data_mod, "_decode_one", never)
    assert check_images_decode(str(root)) == 11


# --------------------------------------------------------------------------- dead temp files


@pytest.mark.parametrize("held", [False, True])
def test_a_build_removes_temp_files_whose_writer_is_gone_and_keeps_a_live_ones(tmp_path, held):
    cache = cache_dir()
    cache.mkdir(parents=True)
    other = "0123456789abcdef01234567"  # another source
    temp = cache / f".{other}.v0.25.4242.tmp"
    temp.write_bytes(b"half an image cache")
    root = _folder(tmp_path / "cars")
    if held:
        with _cache.build_lock(cache, other):  # its writer is alive (holds the lock)
            load_dataset(_cfg(root))
    else:
        load_dataset(_cfg(root))
    assert temp.exists() == held


# --------------------------------------------------------------------------- read-only data

# Loads argv[1] with the cache at $VCR_HPO_CACHE; first proves the data folder is read-only for
# this process. Prints "read-only", the load's digest and the cache files it sees.
_READER = """
import hashlib, os, sys
from pathlib import Path
try:
    open(os.path.join(sys.argv[1], "red", "probe"), "w")
    print("writable", flush=True)
except PermissionError:
    print("read-only", flush=True)
from hpo.data import cache_dir, load_dataset
from hpo.config import TrainConfig
s = load_dataset(TrainConfig(data=sys.argv[1], image_size=32, val_fraction=0.25))
h = hashlib.sha256()
for t in (s.train_images, s.val_images, s.train_labels, s.val_labels):
    h.update(t.contiguous().numpy().tobytes())
print(h.hexdigest(), flush=True)
print(len(list(Path(os.environ["VCR_HPO_CACHE"]).glob("*.imgs")))
      if Path(os.environ["VCR_HPO_CACHE"]).is_dir() else -1, flush=True)
"""


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.slow
def test_a_read_only_data_folder_loads_with_the_cache_elsewhere_or_nowhere(monkeypatch):
    """Root ignores permission bits, so the reader runs without CAP_DAC_OVERRIDE (setpriv): then
    the data folder's 0555/0444 modes really refuse writes, as for any user. The cache goes to
    $VCR_HPO_CACHE, never into the data folder; where that cannot be made (it lies under a
    regular file: ENOTDIR even for root) the set loads into private memory, the same pixels."""
    base = Path(tempfile.mkdtemp(prefix="vcr-ro-"))  # not under pytest's 0700 folders
    try:
        base.chmod(0o755)
        root = _folder(base / "cars")
        expected = _digest(load_dataset(_cfg(root)))
        for p in sorted(root.rglob("*"), reverse=True):
            p.chmod(0o444 if p.is_file() else 0o555)
        root.chmod(0o555)
        tree = _tree(root)
        blocker = base / "a-file"
        blocker.write_text("the cache cannot be made under a regular file")
        prefix = []
        if os.geteuid() == 0:
            caps = "-dac_override,-dac_read_search"
            prefix = [shutil.which("setpriv") or "setpriv", "--bounding-set", caps,
                      "--inh-caps", caps, "--"]
        for cache, files in ((base / "cache", 1), (blocker / "cache", -1)):
            env = {**os.environ, "PYTHONPATH": str(ROOT), "VCR_HPO_CACHE": str(cache)}
            out = subprocess.run([*prefix, sys.executable, "-c", _READER, str(root)], env=env,
                                 capture_output=True, text=True, timeout=300, check=False)
            assert out.returncode == 0, out.stderr[-2000:]
            assert out.stdout.split() == ["read-only", expected, str(files)]
        assert _tree(root) == tree  # nothing written, nothing touched
    finally:
        for p in [base, *base.rglob("*")]:
            if p.is_dir():
                p.chmod(stat.S_IRWXU)
        shutil.rmtree(base, ignore_errors=True)


def test_the_cache_is_never_written_inside_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("VCR_HPO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default cache: ~/.cache/vcr-hpo
    root = _folder(tmp_path / "cars")
    tree = _tree(root)
    load_dataset(_cfg(root))
    check_images_decode(str(root))
    assert _tree(root) == tree
    assert len(list((tmp_path / "home/.cache/vcr-hpo").glob("*.imgs"))) == 1


# --------------------------------------------------------------------------- one listing per run


def _settle(root: Path) -> Path:
    """Date every folder under root an hour back: a listing of it may then be kept."""
    past = time.time() - 3600
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(d, (past, past))
    return root


def _count_listings(monkeypatch) -> list[Path]:
    from hpo.data import _sources

    calls: list[Path] = []
    real = _sources._list_imagefolder

    def spy(root, where, read):
        calls.append(root)
        return real(root, where, read)

    monkeypatch.setattr(_sources, "_list_imagefolder", spy)
    return calls


def test_the_preflight_and_the_load_share_one_listing(tmp_path, monkeypatch):
    """What a run does with its data in the parent process: check this machine, then load."""
    from hpo.run.preflight import preflight

    root = _settle(_folder(tmp_path / "images"))
    listings = _count_listings(monkeypatch)
    cfg = TrainConfig(data=str(root), image_size=32, device="cpu")
    preflight(cfg)
    load_dataset(cfg)
    assert listings == [root]


@pytest.mark.slow  # trains one tiny trial
@pytest.mark.usefixtures("one_thread")
def test_one_run_lists_its_image_folder_once(tiny_space, tmp_path, monkeypatch):
    """`vcr-hpo run`: the preflight (check and decode) and the trial's load share one listing."""
    from hpo.cli import main

    root = _settle(_folder(tmp_path / "images"))
    listings = _count_listings(monkeypatch)
    loads: list[str] = []
    real_laid_out = data_mod._laid_out
    monkeypatch.setattr(data_mod, "_laid_out", lambda cfg: loads.append(cfg.data) or real_laid_out(cfg))
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--space", str(tiny_space(1)), "--data", str(root), "--n-trials", "1", "--quiet",
            "--storage", f"sqlite:///{tmp_path / 'one.db'}", "--artifacts", str(tmp_path / "art")]
    assert main(argv) == 0
    assert loads == [str(root)]  # the trial loaded its data in this process
    assert listings == [root]


@pytest.mark.parametrize("change", ["add", "remove", "rename", "nested", "new_class"])
def test_a_kept_listing_is_not_used_once_a_folder_changed(tmp_path, monkeypatch, change):
    from hpo.data._sources import source_items

    root = _folder(tmp_path / "images")
    (root / "red" / "sub").mkdir()
    Image.new("RGB", (20, 12), (200, 30, 30)).save(root / "red" / "sub" / "x.ppm")
    _settle(root)
    listings = _count_listings(monkeypatch)
    before = source_items(str(root), "data")
    assert source_items(str(root), "data") == before and len(listings) == 1  # kept
    img = Image.new("RGB", (20, 12), (30, 40, 200))
    if change == "add":
        img.save(root / "blue" / "new.ppm")
    elif change == "remove":
        (root / "blue" / "000.ppm").unlink()
    elif change == "rename":
        (root / "blue" / "000.ppm").rename(root / "blue" / "zzz.ppm")
    elif change == "nested":
        img.save(root / "red" / "sub" / "y.ppm")
    else:
        (root / "green").mkdir()
        img.save(root / "green" / "g.ppm")
    after = source_items(str(root), "data")
    assert len(listings) == 2 and after != before


def test_a_listing_of_a_folder_changed_just_now_is_not_kept(tmp_path, monkeypatch):
    """A change within a clock tick of the listing need not move the folder's mtime."""
    from hpo.data._sources import source_items

    root = _folder(tmp_path / "images")  # written just now
    listings = _count_listings(monkeypatch)
    source_items(str(root), "data")
    source_items(str(root), "data")
    assert len(listings) == 2


def test_the_data_check_lists_a_folder_once(tmp_path, monkeypatch):
    """Even a folder that changed just now (no listing kept): one listing checks and decodes."""
    from hpo.run.preflight import check_data

    root = _folder(tmp_path / "images")
    listings = _count_listings(monkeypatch)
    assert check_data(str(root)) == 12
    assert listings == [root]
