"""The artifact store: its location rules, checks before storage, helpers, the dashboard's view."""

from __future__ import annotations

import io
import json
import wsgiref.util

import optuna
import pytest

from hpo.errors import ConfigError
from hpo.trial.artifacts import (
    ATTR_ARTIFACTS,
    artifact_store,
    check_location,
    default_location,
    download,
    find_artifact,
    list_trial_artifacts,
    record_location,
    study_location,
    upload,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    return url, optuna.create_study(storage=url, study_name="demo")


def test_default_location_is_beside_the_sqlite_file_or_in_studies():
    assert default_location("sqlite:///runs/x/demo.db", "demo") == "runs/x/demo-artifacts"
    assert default_location("sqlite:///studies/demo.db", "other") == "studies/other-artifacts"
    assert default_location("postgresql://u@h:5432/db", "demo") == "studies/demo-artifacts"


@pytest.mark.parametrize("location, rule", [
    ("http://host/x", "unsupported location scheme 'http'"),
    ("s3://", "s3:// needs a bucket"),
    ("", "must name a folder"),
])
def test_check_location_rejects_bad_locations_with_one_line(location, rule):
    with pytest.raises(ConfigError, match="^--artifacts: ") as info:
        check_location(location)
    assert rule in str(info.value) and "\n" not in str(info.value)


def test_check_location_names_the_missing_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)  # missing, installed or not
    with pytest.raises(ConfigError, match=r'gs:// artifacts need google.cloud.storage, got '
                                          r"'gs://bucket/p'\. Run: pip install -e \"\.\[gcs\]\""):
        check_location("gs://bucket/p")


def test_check_location_rejects_a_file_and_accepts_a_new_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="must be a folder"):
        check_location(str(tmp_path / "f"))
    assert check_location(str(tmp_path / "new")) == str(tmp_path / "new")
    assert check_location(f"file://{tmp_path}/new") == f"{tmp_path}/new"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_plan_run_checks_artifacts_before_any_storage(tmp_path, tiny_space):
    from hpo.run.api import plan_run

    db = tmp_path / "s.db"
    with pytest.raises(ConfigError, match="--artifacts: unsupported location scheme"):
        plan_run(tiny_space(), storage=f"sqlite:///{db}", artifacts="ftp://x/y", preflight=False)
    assert not db.exists()
    plan = plan_run(tiny_space(), storage=f"sqlite:///{db}", artifacts=str(tmp_path / "a"),
                    preflight=False)
    assert plan.artifacts == str(tmp_path / "a") and not db.exists()


def test_upload_list_download_round_trip_on_trial_and_study(study, tmp_path):
    url, st = study
    store = artifact_store(url, "demo")
    src = tmp_path / "m.json"
    src.write_text('{"a": 1}')

    def objective(trial):
        upload(trial, store, src, name="confusion.json")
        assert [m.filename for m in list_trial_artifacts(trial)] == ["confusion.json"]
        return 1.0

    st.optimize(objective, n_trials=1)
    frozen = st.trials[0]
    meta = find_artifact(frozen, "confusion.json")
    assert meta is not None and meta.mimetype == "application/json"
    assert download(store, meta.artifact_id, tmp_path / "out" / "c.json").read_text() == '{"a": 1}'
    assert (tmp_path / f"demo-artifacts/{meta.artifact_id}").is_file()  # beside the study
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"\0\1")
    upload(st, store, weights)
    (study_meta,) = list_trial_artifacts(st)
    assert (study_meta.filename, study_meta.mimetype) == ("w.pt", "application/octet-stream")
    assert find_artifact(frozen, "nothing.png") is None


def test_listing_skips_artifacts_deleted_the_dashboards_way(study, tmp_path):
    from hpo.study import _optuna

    url, st = study
    store = artifact_store(url, "demo")
    (tmp_path / "a.txt").write_text("a")
    aid = upload(st, store, tmp_path / "a.txt")
    _optuna.storage_of(st).set_study_system_attr(_optuna.study_id(st), f"artifacts:{aid}",
                                                 json.dumps(None))
    assert list_trial_artifacts(st) == []
    with pytest.raises(TypeError):  # what Optuna's own listing does with it
        optuna.artifacts.get_all_artifact_meta(st)


class _Breaks(io.RawIOBase):
    """A stream that fails after its first chunk, as a killed upload would."""

    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.sent:
            raise OSError("connection lost")
        self.sent = True
        b[:4] = b"half"
        return 4


def test_folder_store_write_is_all_or_nothing(tmp_path):
    store = artifact_store("sqlite:///x.db", "x", str(tmp_path / "store"))
    store.write("checkpoints/k.pt", io.BytesIO(b"complete"))
    with pytest.raises(OSError, match="connection lost"):
        store.write("checkpoints/k.pt", _Breaks())
    with store.open_reader("checkpoints/k.pt") as f:
        assert f.read() == b"complete"
    assert sorted(p.name for p in (tmp_path / "store/checkpoints").iterdir()) == ["k.pt"]


def test_location_is_recorded_and_found_without_the_flag(study, tmp_path):
    url, st = study
    assert study_location(st, url) == default_location(url, "demo")
    record_location(st, str(tmp_path / "elsewhere"))
    again = optuna.load_study(study_name="demo", storage=url)
    assert again.user_attrs[ATTR_ARTIFACTS] == str(tmp_path / "elsewhere")
    assert study_location(again, url) == str(tmp_path / "elsewhere")
    assert study_location(again, url, str(tmp_path / "flag")) == str(tmp_path / "flag")


def _get(app, path: str) -> tuple[str, bytes]:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    return status[0], body


def test_dashboard_serves_the_trial_artifacts_from_the_recorded_store(study, tmp_path):
    import argparse

    from optuna_dashboard import wsgi

    from hpo.cli._serve import _dashboard_store
    from hpo.study import _optuna

    url, st = study
    location = str(tmp_path / "kept-here")
    record_location(st, location)
    store = artifact_store(url, "demo", location)
    (tmp_path / "cm.png").write_bytes(b"\x89PNG fake")
    st.optimize(lambda t: (upload(t, store, tmp_path / "cm.png"), 1.0)[1], n_trials=1)

    ns = argparse.Namespace(study_name=None, artifacts=None)
    served = _dashboard_store(ns, url, _optuna.storage_of(st))
    assert served.base_path == store.base_path
    app = wsgi(url, artifact_store=served)
    sid, trial = _optuna.study_id(st), st.trials[0]
    status, body = _get(app, f"/api/studies/{sid}")
    assert status.startswith("200"), body[:200]
    shown = json.loads(body)["trials"][0]["artifacts"]
    assert [a["filename"] for a in shown] == ["cm.png"]
    status, body = _get(app, f"/artifacts/{sid}/{_optuna.trial_id(trial)}/{shown[0]['artifact_id']}")
    assert status.startswith("200") and body == b"\x89PNG fake"
