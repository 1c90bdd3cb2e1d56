"""Cross-process locks: the SQLite flock and PostgreSQL advisory locks (schema, claims)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

from ..errors import ConfigError
from . import _optuna

#: advisory-lock key of Optuna's table creation (study ids, the claim locks' keys, start at 1)
_PG_SCHEMA_KEY = 0


@contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """PostgreSQL: one process at a time creates Optuna's tables. Several machines starting on a
    new database otherwise race on CREATE TYPE and all but one fail with a UniqueViolation."""
    if _lock_of(url) != "advisory":
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


_PG_LOCK_NAMESPACE = 0x56435248  # "VCRH": keeps our advisory locks apart from other users'


@contextmanager
def claim_lock(study: optuna.Study) -> Iterator[None]:
    """Serialise "count the trials, then start one" across workers, so n_trials is exact.

    SQLite (one machine): an flock on `<db>-lock` beside the file. PostgreSQL (many machines): a
    session advisory lock keyed by the study. Other storages (a gRPC proxy, MySQL): no lock;
    `claim_trial` keeps n_trials exact there without one (`_lockfree`).
    """
    storage = _optuna.unwrap_storage(study)
    if not has_claim_lock(storage):
        yield
        return
    if _lock_of(storage.url) == "flock":
        from ._backends import sqlite_path

        path = sqlite_path(storage.url)
        assert path is not None  # has_claim_lock: a flock backend with its file
        with open(path.with_name(path.name + "-lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        with _pg_advisory_lock(storage.engine, _optuna.study_id(study)):
            yield


def has_claim_lock(storage) -> bool:
    """Whether `claim_lock` really locks for this storage (SQLite file or PostgreSQL)."""
    storage = _optuna.unwrap_storage(storage)
    if not isinstance(storage, optuna.storages.RDBStorage):
        return False
    from ._backends import sqlite_path

    lock = _lock_of(storage.url)
    return lock == "advisory" or (lock == "flock" and sqlite_path(storage.url) is not None)


def _lock_of(url: str) -> str | None:
    """The lock kind of the URL's backend (`_backends` table); None for unknown URLs."""
    from ._backends import storage_backend

    try:
        return storage_backend(url).lock
    except ConfigError:
        return None


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
