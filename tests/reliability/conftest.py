"""Reliability fixtures: the campaign module (bench/reliability.py), a fast space, the installed CLI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VCR = shutil.which("vcr-hpo")


@pytest.fixture(scope="session")
def campaign(require):
    """bench/reliability.py as a module: the storm, load and audit code the benchmark runs too."""
    require("vcr-hpo on PATH", VCR is not None, "pip install -e .")
    spec = importlib.util.spec_from_file_location("vcr_reliability", ROOT / "bench" / "reliability.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fast_space(campaign, tmp_path):
    """Write the campaign's fast search space; call with name/epochs/samples/sampler."""
    return lambda **kw: campaign.write_space(tmp_path, **kw)


@pytest.fixture(scope="session")
def cli(campaign, tmp_path_factory):
    """The installed CLI (a zygote: `run`, `spawn`; or `fresh` processes) with empty weight caches,
    offline, one torch thread, heartbeat 1 s and grace 2 s."""
    root = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "TORCH_HOME": str(root / "torch_home"), "HF_HOME": str(root / "hf_home"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "VCR_HPO_HEARTBEAT": "1", "VCR_HPO_GRACE": "2"}
    env.pop("HF_HUB_CACHE", None)
    runner = campaign.Launcher(root, env)
    yield runner
    runner.close()
