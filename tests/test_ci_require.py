"""With CI set, a test whose part is missing fails; without it, it skips (tests/conftest.py).

Each part is hidden from one test that needs it, run by pytest in a subprocess: PostgreSQL (its
binaries pointed at an empty folder), gRPC (`grpc` made unimportable by a sitecustomize on
PYTHONPATH) and the installed `vcr-hpo` (a PATH without it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs pytest in a subprocess

ROOT = Path(__file__).resolve().parents[1]
_HIDE_GRPC = "import sys\nsys.modules['grpc'] = None  # import grpc fails, find_spec is None\n"


def _no_postgres(tmp_path: Path, env: dict) -> None:
    empty = tmp_path / "no_postgres_bin"
    empty.mkdir(exist_ok=True)
    env["VCR_HPO_TEST_PG_BINDIR"] = str(empty)


def _no_grpc(tmp_path: Path, env: dict) -> None:
    shim = tmp_path / "no_grpc"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(_HIDE_GRPC)
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(ROOT), env.get("PYTHONPATH", "")])


def _no_vcr_hpo(tmp_path: Path, env: dict) -> None:
    env["PATH"] = "/usr/bin:/bin"  # the interpreter is run by its full path


POSTGRES_TEST = "tests/hpo/study/test_storage_contract.py::TestVcrHpoStorage::test_create_new_study[postgresql]"
PROXY_TEST = "tests/hpo/study/test_proxy.py::test_a_top_up_through_the_proxy_runs_the_waiting_trials_first"
PARTS = {  # part: (hide it, tests that need it, the line `require` writes)
    "postgres": (_no_postgres,
                 [POSTGRES_TEST],
                 "PostgreSQL binaries (initdb, pg_ctl) is missing"),
    "grpc": (_no_grpc,
             ["tests/hpo/study/test_optuna_private.py::test_grpc_proxy_server_binds_without_starting",
              PROXY_TEST],
             "the grpc extra (grpcio, protobuf) is missing"),
    "vcr-hpo": (_no_vcr_hpo,
                ["tests/hpo/cli/test_cli_validate.py::test_installed_console_script_validates"],
                "the installed vcr-hpo (on PATH) is missing"),
}


def _pytest_without(part: str, tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    hide, tests, _ = PARTS[part]
    env = {**os.environ}
    hide(tmp_path, env)
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", *tests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("part", list(PARTS))
def test_missing_part_fails_the_test_in_ci(tmp_path, part):
    got = _pytest_without(part, tmp_path, "true")
    out = got.stdout + got.stderr
    assert got.returncode == 1, out
    assert PARTS[part][2] in out
    assert "CI is set, so a missing part fails the test" in out
    n = len(PARTS[part][1])  # a fixture's failure counts as an error, a test's as failed
    assert f"{n} failed" in out or f"{n} error" in out, out
    assert " passed" not in out and " skipped" not in out


@pytest.mark.parametrize(("part", "ci"), [(p, None) for p in PARTS] + [("postgres", "false")])
def test_missing_part_skips_the_test_outside_ci(tmp_path, part, ci):
    got = _pytest_without(part, tmp_path, ci)
    out = got.stdout + got.stderr
    assert got.returncode == 0, out
    assert f"{len(PARTS[part][1])} skipped" in out and PARTS[part][2] in out
