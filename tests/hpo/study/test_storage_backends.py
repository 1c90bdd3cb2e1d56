"""The table of study storage backends by URL scheme: every row checked by the same tests, so a
new backend is tested the moment it is added (and must be added to EXPECTED below)."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.errors import ConfigError
from hpo.run.preflight import check_run_locations, check_storage_driver
from hpo.study import (
    STORAGE_BACKENDS,
    artifacts_home,
    build_storage,
    check_storage_url,
    sqlite_path,
    storage_backend,
)
from hpo.study._proxy import check_proxy_args
from tests._net import free_port

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# scheme -> (a good URL ({tmp} is tmp_path, {port} a closed port), a URL its rules refuse and
# the rule, the modules whose absence the client check names, lock, many machines, behind proxy)
EXPECTED = {
    "sqlite": ("sqlite:///{tmp}/s.db", ("sqlite:///:memory:", "in-memory SQLite"),
               ["sqlite3"], "flock", False, True),
    "postgresql": ("postgresql://u:secret@127.0.0.1:{port}/db",
                   ("postgresql://u@h:notaport/db", "not a database URL"),
                   ["psycopg2", "psycopg"], "advisory", True, True),
    "mysql": ("mysql+pymysql://u:secret@127.0.0.1:{port}/db",
              ("mysql://u@h:notaport/db", "not a database URL"),
              ["pymysql"], None, True, True),
    "grpc": ("grpc://127.0.0.1:{port}", ("grpc://host:13000/db", "needs a host and a port"),
             ["grpc"], None, True, False),
}
SCHEMES = list(STORAGE_BACKENDS)


def _url(scheme: str, tmp_path: Path) -> str:
    return EXPECTED[scheme][0].format(tmp=tmp_path, port=free_port())


def test_every_backend_has_its_expectations_here():
    assert set(EXPECTED) == set(STORAGE_BACKENDS)
    assert SCHEMES[0] == "sqlite"  # the default (sqlite:///studies/NAME.db)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_url_finds_its_row_with_or_without_a_driver_suffix(scheme, tmp_path):
    url = _url(scheme, tmp_path)
    backend = storage_backend(url)
    assert backend.scheme == scheme
    head, sep, rest = url.partition("://")
    assert storage_backend(f"{head.split('+')[0]}+somedriver{sep}{rest}") is backend
    assert check_storage_url(url) == url
    assert storage_backend(backend.example.split(" ")[0]) is backend


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_rows_rules_refuse_a_bad_url_in_one_line(scheme):
    bad, rule = EXPECTED[scheme][1]
    with pytest.raises(ConfigError, match="^--storage: ") as err:
        check_storage_url(bad)
    assert rule in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("url", ["foo://x", "redis://localhost/0", "not a url", "://x"])
def test_an_unknown_scheme_lists_every_row(url):
    with pytest.raises(ConfigError) as err:
        storage_backend(url, where="--warm-start")
    text = str(err.value)
    assert text.startswith("--warm-start: ") and f"got {url!r}. Use one of " in text
    for backend in STORAGE_BACKENDS.values():
        assert backend.example in text


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_local_file_decides_where_artifacts_go_and_what_preflight_checks(scheme, tmp_path):
    url = _url(scheme, tmp_path)
    path = sqlite_path(url)
    assert (path is not None) == (scheme == "sqlite")
    assert artifacts_home(url) == (tmp_path if path is not None else Path("studies"))
    art = str(tmp_path / "art")
    check_run_locations(url, "s", art)  # a server's URL: only the artifact folder is checked
    assert list(tmp_path.iterdir()) == []  # and checking created nothing
    if path is not None:  # the local file's folder is checked too
        (tmp_path / "file").write_text("x")
        blocked = url.replace(str(tmp_path), str(tmp_path / "file"))
        with pytest.raises(ConfigError, match="^--storage: must be a folder this run can write"):
            check_run_locations(blocked, "s", art)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_client_check_names_the_missing_module_and_its_fix(scheme, tmp_path, monkeypatch):
    url = _url(scheme, tmp_path)
    for module in EXPECTED[scheme][2]:
        monkeypatch.setitem(sys.modules, module, None)  # missing, installed or not
    with pytest.raises(ConfigError) as err:
        check_storage_driver(url)
    text = str(err.value)
    assert text.startswith("--storage: ") and "\n" not in text and "secret" not in text
    assert EXPECTED[scheme][2][0].split(".")[0] in text or "grpcio" in text
    assert "pip install" in text or "Python" in text


@pytest.mark.parametrize("scheme", SCHEMES)
def test_locks_machines_and_proxy_as_the_row_says(scheme, tmp_path):
    backend = STORAGE_BACKENDS[scheme]
    lock, many, proxied = EXPECTED[scheme][3:]
    assert (backend.lock, backend.many_machines, backend.behind_proxy) == (lock, many, proxied)
    url = _url(scheme, tmp_path)
    if proxied:
        check_proxy_args(url, "127.0.0.1", 13000, 4)
    else:
        with pytest.raises(ConfigError, match="serves a database, not another proxy"):
            check_proxy_args(url, "127.0.0.1", 13000, 4)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_building_opens_a_study_or_says_in_one_line_why_not(scheme, tmp_path, monkeypatch):
    from hpo.study import _grpc

    monkeypatch.setattr(_grpc, "CONNECT_TIMEOUT", 1.0)
    url = _url(scheme, tmp_path)
    if scheme == "sqlite":
        storage = build_storage(url, heartbeat_interval=None, grace_period=None)
        optuna.create_study(storage=storage, study_name="s").optimize(lambda t: 1.0, n_trials=1)
        assert Path(url.removeprefix("sqlite:///")).is_file()
        assert storage.engine.dialect.name == "sqlite"
        return
    with pytest.raises(ConfigError, match="^--storage: ") as err:  # nothing listens on {port}
        build_storage(url, heartbeat_interval=None, grace_period=None)
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


def test_a_run_on_an_unknown_scheme_is_one_line_and_writes_nothing(tiny_space, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--space", str(tiny_space()), "--storage", "foo://x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --storage: unsupported database 'foo', got 'foo://x'. Use one of "
                   + ", ".join(b.example for b in STORAGE_BACKENDS.values()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
