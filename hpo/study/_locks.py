"""Cross-process lock primitives: the flock beside an SQLite file and PostgreSQL advisory locks.

Which lock a storage gets is its backend's `lock` (`_backends`: `claim_lock`, `build_storage`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: advisory-lock key of Optuna's table creation (study ids, the claim locks' keys, start at 1)
_PG_SCHEMA_KEY = 0
_PG_LOCK_NAMESPACE = 0x56435248  # "VCRH": keeps our advisory locks apart from other users'


@contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """PostgreSQL: one process at a time creates Optuna's tables. Several machines starting on a
    new database otherwise race on CREATE TYPE and all but one fail with a UniqueViolation."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with advisory_lock(engine, _PG_SCHEMA_KEY):
            yield
    finally:
        engine.dispose()


@contextmanager
def file_lock(db: Path) -> Iterator[None]:
    """An exclusive flock on `<db>-lock` beside the SQLite file (one machine)."""
    with open(db.with_name(db.name + "-lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def advisory_lock(engine, key: int) -> Iterator[None]:
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
