"""Storage URL rules: the default SQLite file, accepted databases and gRPC proxies, the SQLite path."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..names import check_study_name


def default_storage_url(study_name: str) -> str:
    """`sqlite:///studies/<study_name>.db`, relative to the current folder."""
    check_study_name(study_name, "--study-name")
    return f"sqlite:///studies/{study_name}.db"


def check_storage_url(url: str, *, where: str = "--storage") -> str:
    """Validate a storage URL without connecting or creating anything. Returns it unchanged.

    Raises:
        ConfigError: not an SQLAlchemy URL nor `grpc://host:port`, an unsupported backend,
            in-memory SQLite, or an SQLite file whose folder does not exist.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from ._grpc import is_grpc_url, parse_grpc_url

    if is_grpc_url(url):
        parse_grpc_url(url, where=where)
        return url
    fix = ("Use sqlite:///studies/NAME.db, postgresql://user:pass@host:5432/db or "
           "grpc://host:port (a vcr-hpo storage-proxy)")
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
    """The file of an SQLite URL; None for other databases, gRPC proxies and `sqlite://`."""
    from sqlalchemy.engine import make_url

    if url.startswith("grpc://"):
        return None

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database is None:
        return None
    return Path(parsed.database)
