"""The Optuna private names hpo/study/_optuna.py uses still exist and behave (pinned version)."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.trial import TrialState

from hpo.study import _optuna, build_storage

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture
def study(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = build_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=5,
                                grace_period=10)
    return optuna.create_study(storage=storage, study_name="s")


def test_study_and_trial_ids_match_the_storage_rows(study):
    trial = study.ask()
    sid = _optuna.study_id(study)
    assert isinstance(sid, int) and study._storage.get_study_id_from_name("s") == sid
    storage = _optuna.storage_of(study)
    assert storage.get_trial(_optuna.trial_id(trial)).number == trial.number == 0


def test_unwrap_storage_reaches_the_rdb_storage_under_the_cache(study):
    assert type(study._storage).__name__ == "_CachedStorage"
    assert isinstance(_optuna.unwrap_storage(study), optuna.storages.RDBStorage)
    assert _optuna.unwrap_storage(study) is _optuna.unwrap_storage(study._storage)


def test_heartbeat_enabled_reads_the_storage_setting(study, tmp_path):
    assert _optuna.heartbeat_enabled(_optuna.storage_of(study)) is True
    plain = build_storage(f"sqlite:///{tmp_path / 'p.db'}", heartbeat_interval=None,
                          grace_period=None)
    assert _optuna.heartbeat_enabled(plain) is False


def test_models_and_the_start_column_query_the_trials_table(study):
    import sqlalchemy as sa

    study.ask()
    m = _optuna.models()
    for name in ("TrialModel", "TrialValueModel", "TrialHeartbeatModel", "TrialUserAttributeModel"):
        assert hasattr(m, name), name
    assert m.TrialValueModel.TrialValueType.FINITE is not None
    query = sa.select(m.TrialModel.number, _optuna.trial_started_column()).where(
        m.TrialModel.state == TrialState.RUNNING)
    with _optuna.unwrap_storage(study).engine.connect() as conn:
        rows = conn.execute(query).all()
    assert len(rows) == 1 and rows[0][0] == 0 and rows[0][1] is not None


def test_stop_requested_turns_a_samplers_stop_into_a_flag():
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [0, 1]}))
    with pytest.raises(RuntimeError, match="Study.stop"):  # what the runner met before
        study.stop()
    for expect in (False, True):
        trial = study.ask()
        trial.suggest_categorical("x", [0, 1])
        with _optuna.stop_requested(study) as stopped:
            study.tell(trial, 1.0)
        assert stopped == [expect]
    with pytest.raises(RuntimeError):  # the flag and the guard are restored after the block
        study.stop()


def test_grid_size_counts_the_grid():
    assert _optuna.grid_size(optuna.samplers.GridSampler({"x": [0, 1], "y": [1, 2, 3]})) == 6
    assert _optuna.grid_size(optuna.samplers.RandomSampler()) is None


def test_set_constraints_is_read_by_optuna_and_tpe_as_infeasible(study):
    """The constraint list lands where FrozenTrial.constraints, TPE and optuna-dashboard read."""
    from optuna.samplers._tpe.sampler import _get_infeasible_trial_score

    trial = study.ask()
    _optuna.set_constraints(trial, [1.0])
    study.tell(trial, float("-inf"))
    frozen = study.trials[0]
    assert _optuna.constraints_key() == "constraints"
    assert frozen.system_attrs["constraints"] == [1.0]  # the dashboard reads this list
    assert frozen.constraints == {"0": 1.0}
    assert _get_infeasible_trial_score(frozen) == 1.0


def test_artifact_metadata_lives_under_the_prefix_we_read(study, tmp_path):
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    assert ARTIFACTS_ATTR_PREFIX == _optuna.ARTIFACT_ATTR_PREFIX
    (tmp_path / "a.txt").write_text("a")
    aid = upload_artifact(artifact_store=FileSystemArtifactStore(tmp_path), study_or_trial=study,
                          file_path=str(tmp_path / "a.txt"))
    attrs = _optuna.storage_of(study).get_study_system_attrs(_optuna.study_id(study))
    assert _optuna.ARTIFACT_ATTR_PREFIX + aid in attrs


def test_base_heartbeat_is_the_interface_rdb_storage_implements(study):
    base = _optuna.base_heartbeat()
    assert isinstance(_optuna.unwrap_storage(study), base)
    assert {"record_heartbeat", "_get_stale_trial_ids", "get_heartbeat_interval",
            "get_heartbeat_stale_trial_callback"} <= set(base.__abstractmethods__)


def test_grpc_proxy_server_binds_without_starting(grpc_extra):
    from concurrent.futures import ThreadPoolExecutor

    server = _optuna.grpc_proxy_server(optuna.storages.InMemoryStorage(), "127.0.0.1", 0,
                                       ThreadPoolExecutor(max_workers=1))
    assert hasattr(server, "start") and hasattr(server, "wait_for_termination")
    server.stop(grace=None)
