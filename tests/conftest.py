"""Shared fixtures: no network, seeded torch, isolated weight caches, missing parts, timeouts."""

from __future__ import annotations

import os
import runpy
import signal
import socket
from pathlib import Path

import pytest
import torch

from tests._threads import one_thread

SLOW_TIMEOUT = 900  # s per slow test (the fast tier's default is `timeout` in pyproject.toml)
FULL_SUITE = 'python -m pytest -q -m ""'


# --------------------------------------------------------------------------- missing parts


def in_ci() -> bool:
    """True when the CI variable is set to anything but "", "0" or "false"."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require(component: str, available: bool, how_to_install: str) -> None:
    """Skip the calling test or fixture when `component` is missing; with CI set, fail it instead.

    CI installs every part the tests use (.ci/run), so a missing one there is a fault in the
    set-up and must not turn into a green run without, say, the PostgreSQL tests.

    Args:
        component: what is missing, as a person names it ("PostgreSQL binaries (initdb)").
        available: whether it is there.
        how_to_install: the command or step that brings it.
    """
    if available:
        return
    message = f"{component} is missing: {how_to_install}"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so a missing part fails the test)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", name="require")
def _require_fixture():
    """`require(component, available, how_to_install)` for tests and fixtures of any scope."""
    return require


def has_module(name: str) -> bool:
    """Whether `name` can be imported here (found, not imported; a module hidden by a None entry
    in sys.modules counts as missing)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@pytest.fixture(scope="session")
def grpc_extra() -> None:
    """The `grpc` extra (grpcio and protobuf), through `require`."""
    require("the grpc extra (grpcio, protobuf)",
            has_module("grpc") and has_module("google.protobuf"), 'pip install -e ".[grpc]"')


@pytest.fixture(scope="session")
def installed_vcr_hpo() -> str:
    """Path of the installed `vcr-hpo` console script on PATH, through `require`."""
    import shutil

    exe = shutil.which("vcr-hpo")
    require("the installed vcr-hpo (on PATH)", exe is not None, "pip install -e .")
    return str(exe)


def pytest_configure(config):
    """SIGTERM (a CI timeout, `kill`) stops the run like Ctrl-C, so session fixtures are torn down:
    without this the PostgreSQL cluster and the servers the tests started outlive a killed run."""

    def _terminate(signum, frame):
        pytest.exit(f"received {signal.Signals(signum).name}", returncode=128 + signum)

    signal.signal(signal.SIGTERM, _terminate)


def pytest_collection_modifyitems(config, items):
    """Slow tests get SLOW_TIMEOUT unless they carry their own timeout mark."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


def pytest_report_header(config):
    if config.option.markexpr == "not slow":
        return f"fast tier (slow tests deselected); the whole suite: {FULL_SUITE}"
    return None


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything opens a non-local socket connection."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")
                                      or self.family == socket.AF_UNIX):
            return real_connect(self, address)
        attempts.append(address)
        raise AssertionError(f"network connection attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, *a, **k: guarded(socket.socket(), address))
    yield attempts
    assert not attempts, f"network connections attempted: {attempts}"


@pytest.fixture
def weight_caches(tmp_path, monkeypatch):
    """Empty TORCH_HOME and HF cache folders, offline mode on."""
    torch_home = tmp_path / "torch_home"
    hf_home = tmp_path / "hf_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield torch_home, hf_home


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway cluster (tests/_postgres.py) for the session; stopped at the end."""
    launcher = runpy.run_path(str(Path(__file__).with_name("_postgres.py")))
    require("PostgreSQL binaries (initdb, pg_ctl)", launcher["postgres_available"](),
            "apt-get install postgresql (.ci/run does)")
    cluster = launcher["PostgresCluster"]()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """URL of a fresh, empty database on the session's throwaway cluster."""
    return postgres_cluster.create_database()


# --------------------------------------------------------------------------- threads


@pytest.fixture(name="one_thread")
def _one_thread_fixture():
    """Torch on one thread for the test (tests._threads); modules that train ask for it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    with one_thread():
        yield


# --------------------------------------------------------------------------- data cache


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    """Decoded datasets go to a session folder, never to the user's ~/.cache/vcr-hpo."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VCR_HPO_CACHE", str(tmp_path_factory.mktemp("vcr_hpo_cache")))
        yield


@pytest.fixture
def fresh_data_cache(tmp_path, monkeypatch):
    """An empty data cache folder (tmp_path/cache) and no data set kept in memory, before and
    after the test: what a test of loading or caching starts from."""
    from hpo.data import clear_memory_cache

    monkeypatch.setenv("VCR_HPO_CACHE", str(tmp_path / "cache"))
    clear_memory_cache()
    yield
    clear_memory_cache()


# --------------------------------------------------------------------------- tiny study space

TINY_SPACE = """\
study:
  name: tiny
  metric: val_acc
  direction: maximize
  n_trials: 3
  sampler: {type: Random, seed: 7}
  pruner: null
hyperparameters:
  backbone: {type: categorical, choices: [resnet10t, mobilenetv3_large_100], default: resnet10t}
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}
  dropout: {type: float, low: 0.0, high: 0.5}
fixed:
  epochs: {epochs}
  image_size: 32
  max_train_samples: 64
  synthetic_size: 160
  batch_size: 32
  device: cpu
"""


@pytest.fixture
def tiny_space(tmp_path):
    """A search space whose trials take a few seconds: 32 px, 64 images, resnet10t/mobilenet.

    Call it with the number of epochs; returns the YAML path (in tmp_path).
    """

    def write(epochs: int = 2, name: str = "tiny.yaml"):
        path = tmp_path / name
        path.write_text(TINY_SPACE.replace("{epochs}", str(epochs)))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A finished 3-trial study of the tiny space, made by `vcr-hpo run` in-process. Read-only.

    Returns (storage URL, study name, space path).
    """
    from hpo.cli import main

    root = tmp_path_factory.mktemp("tiny_study")
    space = root / "tiny.yaml"
    space.write_text(TINY_SPACE.replace("{epochs}", "2"))
    url = f"sqlite:///{root / 'tiny.db'}"
    with one_thread():
        assert main(["run", "--space", str(space), "--storage", url, "--quiet"]) == 0
    return url, "tiny", space
