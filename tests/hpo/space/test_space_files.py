"""Search-space files: bare-name lookup, shipped spaces, `vcr-hpo spaces`, the built wheel."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.errors import ConfigError
from hpo.run.portfolio import PORTFOLIO_FILE
from hpo.space import copy_shipped_space, load_search_space, shipped_spaces

ROOT = Path(__file__).resolve().parents[3]
SOURCE_SPACES = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml")
                       if p.name != PORTFOLIO_FILE)  # data beside the spaces, not a space
_SPACE = "study: {{name: {name}}}\nhyperparameters:\n  lr: {{type: float, low: 0.1, high: 0.2}}\n"


def test_shipped_spaces_are_the_source_folder():
    """In a checkout the package's folder is a link to search_spaces/ (one copy of each file;
    the built wheel's copies are compared byte for byte in test_built_wheel_ships_the_spaces)."""
    link = ROOT / "hpo" / "search_spaces"
    assert link.is_symlink() and link.resolve() == (ROOT / "search_spaces").resolve()
    shipped = shipped_spaces()
    assert [s.name for s in shipped] == SOURCE_SPACES
    for s in shipped:
        assert Path(str(s.resource)).resolve() == (ROOT / "search_spaces" / s.name).resolve()
        assert s.description and not s.description.startswith(("#", "yaml-language-server"))
        assert f"# {s.description}" in s.read_text()


def test_bare_name_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_search_space("hyperparameters.yaml").study.name == "vcr-demo"  # shipped
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "hyperparameters.yaml").write_text(_SPACE.format(name="in-sub"))
    space = load_search_space("hyperparameters.yaml")
    assert space.study.name == "in-sub" and space.source == "search_spaces/hyperparameters.yaml"
    (tmp_path / "hyperparameters.yaml").write_text(_SPACE.format(name="in-cwd"))
    assert load_search_space("hyperparameters.yaml").study.name == "in-cwd"
    # a path with a folder is read as given, never looked up elsewhere
    with pytest.raises(ConfigError, match="search space file not found"):
        load_search_space("other/vcr_full.yaml")


def test_missing_space_names_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_search_space("hyperparams.yaml")
    text = str(info.value)
    assert text.startswith("hyperparams.yaml: search space file not found, got 'hyperparams.yaml'")
    assert "search_spaces/hyperparams.yaml" in text and ", ".join(SOURCE_SPACES) in text


def test_copy_shipped_space_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert copy_shipped_space("hyperparameters") == Path("hyperparameters.yaml")
    source = ROOT / "search_spaces" / "hyperparameters.yaml"
    assert Path("hyperparameters.yaml").read_text() == source.read_text()
    (tmp_path / "mine.yaml").write_text("keep me")
    with pytest.raises(ConfigError, match="mine.yaml: already exists"):
        copy_shipped_space("vcr_full.yaml", tmp_path / "mine.yaml")
    assert (tmp_path / "mine.yaml").read_text() == "keep me"
    (tmp_path / "d").mkdir()
    assert copy_shipped_space("vcr_full.yaml", tmp_path / "d") == tmp_path / "d" / "vcr_full.yaml"
    with pytest.raises(ConfigError, match="Did you mean 'vcr_full.yaml'"):
        copy_shipped_space("vcr_ful")


def test_cli_spaces_lists_and_copies(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for s in shipped_spaces():
        assert any(line.startswith(s.name) and s.description in line for line in out.splitlines())
    assert main(["spaces", "--copy", "vcr_full.yaml", "start.yaml"]) == 0
    assert "start.yaml" in capsys.readouterr().out
    assert load_search_space("start.yaml").study.name == "vcr-full"
    before = (tmp_path / "start.yaml").read_bytes()
    assert main(["spaces", "--copy", "hyperparameters.yaml", "start.yaml"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "start.yaml: already exists" in err
    assert (tmp_path / "start.yaml").read_bytes() == before
    assert main(["spaces", "start.yaml"]) == 2  # DEST without --copy
    assert "only with --copy" in capsys.readouterr().err


@pytest.mark.slow
def test_built_wheel_ships_the_spaces(tmp_path):
    """A regular install, not this checkout: build the wheel, install it into a fresh venv and
    run the design card's command from an empty folder."""
    # Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds, and a
    # stale build/ of an older layout would leak into the wheel.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "studies", "tests",
        "bench"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(src)], check=True, timeout=600,
                   capture_output=True, cwd=tmp_path)
    wheel = next(dist.glob("vcr_hpo-*.whl"))
    env_dir = tmp_path / "venv"
    python = _venv_with_this_interpreters_packages(env_dir)
    # --ignore-installed: the venv sees this machine's editable install and would skip the wheel
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--ignore-installed", "-q", str(wheel)],
                   check=True, timeout=600, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import hpo; print(hpo.__file__)"], cwd=empty,
                           env=env, capture_output=True, text=True, check=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout  # not the checkout
    seen = subprocess.run([str(python), "-c", "import sys; print('\\n'.join(sys.path))"],
                          cwd=empty, env=env, capture_output=True, text=True, check=True,
                          timeout=60).stdout.splitlines()
    assert sysconfig.get_paths()["purelib"] in seen  # this interpreter's packages, venv or not
    exe = str(env_dir / "bin" / "vcr-hpo")
    out = subprocess.run([exe, "validate", "--space", "hyperparameters.yaml"], cwd=empty, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "study:    vcr-demo: maximize val_acc" in out.stdout
    assert str(env_dir) in out.stdout.splitlines()[0]  # space: <venv>/.../hpo/search_spaces/...
    listing = subprocess.run([exe, "spaces"], cwd=empty, env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()[2:2 + len(SOURCE_SPACES)]] \
        == SOURCE_SPACES
    assert PORTFOLIO_FILE not in listing.stdout  # data beside the spaces, shipped in the wheel:
    shipped = subprocess.run([str(python), "-c", ("from hpo.run.portfolio import load_portfolio; "
                              "print(len(load_portfolio()))")], cwd=empty, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert shipped.returncode == 0 and int(shipped.stdout) >= 1, shipped.stderr
    assert list(empty.iterdir()) == []  # nothing written
    shipped = Path(where.stdout.strip()).parent / "search_spaces"
    assert not shipped.is_symlink()  # a copy in the wheel, the same bytes as the source
    in_wheel = sorted([*SOURCE_SPACES, PORTFOLIO_FILE])  # the spaces and the portfolio beside them
    assert sorted(p.name for p in shipped.glob("*.yaml")) == in_wheel
    for name in in_wheel:
        assert (shipped / name).read_bytes() == (ROOT / "search_spaces" / name).read_bytes()


def _venv_with_this_interpreters_packages(env_dir: Path) -> Path:
    """A fresh venv that sees the packages of the interpreter running the tests (torch, optuna...)
    but not its vcr-hpo. `system_site_packages` alone sees the *base* interpreter's packages,
    which inside a venv are not the installed ones; a .pth file names this interpreter's
    site-packages (its lines are added to sys.path; the .pth files in them, such as an editable
    install's, are not run). Returns the venv's python."""
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(python), "-c", ask], capture_output=True, text=True,
                             check=True, timeout=60).stdout.strip()
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                          sysconfig.get_paths()["platlib"]])
    (Path(purelib) / "_vcr_hpo_test_parent.pth").write_text(
        "".join(f"{p}\n" for p in ours if Path(p).is_dir()))
    return python
