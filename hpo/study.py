"""Study storage, sampler and pruner wiring, resume and the run loop."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from .errors import ConfigError, VcrHpoError

_logger = logging.getLogger(__name__)

__all__ = [
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "SQLITE_BUSY_TIMEOUT",
    "DatabaseLockedError",
    "RunInterrupted",
    "SpaceChangedError",
    "StorageFaultError",
    "StudyStatus",
    "TooManyFailuresError",
    "build_storage",
    "busy_cores",
    "check_storage_url",
    "claim_lock",
    "claim_trial",
    "count_states",
    "cpu_threads",
    "default_storage_url",
    "fail_beatless_trials",
    "finished_count",
    "interrupt_on_signals",
    "open_study",
    "rdb_storage",
    "requeue_interrupted",
    "resume_view",
    "run_one_trial",
    "run_trials",
    "sampler_seed",
    "space_diff",
    "stale_running",
    "study_status",
    "top_trial_ids",
    "translate_storage_errors",
]

HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial
GRACE_PERIOD = 30  # a RUNNING trial without a heartbeat for this long is stale (FAIL, retried)
SQLITE_BUSY_TIMEOUT = 60  # seconds a SQLite writer waits for the lock before "database is locked"
MAX_RETRY = 3  # retries of one stale trial (same params)
MAX_FAILURES_IN_A_ROW = 10  # FAILed trials in a row before a run gives up (n_trials counts finished)


def _postgres_driver(url: str) -> str:
    """Pin `postgresql://` to psycopg2 (the `postgres` extra) when psycopg 3 is absent.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; users write the bare form.
    """
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def build_storage(
    url: str,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
    grace_period: int | None = GRACE_PERIOD,
) -> optuna.storages.RDBStorage:
    """The RDB storage vcr-hpo uses: heartbeat + stale-trial retry, SQLite busy timeout, pre-ping.

    Args:
        url: an SQLAlchemy URL (`sqlite:///path.db`, `postgresql://user@host/db`).
        heartbeat_interval: seconds; None turns heartbeats off.
        grace_period: seconds after the last heartbeat before a RUNNING trial counts as stale.

    Raises:
        ConfigError: the URL is not one Optuna's RDB storage accepts.
    """
    url = _postgres_driver(url)
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    elif url.startswith("postgresql") or url.startswith("mysql"):
        engine_kwargs = {"pool_pre_ping": True}
        import importlib.util

        if url.startswith("postgresql") and not any(
            importlib.util.find_spec(m) for m in ("psycopg2", "psycopg")
        ):
            raise ConfigError(
                f"--storage: no PostgreSQL driver installed, got {url!r}. "
                'Run: pip install -e ".[postgres]"'
            )
    else:
        raise ConfigError(
            f"--storage: unsupported storage URL, got {url!r}. "
            "Use sqlite:///path.db or postgresql://user:pass@host:port/db"
        )
    import sqlalchemy.exc

    callback = None
    with warnings.catch_warnings():
        # heartbeats and the retry callback are "experimental" since Optuna 2.8; we rely on them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat_interval is not None:
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        try:
            with _schema_lock(url):
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=callback,
                )
        except sqlalchemy.exc.OperationalError as exc:  # no server, refused login, unopenable file
            from sqlalchemy.engine import make_url

            shown = make_url(url).render_as_string(hide_password=True)
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise ConfigError(
                f"--storage: cannot open the database, got {shown!r} ({reason}). Check the path, "
                "or that the server runs and the host, port, user and password are right"
            ) from None


#: advisory-lock key of Optuna's table creation (study ids, the claim locks' keys, start at 1)
_PG_SCHEMA_KEY = 0


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """PostgreSQL: one process at a time creates Optuna's tables. Several machines starting on a
    new database otherwise race on CREATE TYPE and all but one fail with a UniqueViolation."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with _pg_advisory_lock(engine, _PG_SCHEMA_KEY):
            yield
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- storage URLs

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_storage_url(study_name: str) -> str:
    """`sqlite:///studies/<study_name>.db`, relative to the current folder."""
    if not _STUDY_NAME.match(study_name):
        raise ConfigError(
            f"--study-name: must be letters, digits, '.', '_' or '-' (it names a file), "
            f"got {study_name!r}. Choose a name such as vcr-demo"
        )
    return f"sqlite:///studies/{study_name}.db"


def check_storage_url(url: str, *, where: str = "--storage") -> str:
    """Validate a storage URL without connecting or creating anything. Returns it unchanged.

    Raises:
        ConfigError: not an SQLAlchemy URL, an unsupported backend, in-memory SQLite, or an
            SQLite file whose folder does not exist.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    fix = "Use sqlite:///studies/NAME.db or postgresql://user:pass@host:5432/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"{where}: not a database URL, got {url!r}. {fix}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            raise ConfigError(
                f"{where}: an in-memory SQLite study can be neither resumed nor shared, got {url!r}. "
                "Give a file: sqlite:///studies/NAME.db"
            )
        if not Path(db).parent.is_dir():
            raise ConfigError(
                f"{where}: the folder of the SQLite file does not exist, got {url!r}. "
                f"Create {Path(db).parent} first or choose another path"
            )
    elif backend not in ("postgresql", "mysql"):
        raise ConfigError(f"{where}: unsupported database {backend!r}, got {url!r}. {fix}")
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL, None for other databases."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" else None


# --------------------------------------------------------------------------- resume

#: Study user attrs vcr-hpo writes (the dashboard shows them).
ATTR_SPACE_YAML = "space_yaml"
ATTR_FINGERPRINT = "space_fingerprint"
ATTR_CANONICAL = "space_canonical"
ATTR_OVERRIDES = "overrides"
ATTR_VERSION = "vcr_hpo_version"
ATTR_BASELINE = "baseline_enqueued"
ATTR_TARGET = "n_trials"  # the latest run's target of finished trials
ATTR_REQUEUED = "requeued_interrupted"  # numbers of interrupted trials already queued again

# A budget is not part of what a trial means: raising n_trials or the timeout is a top-up.
_BUDGET_KEYS = {"n_trials", "timeout", "name", "sampler", "pruner"}
# Where a trial runs does not change what it measures.
_PLACEMENT_FIELDS = {"device", "num_workers"}


class SpaceChangedError(ConfigError):
    """The search space (or the --set overrides) differ from the ones the study started with."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k in value:
            out.update(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def resume_view(canonical: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """What must stay equal on resume: the space without its budget, plus the overrides."""
    view = {k: v for k, v in canonical.items() if k != "study"}
    study = canonical.get("study")
    if isinstance(study, Mapping):
        view["study"] = {k: v for k, v in study.items() if k not in _BUDGET_KEYS}
    view["overrides"] = {k: v for k, v in overrides.items() if k not in _PLACEMENT_FIELDS}
    return json.loads(json.dumps(view, sort_keys=True, default=str))


def space_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Readable differences between two resume views, one `path: old -> new` line each."""
    a, b = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            lines.append(f"- {key}: {json.dumps(a[key])}")
        elif key not in a:
            lines.append(f"+ {key}: {json.dumps(b[key])}")
        elif a[key] != b[key]:
            lines.append(f"~ {key}: {json.dumps(a[key])} -> {json.dumps(b[key])}")
    return lines


def sampler_seed(base: int | None, n_existing: int, worker_index: int = 0) -> int | None:
    """The sampler seed for one process joining a study.

    A fresh study's first worker uses the space's seed as written; a resumed run (trials already
    exist) or another worker gets a seed derived from all three, so a seeded sampler does not
    replay the configurations drawn before. `run_trials(reseed=...)` counts `n_existing` under
    the claim lock, so concurrent processes (even on several machines) get different seeds too.
    """
    if base is None:
        return None
    if n_existing == 0 and worker_index == 0:
        return int(base)
    return int(np.random.SeedSequence([int(base), int(n_existing), int(worker_index)]).generate_state(1)[0])


def package_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("vcr-hpo")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _study_id(storage: optuna.storages.BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def open_study(
    space: Any,
    storage: optuna.storages.RDBStorage,
    *,
    study_name: str,
    overrides: Mapping[str, Any] | None = None,
    allow_space_change: bool = False,
    worker_index: int = 0,
    n_trials: int | None = None,
    where: str = "--storage",
) -> optuna.Study:
    """Create the study or load it for a resume, after checking it still matches the space.

    On a new study stores the space (YAML, fingerprint, canonical form), the overrides, the
    package version and the metric names, and enqueues the space's `default:` baseline once.

    Raises:
        ConfigError: the stored study optimises other directions.
        SpaceChangedError: the space or overrides changed and `allow_space_change` is False.
    """
    from .algorithms import build_pruner, build_sampler

    overrides = dict(overrides or {})
    directions = [str(d).lower() for d in space.study.directions]
    view = resume_view(space.canonical(), overrides)
    study_id = _study_id(storage, study_name)
    n_existing = 0
    if study_id is not None:
        stored = [d.name.lower() for d in storage.get_study_directions(study_id)]
        if stored != directions:
            raise ConfigError(
                f"{where}: study {study_name!r} optimises {stored}, the space asks {directions}, "
                f"got a direction change. Use a new --study-name (Optuna cannot change directions)"
            )
        attrs = storage.get_study_user_attrs(study_id)
        old = attrs.get(ATTR_CANONICAL)
        if old is not None:
            diff = space_diff(resume_view(old, attrs.get(ATTR_OVERRIDES, {})), view)
            if diff and not allow_space_change:
                raise SpaceChangedError(
                    f"{where}: study {study_name!r} was started with another search space, got "
                    f"{len(diff)} change(s). Restore the space, pass --allow-space-change, or use "
                    "a new --study-name\n" + "\n".join("  " + line for line in diff)
                )
        n_existing = sum(count_states(storage, study_id).values())
    seed = sampler_seed(space.study.sampler.args.get("seed"), n_existing, worker_index)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=directions,
        sampler=build_sampler(space, seed=seed),
        pruner=build_pruner(space.study.pruner),
        load_if_exists=True,
    )
    attrs = study.user_attrs
    if attrs.get(ATTR_FINGERPRINT) != space.fingerprint or attrs.get(ATTR_OVERRIDES) != overrides:
        study.set_user_attr(ATTR_SPACE_YAML, space.text)
        study.set_user_attr(ATTR_FINGERPRINT, space.fingerprint)
        study.set_user_attr(ATTR_CANONICAL, json.loads(json.dumps(space.canonical(), default=str)))
        study.set_user_attr(ATTR_OVERRIDES, overrides)
    if n_trials is not None and attrs.get(ATTR_TARGET) != n_trials:
        study.set_user_attr(ATTR_TARGET, n_trials)
    version = package_version()
    if attrs.get(ATTR_VERSION) != version:
        study.set_user_attr(ATTR_VERSION, version)
    metrics = list(space.study.metrics)
    if metrics and study.metric_names != metrics:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metrics)
    if not attrs.get(ATTR_BASELINE):
        with claim_lock(study):
            if not study._storage.get_study_user_attrs(study._study_id).get(ATTR_BASELINE):
                params = space.default_params()
                if params:
                    study.enqueue_trial(dict(params), user_attrs={"baseline": True})
                study.set_user_attr(ATTR_BASELINE, True)
    return study


# --------------------------------------------------------------------------- storage-level queries
# Status must stay fast on studies of 10,000 trials: count and rank in SQL, load only what is shown.


def rdb_storage(storage: Any) -> optuna.storages.RDBStorage:
    """The RDBStorage under a study's storage (Optuna wraps it in a cache)."""
    storage = getattr(storage, "_storage", storage)  # a Study
    storage = getattr(storage, "_backend", storage)  # its _CachedStorage
    if not isinstance(storage, optuna.storages.RDBStorage):
        raise ConfigError(f"--storage: vcr-hpo needs an RDB storage, got {type(storage).__name__}. "
                          "Use sqlite:///... or postgresql://...")
    return storage


def _models():
    from optuna.storages._rdb import models

    return models


def count_states(storage: optuna.storages.RDBStorage, study_id: int) -> dict[TrialState, int]:
    """Number of trials in each state, counted by the database."""
    import sqlalchemy as sa

    storage = rdb_storage(storage)
    m = _models()
    query = (
        sa.select(m.TrialModel.state, sa.func.count())
        .where(m.TrialModel.study_id == study_id)
        .group_by(m.TrialModel.state)
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    counts = {state: 0 for state in TrialState}
    counts.update({TrialState[str(state.name)]: int(n) for state, n in rows})
    return counts


def finished_count(counts: Mapping[TrialState, int]) -> int:
    """Trials that count toward `n_trials`: COMPLETE and PRUNED."""
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]


def top_trial_ids(
    storage: optuna.storages.RDBStorage, study_id: int, k: int, *, maximize: bool, objective: int = 0
) -> list[int]:
    """Ids of the k best COMPLETE trials on one objective, ranked by the database."""
    import sqlalchemy as sa

    storage = rdb_storage(storage)
    m = _models()
    value = m.TrialValueModel.value
    query = (
        sa.select(m.TrialModel.trial_id)
        .join(m.TrialValueModel, m.TrialValueModel.trial_id == m.TrialModel.trial_id)
        .where(
            m.TrialModel.study_id == study_id,
            m.TrialModel.state == TrialState.COMPLETE,
            m.TrialValueModel.objective == objective,
            m.TrialValueModel.value_type == m.TrialValueModel.TrialValueType.FINITE,
        )
        .order_by(value.desc() if maximize else value.asc(), m.TrialModel.number.asc())
        .limit(k)
    )
    with storage.engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(query).all()]


def stale_running(
    storage: optuna.storages.RDBStorage, study_id: int, grace_period: float
) -> list[tuple[int, float | None]]:
    """RUNNING trials whose last heartbeat is older than the grace period: (number, age seconds).

    A RUNNING trial with no heartbeat at all (a run without heartbeats) has age None.
    """
    import sqlalchemy as sa

    storage = rdb_storage(storage)
    m = _models()
    query = (
        sa.select(m.TrialModel.number, m.TrialHeartbeatModel.heartbeat)
        .outerjoin(m.TrialHeartbeatModel, m.TrialHeartbeatModel.trial_id == m.TrialModel.trial_id)
        .where(m.TrialModel.study_id == study_id, m.TrialModel.state == TrialState.RUNNING)
        .order_by(m.TrialModel.number)
    )
    with storage.engine.connect() as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar()
        rows = conn.execute(query).all()
    now = now.replace(tzinfo=None) if hasattr(now, "replace") else now
    out = []
    for number, beat in rows:
        if beat is None:
            out.append((int(number), None))
            continue
        age = (now - beat.replace(tzinfo=None)).total_seconds()
        if age > grace_period:
            out.append((int(number), age))
    return out


def _interrupted_numbers(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    import sqlalchemy as sa

    storage = rdb_storage(storage)
    m = _models()
    attr = m.TrialUserAttributeModel
    query = (
        sa.select(m.TrialModel.number)
        .join(attr, attr.trial_id == m.TrialModel.trial_id)
        .where(
            m.TrialModel.study_id == study_id,
            m.TrialModel.state == TrialState.FAIL,
            attr.key == "interrupted",
        )
    )
    with storage.engine.connect() as conn:
        return sorted(int(r[0]) for r in conn.execute(query).all())


# --------------------------------------------------------------------------- claiming trials

_PG_LOCK_NAMESPACE = 0x56435248  # "VCRH": keeps our advisory locks apart from other users'


@contextmanager
def claim_lock(study: optuna.Study) -> Iterator[None]:
    """Serialise "count the trials, then start one" across workers, so n_trials is exact.

    SQLite (one machine): an flock on `<db>-lock` beside the file. PostgreSQL (many machines): a
    session advisory lock keyed by the study. Other databases: no lock (a worker may overshoot).
    """
    storage = rdb_storage(study)
    path = sqlite_path(storage.url)
    if path is not None:
        with open(path.with_name(path.name + "-lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif storage.engine.dialect.name == "postgresql":
        with _pg_advisory_lock(storage.engine, study._study_id):
            yield
    else:
        yield


@contextmanager
def _pg_advisory_lock(engine, key: int) -> Iterator[None]:
    """A PostgreSQL session advisory lock (namespace "VCRH", `key`), held on its own connection."""
    import sqlalchemy as sa

    args = {"ns": _PG_LOCK_NAMESPACE, "key": key}
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:ns, :key)"), args)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, :key)"), args)
            conn.commit()


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue again (WAITING, same params) every interrupted trial not queued yet.

    Call under `claim_lock`. Returns the numbers of the trials queued now.
    """
    storage = rdb_storage(study)
    done = set(storage.get_study_user_attrs(study._study_id).get(ATTR_REQUEUED, []))
    todo = [n for n in _interrupted_numbers(storage, study._study_id) if n not in done]
    for number in todo:
        old = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
        history = [*old.system_attrs.get("retry_history", []), old.number]
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=old.params,
                distributions=old.distributions,
                user_attrs={"retry_of": old.number},
                # the keys RetryHeartbeatStaleTrialCallback uses, so its helpers read both kinds
                system_attrs={"failed_trial": history[0], "retry_history": history},
            )
        )
    if todo:
        study.set_user_attr(ATTR_REQUEUED, sorted(done | set(todo)))
    return todo


def fail_beatless_trials(study: optuna.Study) -> list[int]:
    """FAIL, and queue again like stale ones, RUNNING trials that never beat within the grace period.

    A process killed between `study.ask()` and its first heartbeat leaves a RUNNING trial
    without a heartbeat row; Optuna's stale check skips such trials, so it would stay RUNNING
    forever and count toward n_trials. Its start time (this machine's clock) stands in for the
    missing beat. Call under `claim_lock`. Returns the numbers failed.
    """
    import datetime

    import sqlalchemy as sa

    storage = rdb_storage(study)
    grace = storage.grace_period or 2 * (storage.heartbeat_interval or HEARTBEAT_INTERVAL)
    m = _models()
    query = (
        sa.select(m.TrialModel.trial_id, m.TrialModel.number, m.TrialModel._datetime_start_utc)
        .outerjoin(m.TrialHeartbeatModel, m.TrialHeartbeatModel.trial_id == m.TrialModel.trial_id)
        .where(
            m.TrialModel.study_id == study._study_id,
            m.TrialModel.state == TrialState.RUNNING,
            m.TrialHeartbeatModel.trial_heartbeat_id.is_(None),
        )
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)  # Optuna stores UTC
    cutoff = now - datetime.timedelta(seconds=grace)
    callback = storage.get_heartbeat_stale_trial_callback()
    failed = []
    for trial_id, number, started in rows:
        if started is not None and started > cutoff:
            continue  # just claimed: its heartbeat thread is starting
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason",
                                        "its process died before the first heartbeat; retried")
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        failed.append(int(number))
        if callback is not None:
            callback(study, storage.get_trial(trial_id))
    return failed


def claim_trial(
    study: optuna.Study,
    n_trials: int,
    *,
    reseed: Callable[[int], optuna.samplers.BaseSampler] | None = None,
) -> optuna.Trial | None:
    """Start the next trial, or return None when finished + running trials reach n_trials.

    Under the claim lock: stale RUNNING trials become FAIL and are queued again (heartbeat
    callback), interrupted ones are queued again, then a WAITING trial is popped or a new one made.

    Args:
        reseed: `reseed(n)` returns the sampler to use from now on, where n counts the study's
            trials that are not WAITING. Called under the lock, so every process that joins a
            study (a resume, another worker, another machine) sees a different n: with a seed
            derived from n, no two of them replay the same draws.
    """
    with claim_lock(study):
        if is_heartbeat_enabled(study._storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
                fail_beatless_trials(study)
        requeue_interrupted(study)
        counts = count_states(rdb_storage(study), study._study_id)
        if finished_count(counts) + counts[TrialState.RUNNING] >= n_trials:
            return None
        if reseed is not None:
            study.sampler = reseed(sum(counts.values()) - counts[TrialState.WAITING])
        with warnings.catch_warnings():
            # Optuna warns that heartbeats expect Study.optimize; run_one_trial beats instead
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            return study.ask()


# --------------------------------------------------------------------------- running trials


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped the run (BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class DatabaseLockedError(VcrHpoError):
    """SQLite stayed locked longer than the busy timeout."""


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """The first SIGINT/SIGTERM raises RunInterrupted in the main thread; a second exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum, frame):
        if seen:
            os._exit(128 + signum)  # the user insists: no cleanup, the heartbeat retry covers it
        seen.append(signum)
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def translate_storage_errors(url: str) -> Iterator[None]:
    """Turn SQLite's "database is locked" into a message that names the cause and the cure."""
    import sqlalchemy.exc

    try:
        yield
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError) as exc:
        chain, cause = [], exc
        while cause is not None:
            chain.append(str(cause))
            cause = cause.__cause__ or cause.__context__
        if any("database is locked" in text for text in chain):
            raise DatabaseLockedError(
                f"{url}: SQLite database is locked, got no write access within "
                f"{SQLITE_BUSY_TIMEOUT} s. Another process holds it: stop it, or for several "
                "workers or machines use PostgreSQL (--storage postgresql://user@host:5432/db)"
            ) from exc
        # Faults of the disk under the database: one line and exit 1, not a traceback. What was
        # committed stays; a trial cut short stays RUNNING and is retried on resume.
        for needle, problem in _STORAGE_FAULTS:
            if any(needle in text for text in chain):
                raise StorageFaultError(
                    f"{url}: {problem}, got {needle!r}. Fix it and run the same command again: "
                    "finished trials are kept and any interrupted trial is retried"
                ) from exc
        raise


_STORAGE_FAULTS = (
    ("readonly database", "the database is read-only (file, folder or file system)"),
    ("database or disk is full", "the disk holding the database is full"),
    ("disk I/O error", "the disk holding the database failed a read or write"),
    ("unable to open database file", "the database file cannot be opened or created"),
)


class StorageFaultError(VcrHpoError):
    """The database cannot be written: read-only, disk full, I/O error."""


class _Heartbeat:
    """Records the trial's heartbeat every interval from a thread while the trial runs."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if is_heartbeat_enabled(self._storage):
            self._thread = threading.Thread(target=self._beat, name="vcr-hpo-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        interval = self._storage.get_heartbeat_interval()
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # noqa: BLE001 (a missed beat is harmless; a dead thread orphans the trial)
                pass
            if self._stop.wait(interval):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _mark_interrupted(study: optuna.Study, trial: optuna.Trial, exc: RunInterrupted) -> None:
    name = signal.Signals(exc.signum).name
    trial.set_user_attr("interrupted", name)
    trial.set_user_attr("fail_reason", f"interrupted by {name}; queued again on resume")
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def run_one_trial(study: optuna.Study, trial: optuna.Trial, objective: Callable) -> FrozenTrial:
    """Run one claimed trial with a heartbeat; record pruning, failures and interruptions.

    A failing trial is recorded with `fail_reason` and does not stop the study. An interruption
    marks the trial FAIL with the user attr `interrupted` and re-raises.
    """
    import sqlalchemy.exc

    values = None
    state: TrialState | None = None
    with _Heartbeat(study._storage, trial._trial_id):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except RunInterrupted as exc:
            _mark_interrupted(study, trial, exc)
            raise
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            raise  # the storage itself is gone: the trial stays RUNNING and the heartbeat retries it
        except Exception as exc:  # noqa: BLE001 (any failure: record it, the study goes on)
            state = TrialState.FAIL
            if "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            _logger.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a NaN value becomes FAIL; the trial row says so
        return study.tell(trial, values, state=state, skip_if_finished=True)


class TooManyFailuresError(VcrHpoError):
    """Every recent trial of this run failed: the space or the machine is broken, not unlucky."""


def run_trials(
    study: optuna.Study,
    objective: Callable,
    *,
    n_trials: int,
    timeout: float | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    reseed: Callable[[int], optuna.samplers.BaseSampler] | None = None,
    max_failures_in_a_row: int | None = MAX_FAILURES_IN_A_ROW,
) -> int:
    """Run trials until the study holds `n_trials` finished ones or `timeout` seconds pass.

    Finished means COMPLETE or PRUNED, counted over the whole study (earlier runs and other
    workers included), so a rerun at the same target adds nothing and a higher target tops up.

    Args:
        reseed: see `claim_trial`; used on this call's first claim only.

    Returns:
        The number of trials this call ran.

    Raises:
        RunInterrupted: a signal arrived (inside `interrupt_on_signals`).
        TooManyFailuresError: `max_failures_in_a_row` trials of this call failed one after the
            other (failed trials never count toward `n_trials`, so the run would never end).
    """
    start = time.monotonic()
    ran = failed_in_a_row = 0
    while timeout is None or time.monotonic() - start < timeout:
        trial = claim_trial(study, n_trials, reseed=reseed if ran == 0 else None)
        if trial is None:
            break
        frozen = run_one_trial(study, trial, objective)
        ran += 1
        if on_trial is not None:
            on_trial(frozen)
        failed_in_a_row = failed_in_a_row + 1 if frozen.state == TrialState.FAIL else 0
        if max_failures_in_a_row is not None and failed_in_a_row >= max_failures_in_a_row:
            reason = frozen.user_attrs.get("fail_reason", "no reason recorded")
            raise TooManyFailuresError(
                f"study {study.study_name}: the last {failed_in_a_row} trials failed, got "
                f"fail_reason {reason!r} (trial {frozen.number}). Fix the cause, then run the same "
                "command again to resume"
            )
    return ran


def busy_cores(interval: float = 0.25) -> float | None:
    """Cores other processes keep busy now: /proc/stat sampled over `interval` s (Linux).

    None where /proc/stat cannot be read. Unlike the load average it has no minute-long lag, so a
    run started right after another one still sees idle cores.
    """

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]  # user .. steal
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / (total1 - total0))


def cpu_threads(workers: int, *, cores: int | None = None, busy: float | None = None) -> int:
    """Torch CPU threads per worker process: the idle cores split between the workers.

    Idle cores = cores - the cores other processes keep busy when the run starts (`busy_cores`,
    else the 1-minute load average), rounded, at least 1. On idle cores extra threads pay (the
    demo, 32 px, one worker on 2 idle cores: 73 s wall with 2 threads against 90 s with 1); on
    busy cores they spin (the same demo at load 5-8: 770 s with 2 threads against 202 s with 1).
    """
    cores = cores or os.cpu_count() or 1
    if busy is None:
        busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            busy = 0.0
    idle = max(1, cores - round(busy))
    return max(1, idle // max(1, workers))


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class StudyStatus:
    """What `vcr-hpo status` shows about one study, gathered with a handful of queries."""

    name: str
    study_id: int
    directions: tuple[str, ...]
    metric_names: tuple[str, ...]
    counts: Mapping[str, int]
    top: tuple[FrozenTrial, ...]
    orphans: tuple[tuple[int, float | None], ...]
    target: int | None


def study_status(
    storage: optuna.storages.RDBStorage, name: str, *, top: int = 5, grace_period: float = GRACE_PERIOD
) -> StudyStatus:
    """Counts by state, the `top` best COMPLETE trials (first objective) and orphaned trials.

    Raises:
        ConfigError: no study of that name in the storage.
    """
    storage = rdb_storage(storage)
    study_id = _study_id(storage, name)
    if study_id is None:
        names = sorted(s.study_name for s in storage.get_all_studies())
        raise ConfigError(f"--study-name: no study {name!r} in this storage, got {name!r}. "
                          f"Studies: {', '.join(names) or '(none)'}")
    directions = tuple(d.name.lower() for d in storage.get_study_directions(study_id))
    system = storage.get_study_system_attrs(study_id)
    metrics = tuple(system.get("study:metric_names") or ())
    counts = count_states(storage, study_id)
    ids = top_trial_ids(storage, study_id, top, maximize=directions[0] == "maximize")
    target = storage.get_study_user_attrs(study_id).get(ATTR_TARGET)
    return StudyStatus(
        name=name,
        study_id=study_id,
        directions=directions,
        metric_names=metrics,
        counts={s.name: n for s, n in counts.items()},
        top=tuple(storage.get_trial(i) for i in ids),
        orphans=tuple(stale_running(storage, study_id, grace_period)),
        target=target if isinstance(target, int) else None,
    )
