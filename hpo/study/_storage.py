"""Building an RDB storage: heartbeat settings, SQLite busy timeout, the PostgreSQL driver.

Which storage a URL gets is `_backends`' table; this module builds the SQLAlchemy ones.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import optuna

from ..errors import ConfigError

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


def build_rdb_storage(
    url: str,
    engine_kwargs: Mapping[str, Any],
    *,
    heartbeat_interval: int | None,
    grace_period: int | None,
    schema_lock: Callable[[str], AbstractContextManager[None]] | None = None,
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeat + stale-trial retry and the backend's engine settings
    (`build_storage` calls it, after the backend's driver check).

    Args:
        schema_lock: held while Optuna creates its tables (PostgreSQL: one process at a time).

    Raises:
        ConfigError: the database cannot be opened.
    """
    url = postgres_driver(url)
    import sqlalchemy.exc

    callback = None
    with warnings.catch_warnings():
        # heartbeats and the retry callback are "experimental" since Optuna 2.8; we rely on them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat_interval is not None:
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        try:
            with schema_lock(url) if schema_lock is not None else nullcontext():
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=dict(engine_kwargs),
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
