"""bench/build_portfolio.py: per-task normalisation and the greedy choice after trial 0."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _module():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("build_portfolio", BENCH / "build_portfolio.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_normalise_per_task():
    m = _module()
    assert m.normalise([0.2, 0.6, 0.4]) == pytest.approx([0.0, 1.0, 0.5])
    assert m.normalise([0.3, 0.3]) == [1.0, 1.0]


def test_greedy_starts_from_trial0_and_complements_it():
    m = _module()
    # candidates 0 (trial 0) .. 3 on tasks a, b, c (already normalised)
    norm = {"a": [1.0, 0.2, 0.0, 0.9], "b": [0.0, 0.1, 1.0, 0.8], "c": [0.5, 0.0, 1.0, 0.6]}
    picks = m.greedy(norm, 3)
    # 2 covers b and c where trial 0 is weak; then everything is saturated and the rest go by
    # their own mean (3: 0.767 before 1: 0.1), never back to trial 0
    assert [i for i, _ in picks] == [2, 3, 1]
    assert picks[0][1] == 1.0


def test_greedy_gain_beats_own_mean():
    m = _module()
    norm = {"a": [1.0, 0.9, 0.0], "b": [0.0, 0.1, 0.6]}
    # 1 is better alone (0.5 vs 0.3) but 2 adds more to trial 0 on b
    assert [i for i, _ in m.greedy(norm, 1)] == [2]
