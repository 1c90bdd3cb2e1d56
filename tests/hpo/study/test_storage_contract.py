"""Optuna's own storage contract suite, run against the storage vcr-hpo builds."""

from __future__ import annotations

import warnings

import pytest
from optuna.testing.pytest_storages import StorageTestCase

from hpo.study import build_storage

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(params=["sqlite", pytest.param("postgresql",
                                               marks=[pytest.mark.postgres, pytest.mark.slow])])
def storage(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'contract.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = build_storage(url)
    yield store
    store.remove_session()
    store.engine.dispose()


class TestVcrHpoStorage(StorageTestCase):
    """All of Optuna's storage contract tests, with heartbeat and retry callback switched on."""
