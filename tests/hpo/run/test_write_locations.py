"""Every folder a run writes is checked before the study exists (hpo.run.preflight.check_run_locations):
the study's folder, the artifact store, its checkpoints and the data cache, each under a regular
file, on a read-only mount or in /proc, is one line and exit 2, with nothing written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.errors import ConfigError


def _mount_read_only(path: Path, request) -> Path:
    """`path` becomes a read-only tmpfs (root's writes are refused there too, unlike chmod)."""
    path.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                         capture_output=True, text=True, check=False)
    request.getfixturevalue("require")(
        f"a read-only tmpfs mount ({got.stderr.strip()})", got.returncode == 0,
        "run as root with CAP_SYS_ADMIN, as on the CI machine")
    def unmount():
        if Path.cwd().is_relative_to(path):  # a test that ran inside it (monkeypatch undoes later)
            os.chdir(path.parent)
        subprocess.run(["umount", str(path)], check=True)

    request.addfinalizer(unmount)
    return path


def _file(tmp: Path) -> Path:
    (tmp / "weights.pt").write_bytes(b"x")
    return tmp / "weights.pt"


def _checkpoints_file(tmp: Path) -> Path:
    (tmp / "store").mkdir()
    (tmp / "store" / "checkpoints").write_bytes(b"x")
    return tmp / "store"


PROC = Path("/proc")

# (location, fault) -> setup(tmp, request) -> (argv, env, cwd or None, where the line points)
CASES = {
    ("study folder", "under a file"):
        lambda t, r: (["--storage", f"sqlite:///{_file(t)}/s.db"], {}, None, "--storage"),
    ("study folder", "read-only"):
        lambda t, r: (["--storage", f"sqlite:///{_mount_read_only(t / 'ro', r)}/s.db"], {}, None,
                      "--storage"),
    ("study folder", "in /proc"):
        lambda t, r: (["--storage", f"sqlite:///{PROC}/s.db"], {}, None, "--storage"),
    ("default study folder", "read-only"):  # studies/ cannot be made where the run starts
        lambda t, r: ([], {}, _mount_read_only(t / "ro", r), "--storage"),
    ("default study folder", "in /proc"):
        lambda t, r: ([], {}, PROC, "--storage"),
    ("artifact store", "under a file"):
        lambda t, r: (["--artifacts", f"{_file(t)}/sub"], {}, None, "--artifacts"),
    ("artifact store", "read-only"):
        lambda t, r: (["--artifacts", f"{_mount_read_only(t / 'ro', r)}/sub"], {}, None,
                      "--artifacts"),
    ("artifact store", "in /proc"):
        lambda t, r: (["--artifacts", f"{PROC}/vcr-hpo-test"], {}, None, "--artifacts"),
    ("checkpoint folder", "under a file"):  # the store's folder is fine, checkpoints/ is a file
        lambda t, r: (["--artifacts", str(_checkpoints_file(t))], {}, None, "--artifacts"),
    ("checkpoint folder", "read-only"):
        lambda t, r: (["--artifacts", str(_mount_read_only(t / "store" / "checkpoints", r).parent)],
                      {}, None, "--artifacts"),
    ("data cache", "under a file"):
        lambda t, r: ([], {"VCR_HPO_CACHE": f"{_file(t)}/cache"}, None, "$VCR_HPO_CACHE"),
    ("data cache", "read-only"):
        lambda t, r: ([], {"VCR_HPO_CACHE": f"{_mount_read_only(t / 'ro', r)}/cache"}, None,
                      "$VCR_HPO_CACHE"),
    ("data cache", "in /proc"):
        lambda t, r: ([], {"VCR_HPO_CACHE": f"{PROC}/vcr-hpo-cache"}, None, "$VCR_HPO_CACHE"),
}


@pytest.mark.parametrize(("location", "fault"), list(CASES), ids=[" - ".join(c) for c in CASES])
def test_a_folder_the_run_cannot_write_is_one_line_and_nothing_is_written(
        location, fault, tiny_space, tmp_path, monkeypatch, capsys, request):
    space = tiny_space()
    argv, env, cwd, where = CASES[location, fault](tmp_path, request)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(cwd or here)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = sorted(tmp_path.rglob("*"))
    assert main(["run", "--space", str(space), "--n-trials", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {where}"), err
    assert "must be a folder this run can write" in err or "does not exist" in err, err
    assert sorted(tmp_path.rglob("*")) == before  # no study file, no folder, nothing


def test_writable_new_folders_pass_and_are_not_created(tmp_path, monkeypatch):
    from hpo.run.preflight import check_run_locations

    monkeypatch.setenv("VCR_HPO_CACHE", str(tmp_path / "cache" / "deep"))
    check_run_locations(f"sqlite:///{tmp_path / 's.db'}", "s", str(tmp_path / "a" / "b"))
    assert list(tmp_path.iterdir()) == []  # checking leaves nothing behind


def test_the_default_data_cache_is_not_checked(tmp_path, monkeypatch):
    """Without $VCR_HPO_CACHE an unwritable ~/.cache costs only a private copy (hpo.data)."""
    from hpo.run.preflight import check_run_locations

    monkeypatch.delenv("VCR_HPO_CACHE")
    home = _file(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    check_run_locations(f"sqlite:///{tmp_path / 's.db'}", "s", None)
    monkeypatch.setenv("VCR_HPO_CACHE", str(home / ".cache" / "vcr-hpo"))  # named: checked
    with pytest.raises(ConfigError, match=r"^\$VCR_HPO_CACHE: must be a folder this run can write"):
        check_run_locations(f"sqlite:///{tmp_path / 's.db'}", "s", None)
