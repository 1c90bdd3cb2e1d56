"""With CI set, a test whose part is missing fails; without it, it skips (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs pytest in a subprocess

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_TEST = "tests/hpo/test_storage_contract.py::TestVcrHpoStorage::test_create_new_study[postgresql]"


def _pytest_without_postgres(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """One PostgreSQL test, run by pytest in a subprocess on a machine that seems to lack
    PostgreSQL: the launcher is pointed at an empty folder for its binaries."""
    empty = tmp_path / "no_postgres_bin"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "VCR_HPO_TEST_PG_BINDIR": str(empty)}
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", POSTGRES_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("ci", ["true"])
def test_missing_postgres_fails_the_test_in_ci(tmp_path, ci):
    got = _pytest_without_postgres(tmp_path, ci)
    out = got.stdout + got.stderr
    assert got.returncode == 1, out
    assert "PostgreSQL binaries (initdb, pg_ctl) is missing" in out
    assert "CI is set, so a missing part fails the test" in out
    assert " passed" not in out and " skipped" not in out


@pytest.mark.parametrize("ci", [None, "false"])
def test_missing_postgres_skips_the_test_outside_ci(tmp_path, ci):
    got = _pytest_without_postgres(tmp_path, ci)
    out = got.stdout + got.stderr
    assert got.returncode == 0, out
    assert "1 skipped" in out and "PostgreSQL binaries (initdb, pg_ctl) is missing" in out
