"""Fixtures of the run wing's tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def observe_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """`observe(code)`: every Python process started from here (the worker processes of a run)
    runs `code` first, as its `sitecustomize`, with `VCR_HPO_TEST_OBSERVE` naming the returned
    folder, where the code writes what it saw."""
    import hpo

    def observe(code: str) -> Path:
        observer = tmp_path / "observer"
        observer.mkdir()
        (observer / "sitecustomize.py").write_text(code)
        seen = tmp_path / "seen"
        seen.mkdir()
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            [str(observer), str(Path(hpo.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
        monkeypatch.setenv("VCR_HPO_TEST_OBSERVE", str(seen))
        return seen

    return observe
