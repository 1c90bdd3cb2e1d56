"""The study storage backends by URL scheme: one row each for SQLite, PostgreSQL, MySQL and a gRPC
storage proxy, and the functions every caller reaches them through.

Each row says how its URL is checked without touching anything, what the client needs on this
machine (preflight), how the storage is built, which file on this machine it writes (SQLite:
preflight checks its folder, the CLI and warm start need it to exist, artifacts default beside
it), how claims are locked across processes, whether workers on several machines may share it,
and whether `vcr-hpo storage-proxy` may serve it. A new backend is one row here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError
from ..names import check_study_name
from . import _optuna
from ._locks import advisory_lock, file_lock, schema_lock
from ._storage import (
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    MAX_RETRY,
    SQLITE_BUSY_TIMEOUT,
    build_rdb_storage,
    postgres_driver,
)

if TYPE_CHECKING:
    import optuna

__all__ = [
    "STORAGE_BACKENDS",
    "StorageBackend",
    "artifacts_home",
    "build_storage",
    "check_storage_url",
    "claim_lock",
    "default_storage_url",
    "has_claim_lock",
    "sqlite_path",
    "storage_backend",
]

#: Where a study's files go when its storage has no folder of its own on this machine.
STUDIES_FOLDER = Path("studies")


def _no_file(url: str) -> Path | None:
    return None


@dataclass(frozen=True)
class StorageBackend:
    """One kind of study storage, found by the scheme of its URL (before `://`, without a
    SQLAlchemy `+driver`)."""

    scheme: str
    #: the URL form shown in errors and help
    example: str
    #: the URL's own rules, checked without connecting or creating anything: (url, where)
    check_url: Callable[[str, str], None]
    #: preflight: what a client of this backend needs imports here (a DB driver, grpcio)
    check_client: Callable[[str, str], None]
    #: the storage: (url, heartbeat_interval, grace_period)
    build: Callable[[str, int | None, int | None], optuna.storages.BaseStorage]
    #: the file this storage writes on this machine (preflight checks its folder, the CLI and
    #: warm start need it to exist, artifacts default beside it); None: a server holds the data
    local_file: Callable[[str], Path | None] = _no_file
    #: SQLAlchemy engine settings (RDB backends)
    engine_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: how "count the trials, then start one" is serialised across processes (`claim_lock`);
    #: None: claims stay exact without a lock (`_lockfree`)
    lock: Literal["flock", "advisory"] | None = None
    #: workers on several machines may share it
    many_machines: bool = True
    #: `vcr-hpo storage-proxy` may serve it (a proxy does not serve another proxy)
    behind_proxy: bool = True


# --------------------------------------------------------------------------- the rows' parts


def _parsed(url: str, where: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"{where}: not a database URL, got {url!r}. {_options()}") from None


def _check_sqlite_url(url: str, where: str) -> None:
    db = _parsed(url, where).database
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


def _check_server_url(url: str, where: str) -> None:
    _parsed(url, where)


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    try:
        db = make_url(url).database
    except Exception:  # noqa: BLE001 (not a URL: check_storage_url says so where it matters)
        return None
    return Path(db) if db and db != ":memory:" else None


def _driver_fix(fix: str) -> Callable[[str, str], None]:
    """The check that the row's SQLAlchemy driver (DBAPI module) imports; `fix` installs it."""

    def check(url: str, where: str) -> None:
        from sqlalchemy.exc import NoSuchModuleError

        parsed = _parsed(postgres_driver(url), where)
        try:
            parsed.get_dialect().import_dbapi()
        except NoSuchModuleError as exc:
            raise ConfigError(f"{where}: unknown database driver, got {url!r} ({exc}). "
                              "Use sqlite:///... or postgresql://...") from None
        except ImportError as exc:
            shown = parsed.render_as_string(hide_password=True)
            raise ConfigError(f"{where}: the database driver is not installed, got {shown!r} "
                              f"({exc}). {fix}") from None

    return check


def _build_rdb(url: str, heartbeat_interval: int | None, grace_period: int | None):
    backend = storage_backend(url)
    backend.check_client(url, "--storage")  # a missing driver is one line, not an ImportError
    return build_rdb_storage(url, backend.engine_kwargs,
                             heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                             schema_lock=schema_lock if backend.lock == "advisory" else None)


def _check_grpc_url(url: str, where: str) -> None:
    from ._grpc import parse_grpc_url

    parse_grpc_url(url, where=where)


def _check_grpc_client(url: str, where: str) -> None:
    from ._grpc import require_grpc

    require_grpc(where)  # the proxy holds the database driver; here only grpcio is needed


def _build_grpc(url: str, heartbeat_interval: int | None, grace_period: int | None):
    from ._grpc import build_grpc_storage

    return build_grpc_storage(url, heartbeat_interval=heartbeat_interval,
                              grace_period=grace_period, max_retry=MAX_RETRY)


#: The study storages vcr-hpo runs on, by URL scheme; the first is the default.
STORAGE_BACKENDS: Mapping[str, StorageBackend] = MappingProxyType({b.scheme: b for b in (
    StorageBackend(
        "sqlite", "sqlite:///studies/NAME.db", _check_sqlite_url,
        _driver_fix("Python's sqlite3 module is part of Python: use a Python built with it"),
        _build_rdb, local_file=_sqlite_file,
        engine_kwargs=MappingProxyType({"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}),
        lock="flock", many_machines=False),
    StorageBackend(
        "postgresql", "postgresql://user:pass@host:5432/db", _check_server_url,
        _driver_fix('Run: pip install -e ".[postgres]" (psycopg2)'), _build_rdb,
        engine_kwargs=MappingProxyType({"pool_pre_ping": True}), lock="advisory"),
    StorageBackend(
        "mysql", "mysql+pymysql://user:pass@host:3306/db", _check_server_url,
        _driver_fix("Run: pip install pymysql and write mysql+pymysql://..., or pip install "
                    "mysqlclient"), _build_rdb,
        engine_kwargs=MappingProxyType({"pool_pre_ping": True})),
    StorageBackend(
        "grpc", "grpc://host:port (a vcr-hpo storage-proxy)", _check_grpc_url,
        _check_grpc_client, _build_grpc, behind_proxy=False),
)})


def _options() -> str:
    return "Use one of " + ", ".join(b.example for b in STORAGE_BACKENDS.values())


# --------------------------------------------------------------------------- what callers use


def storage_backend(url: str, *, where: str = "--storage") -> StorageBackend:
    """The row of `url`'s scheme (`postgresql+psycopg2://` is `postgresql`).

    Raises:
        ConfigError: not a URL, or a scheme without a row; the message lists the known ones.
    """
    scheme, sep, _ = str(url).partition("://")
    if not sep or not scheme:
        raise ConfigError(f"{where}: not a database URL, got {url!r}. {_options()}")
    backend = STORAGE_BACKENDS.get(scheme.split("+")[0].lower())
    if backend is None:
        raise ConfigError(f"{where}: unsupported database {scheme.split('+')[0]!r}, got "
                          f"{url!r}. {_options()}")
    return backend


def check_storage_url(url: str, *, where: str = "--storage") -> str:
    """Validate a storage URL without connecting or creating anything. Returns it unchanged.

    Raises:
        ConfigError: an unknown scheme, or a URL its backend refuses (an in-memory SQLite, an
            SQLite file whose folder does not exist, a gRPC URL without a port).
    """
    storage_backend(url, where=where).check_url(url, where)
    return url


def default_storage_url(study_name: str) -> str:
    """`sqlite:///studies/<study_name>.db`, relative to the current folder."""
    check_study_name(study_name, "--study-name")
    return f"sqlite:///{STUDIES_FOLDER / study_name}.db"


def sqlite_path(url: str) -> Path | None:
    """The file on this machine a storage URL writes (SQLite); None for servers, proxies,
    `sqlite://` and anything that is not a storage URL."""
    try:
        backend = storage_backend(url)
    except ConfigError:
        return None
    return backend.local_file(url)


def artifacts_home(url: str) -> Path:
    """The folder a study's artifacts default to a subfolder of: the local file's folder
    (SQLite), else `studies/` in the current folder (a server or proxy has no folder here)."""
    path = sqlite_path(url)
    return path.parent if path is not None else STUDIES_FOLDER


def build_storage(
    url: str,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
    grace_period: int | None = GRACE_PERIOD,
) -> optuna.storages.BaseStorage:
    """The storage vcr-hpo uses: heartbeat + stale-trial retry, SQLite busy timeout, pre-ping.

    Args:
        url: an SQLAlchemy URL (`sqlite:///path.db`, `postgresql://user@host/db`), or
            `grpc://host:port` for a `vcr-hpo storage-proxy` (heartbeats as trial attributes).
        heartbeat_interval: seconds; None turns heartbeats off.
        grace_period: seconds after the last heartbeat before a RUNNING trial counts as stale.

    Raises:
        ConfigError: an unknown scheme, a missing driver, or a database that cannot be opened.
    """
    return storage_backend(url).build(url, heartbeat_interval, grace_period)


@contextmanager
def claim_lock(study: optuna.Study) -> Iterator[None]:
    """Serialise "count the trials, then start one" across workers, so n_trials is exact.

    By the backend's `lock`: SQLite (one machine) an flock on `<db>-lock` beside the file,
    PostgreSQL (many machines) a session advisory lock keyed by the study. Other storages (a gRPC
    proxy, MySQL): no lock; `claim_trial` keeps n_trials exact there without one (`_lockfree`).
    """
    storage = _optuna.unwrap_storage(study)
    if not has_claim_lock(storage):
        yield
        return
    path = sqlite_path(storage.url)
    if path is not None:
        with file_lock(path):
            yield
    else:
        with advisory_lock(storage.engine, _optuna.study_id(study)):
            yield


def has_claim_lock(storage: Any) -> bool:
    """Whether `claim_lock` really locks for this storage (its backend has a lock: an SQLite file
    or PostgreSQL)."""
    import optuna

    storage = _optuna.unwrap_storage(storage)
    if not isinstance(storage, optuna.storages.RDBStorage):
        return False
    try:
        lock = storage_backend(storage.url).lock
    except ConfigError:
        return False
    return lock == "advisory" or (lock == "flock" and sqlite_path(storage.url) is not None)
