"""Storage faults translated into one-line errors: locked SQLite, read-only or full disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import optuna

from ..errors import VcrHpoError
from ._backends import STORAGE_BACKENDS


class DatabaseLockedError(VcrHpoError):
    """SQLite stayed locked longer than the busy timeout."""



@contextmanager
def translate_storage_errors(url: str) -> Iterator[None]:
    """Turn SQLite's "database is locked" into a message that names the cause and the cure."""
    import sqlalchemy.exc

    try:
        yield
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError) as exc:
        chain: list[str] = []
        cause: BaseException | None = exc
        while cause is not None:
            chain.append(str(cause))
            cause = cause.__cause__ or cause.__context__
        if any("database is locked" in text for text in chain):
            # the busy timeout the engine was built with
            waited = STORAGE_BACKENDS["sqlite"].engine_kwargs["connect_args"]["timeout"]
            raise DatabaseLockedError(
                f"{url}: SQLite database is locked, got no write access within "
                f"{waited} s. Another process holds it: stop it, or for several "
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
