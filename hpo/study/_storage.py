"""Building the storage: heartbeat settings, SQLite busy timeout, database drivers, gRPC proxies."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import optuna

from ..errors import ConfigError
from ._locks import schema_lock

HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial
GRACE_PERIOD = 30  # a RUNNING trial without a heartbeat for this long is stale (FAIL, retried)
SQLITE_BUSY_TIMEOUT = 60  # seconds a SQLite writer waits for the lock before "database is locked"
MAX_RETRY = 3  # retries of one stale trial (same params)


def postgres_driver(url: str) -> str:
    """Pin `postgresql://` to psycopg2 (the `postgres` extra) when psycopg 3 is absent.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; users write the bare form.
    """

    if (url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


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
        ConfigError: the URL is not one Optuna's RDB storage accepts.
    """
    if url.startswith("grpc://"):
        from ._grpc import build_grpc_storage

        return build_grpc_storage(url, heartbeat_interval=heartbeat_interval,
                                  grace_period=grace_period, max_retry=MAX_RETRY)
    url = postgres_driver(url)
    if url.startswith("sqlite"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    elif url.startswith(("postgresql", "mysql")):
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
            "Use sqlite:///path.db, postgresql://user:pass@host:port/db or grpc://host:port"
        )
    import sqlalchemy.exc

    callback = None
    with warnings.catch_warnings():
        # heartbeats and the retry callback are "experimental" since Optuna 2.8; we rely on them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat_interval is not None:
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        try:
            with schema_lock(url):
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
