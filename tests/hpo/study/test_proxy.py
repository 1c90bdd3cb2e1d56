"""The gRPC storage proxy: grpc:// URLs, heartbeats as trial attributes, lock-free exact claims,
status/best/dashboard through the proxy, and 8 `vcr-hpo run` workers on PostgreSQL behind it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo.cli import main
from hpo.errors import ConfigError
from hpo.study import _optuna, build_storage, check_storage_url, claim_trial, run_one_trial
from hpo.study._grpc import ATTR_BEAT, last_beat
from hpo.study._lockfree import admission
from tests._net import free_port

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

VCR = shutil.which("vcr-hpo")


@pytest.fixture
def proxy_url(grpc_extra):
    """Optuna's gRPC proxy over an in-memory storage, served from this process on loopback."""
    port = free_port()
    server = _optuna.grpc_proxy_server(optuna.storages.InMemoryStorage(), "127.0.0.1", port,
                                       ThreadPoolExecutor(max_workers=16))
    server.start()
    yield f"grpc://127.0.0.1:{port}"
    server.stop(grace=None)


def _storage(url, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_storage(url, **kw)


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url", ["grpc://127.0.0.1:13000", "grpc://proxy.cluster:1",
                                 "grpc://[::1]:65535"])
def test_grpc_urls_are_accepted(url):
    assert check_storage_url(url) == url


@pytest.mark.parametrize("url, rule", [
    ("grpc://127.0.0.1", "needs a host and a port"),
    ("grpc://:13000", "needs a host and a port"),
    ("grpc://host:0", "needs a host and a port"),
    ("grpc://host:70000", "needs a host and a port"),
    ("grpc://host:13000/db", "needs a host and a port"),
    ("grpc://user@host:13000", "only a host and a port"),
])
def test_bad_grpc_urls_are_refused_with_the_rule(url, rule):
    with pytest.raises(ConfigError, match=rule) as err:
        check_storage_url(url)
    assert str(err.value).startswith("--storage: ") and "grpc://HOST:PORT" in str(err.value)


def test_no_proxy_listening_is_one_line_naming_the_command():
    port = free_port()
    with pytest.raises(ConfigError, match="no gRPC storage proxy answers") as err:
        from hpo.study._grpc import build_grpc_storage

        build_grpc_storage(f"grpc://127.0.0.1:{port}", heartbeat_interval=None, grace_period=None,
                           max_retry=3, connect_timeout=1)
    assert f"vcr-hpo storage-proxy --storage URL --port {port}" in str(err.value)


def test_storage_proxy_refuses_a_proxy_behind_a_proxy(capsys):
    assert main(["storage-proxy", "--storage", "grpc://127.0.0.1:13000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "serves a database, not another proxy" in err


# --------------------------------------------------------------------------- admission rule


def _t(number: int, state: TrialState, **user_attrs) -> FrozenTrial:
    return FrozenTrial(number=number, state=state, value=None, datetime_start=None,
                       datetime_complete=None, params={}, distributions={}, user_attrs=user_attrs,
                       system_attrs={}, intermediate_values={}, trial_id=number + 100)


R, W, C, P, F = (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED,
                 TrialState.FAIL)


@pytest.mark.parametrize("states, mine, n, verdict", [
    ([C, C, R], 2, 3, "run"),          # two finished, nothing live below: the third slot is mine
    ([C, R, R], 2, 2, "full"),         # the live trial below takes the last slot
    ([C, W, R], 2, 2, "full"),         # so does a WAITING one below (it will be popped)
    ([C, F, R], 2, 2, "run"),          # a FAIL below frees its slot
    ([C, R, R, C], 2, 3, "full"),      # a finished trial above still counts
    ([R, R], 0, 1, "run"),             # the lowest pending trial always runs when there is room
    ([P, P, P, R], 3, 3, "full"),      # target reached
])
def test_admission_counts_finished_and_live_trials_below(states, mine, n, verdict):
    trials = [_t(i, s) for i, s in enumerate(states)]
    assert admission(trials, trials[mine], n) == verdict


def test_admission_runs_only_the_lower_copy_of_a_queued_trial():
    trials = [_t(0, F, interrupted="SIGTERM"), _t(1, W, retry_of=0), _t(2, R, retry_of=0),
              _t(3, R, baseline=True), _t(4, R, baseline=True)]
    assert admission(trials, trials[2], 10) == "duplicate"
    assert admission(trials, trials[4], 10) == "duplicate"
    assert admission(trials, trials[3], 10) == "run"
    trials[1] = _t(1, F, retry_of=0, duplicate_of=["retry_of", 0])  # a FAILed copy is no rival
    assert admission(trials, trials[2], 10) == "run"


# --------------------------------------------------------------------------- through a proxy


def test_heartbeats_through_the_proxy_fail_and_retry_a_stale_trial(proxy_url):
    storage = _storage(proxy_url, heartbeat_interval=1, grace_period=1)
    assert _optuna.heartbeat_enabled(storage)
    study = optuna.create_study(storage=storage, study_name="hb")
    alive, dead, beatless = study.ask(), study.ask(), study.ask()
    storage.record_heartbeat(_optuna.trial_id(alive))
    storage.set_trial_system_attr(_optuna.trial_id(dead), ATTR_BEAT,
                                  {"trial": _optuna.trial_id(dead), "t": time.time() - 60})
    assert last_beat(storage.get_trial(_optuna.trial_id(alive))) is not None
    # first sighting: only the trial whose beat is a minute old is stale
    ids = storage._get_stale_trial_ids(_optuna.study_id(study))
    assert ids == [_optuna.trial_id(dead)]
    time.sleep(1.3)
    storage.record_heartbeat(_optuna.trial_id(alive))
    ids = storage._get_stale_trial_ids(_optuna.study_id(study))
    assert sorted(ids) == sorted([_optuna.trial_id(dead), _optuna.trial_id(beatless)])
    optuna.storages.fail_stale_trials(study)
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[alive.number].state == R
    assert by_number[dead.number].state == by_number[beatless.number].state == F
    copies = [t for t in by_number.values() if t.state == W]
    assert sorted(t.system_attrs["failed_trial"] for t in copies) == [dead.number, beatless.number]
    assert all(last_beat(t) is None for t in copies)  # a copied beat is not the copy's own


def test_threads_claiming_through_the_proxy_finish_exactly_n_trials(proxy_url):
    """8 clients race to claim without a lock: exactly n finish, dense numbers, none lost."""
    n_trials, errors = 10, []
    optuna.create_study(storage=_storage(proxy_url, heartbeat_interval=None), study_name="race")
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        try:
            storage = _storage(proxy_url, heartbeat_interval=5, grace_period=30)
            study = optuna.load_study(study_name="race", storage=storage,
                                      sampler=optuna.samplers.RandomSampler(seed=index))
            barrier.wait()
            while (trial := claim_trial(study, n_trials)) is not None:
                run_one_trial(study, trial, lambda t: (time.sleep(0.05), t.suggest_float("x", 0, 1))[1])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    study = optuna.load_study(study_name="race", storage=_storage(proxy_url, heartbeat_interval=None))
    done = [t for t in study.trials if t.state == C]
    assert len(done) == n_trials
    assert sorted(t.number for t in done) == list(range(n_trials))
    # given-back trials wait with their params for a top-up; nothing else is left
    assert {t.state for t in study.trials} <= {C, W}


def test_a_top_up_through_the_proxy_runs_the_waiting_trials_first(proxy_url):
    storage = _storage(proxy_url, heartbeat_interval=None)
    study = optuna.create_study(storage=storage, study_name="top")
    study.enqueue_trial({"x": 0.25})
    study.enqueue_trial({"x": 0.75})
    ran = []
    while (trial := claim_trial(study, 3)) is not None:
        run_one_trial(study, trial, lambda t: ran.append(t.suggest_float("x", 0, 1)) or ran[-1])
    assert ran[:2] == [0.25, 0.75] and len(ran) == 3
    assert claim_trial(study, 3) is None


# --------------------------------------------------------------------------- commands


def _start_proxy(storage_url: str, tmp_path):
    """`vcr-hpo storage-proxy` in a subprocess; returns (process, grpc URL)."""
    port = free_port()
    log = open(tmp_path / f"proxy-{port}.log", "w+")  # noqa: SIM115 (the proxy writes it)
    cmd = [VCR] if VCR else [sys.executable, "-m", "hpo.cli"]
    proc = subprocess.Popen([*cmd, "storage-proxy", "--storage", storage_url, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"grpc://127.0.0.1:{port}"
    from hpo.study._grpc import build_grpc_storage

    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # a dead proxy fails at once
        try:
            build_grpc_storage(url, heartbeat_interval=None, grace_period=None, max_retry=3,
                               connect_timeout=2)
            return proc, url
        except ConfigError:
            continue
    proc.kill()
    log.seek(0)
    raise AssertionError(f"storage-proxy did not start (rc {proc.poll()}): {log.read()}")


def _stop(proc) -> None:
    proc.send_signal(2)
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_status_best_and_dashboard_read_through_the_proxy(tiny_study, tmp_path, capsys):
    import optuna_dashboard

    url, name, _ = tiny_study
    proc, grpc_url = _start_proxy(url, tmp_path)
    try:
        assert main(["status", "--storage", url, "--study-name", name]) == 0
        direct = capsys.readouterr().out
        assert main(["status", "--storage", grpc_url, "--study-name", name]) == 0
        via = capsys.readouterr().out
        # same counts, best and top-k lines (the proxy may list a trial's params in another order)
        assert ([sorted(line.split()) for line in via.replace(grpc_url, url).splitlines()]
                == [sorted(line.split()) for line in direct.splitlines()])
        assert main(["best", "--storage", grpc_url, "--study-name", name,
                     "-o", str(tmp_path / "b.yaml")]) == 0
        assert main(["best", "--storage", url, "--study-name", name,
                     "-o", str(tmp_path / "a.yaml")]) == 0
        import yaml

        exported = yaml.safe_load((tmp_path / "b.yaml").read_text())
        assert exported == yaml.safe_load((tmp_path / "a.yaml").read_text()) and exported
        # optuna-dashboard takes any Optuna storage: its API lists the study through the proxy
        from wsgiref.util import setup_testing_defaults

        app = optuna_dashboard.wsgi(_storage(grpc_url, heartbeat_interval=None))
        environ, out = {"PATH_INFO": "/api/studies"}, {}
        setup_testing_defaults(environ)
        body = b"".join(app(environ, lambda status, headers, exc_info=None:
                            out.setdefault("status", status)))
        assert out["status"].startswith("200") and name.encode() in body
    finally:
        _stop(proc)


def _peak_connections(url: str, proc) -> int:
    """Most connections to the test database seen while `proc` runs (polled every 0.2 s)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"),
                              poolclass=sa.pool.NullPool)
    peak = 0
    with engine.connect() as conn:
        while proc.poll() is None:
            n = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity "
                                     "WHERE datname = current_database()")).scalar()
            peak = max(peak, int(n))
            time.sleep(0.2)
    engine.dispose()
    return peak


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_workers_through_the_proxy_on_postgres(postgres_url, tiny_space, tmp_path,
                                                     grpc_extra, installed_vcr_hpo):
    """The must-show: PostgreSQL behind the proxy, `vcr-hpo run --workers 8` through it."""
    proc, grpc_url = _start_proxy(postgres_url, tmp_path)
    try:
        space = tiny_space(epochs=1)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        run = subprocess.Popen([VCR, "run", "--space", str(space), "--storage", grpc_url,
                                "--n-trials", "12", "--workers", "8", "--quiet"],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        peak = _peak_connections(postgres_url, run)
        _, err = run.communicate(timeout=900)
        assert run.returncode == 0, err
        assert "error" not in err.lower(), err
        # 8 workers and their parent hold no database connection: only the proxy's pool
        # (5 + 10 overflow) and this poller's own connection reach PostgreSQL
        assert 1 < peak <= 16, peak
    finally:
        _stop(proc)
    study = optuna.load_study(study_name="tiny", storage=_storage(postgres_url, heartbeat_interval=None))
    finished = [t for t in study.trials if t.state in (C, P)]
    assert len(finished) == 12
    assert sorted(t.number for t in finished) == list(range(12))
    assert not [t for t in study.trials if t.state in (F, R)]
    assert sum(1 for t in finished if t.user_attrs.get("baseline")) == 1
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == 12, params
