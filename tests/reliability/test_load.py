"""4 workers x 15 trials through `vcr-hpo run --workers 4`: exact count, dense numbers, params in space."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def _assert_load(report) -> None:
    print("\n".join(report.lines()))
    assert report.code == 0, report.stderr[-3000:]
    assert report.worker_errors == 0, report.stderr[-3000:]
    assert report.finished == 60
    assert report.states["FAIL"] == report.states["RUNNING"] == report.states["WAITING"] == 0
    assert report.dense
    assert report.problems == []  # every param inside its distribution, conditionals respected
    assert report.max_concurrent >= 2  # the workers did run side by side


def _space(fast_space):
    return fast_space(name="load", epochs=1, samples=16, sampler="TPE")


def test_four_workers_on_sqlite(campaign, fast_space, tmp_path):
    url = f"sqlite:///{tmp_path / 'load.db'}"
    _assert_load(campaign.load_run(url, _space(fast_space), tmp_path, workers=4, n_trials=60))


@pytest.mark.postgres
def test_four_workers_on_postgres(campaign, fast_space, tmp_path, postgres_url):
    _assert_load(campaign.load_run(postgres_url, _space(fast_space), tmp_path, workers=4,
                                   n_trials=60))
