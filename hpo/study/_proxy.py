"""`vcr-hpo storage-proxy`: Optuna's gRPC storage proxy in front of one database.

Hundreds of workers that each hold PostgreSQL connections exhaust the server (100 connections by
default). Workers given `--storage grpc://host:port` talk to this one process instead, and it
alone holds database connections: at most `pool_size + max_overflow` (SQLAlchemy's 5 + 10).
"""

from __future__ import annotations

import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from ..errors import ConfigError

DEFAULT_PORT = 13000
DEFAULT_THREADS = 16  # gRPC handler threads; each may hold one pooled database connection


def check_proxy_args(storage: str, host: str, port: int, threads: int) -> None:
    """Validate the command line before anything listens or connects.

    Raises:
        ConfigError: a gRPC or in-memory storage behind the proxy, a bad port or thread count.
    """
    from . import STORAGE_BACKENDS, check_storage_url, storage_backend
    from ._grpc import require_grpc

    if not storage_backend(storage).behind_proxy:
        served = ", ".join(b.example for b in STORAGE_BACKENDS.values() if b.behind_proxy)
        raise ConfigError(f"--storage: the proxy serves a database, not another proxy, got "
                          f"{storage!r}. Give one of {served}")
    check_storage_url(storage)
    if not 0 < port < 65536:
        raise ConfigError(f"--port: must lie in [1, 65535], got {port}. Choose a free port "
                          f"(default {DEFAULT_PORT})")
    if threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {threads}. Give {DEFAULT_THREADS}")
    require_grpc("storage-proxy")


def serve_storage_proxy(storage: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                        threads: int = DEFAULT_THREADS, announce=print) -> None:
    """Serve `storage` on `host:port` through Optuna's gRPC proxy until SIGINT or SIGTERM.

    Heartbeats are kept by the workers as trial attributes (see `hpo.study._grpc`), so the
    database storage behind the proxy runs without Optuna's heartbeat table.

    Raises:
        ConfigError: bad arguments, grpcio missing, the database cannot be opened, or the port
            cannot be bound.
    """
    import warnings

    import optuna

    from . import build_storage

    check_proxy_args(storage, host, port, threads)
    db = build_storage(storage, heartbeat_interval=None, grace_period=None)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vcr-hpo-proxy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        server = _make_server(optuna.storages.get_storage(db), host, port, pool)
    server.start()
    stop = []

    def on_signal(signum, frame):
        stop.append(signum)
        server.stop(grace=5)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        from sqlalchemy.engine import make_url

        shown = make_url(storage).render_as_string(hide_password=True)
        announce(f"storage proxy on grpc://{host}:{port} for {shown} ({threads} threads); "
                 "Ctrl-C stops it", file=sys.stderr, flush=True)
        server.wait_for_termination()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _make_server(storage, host: str, port: int, pool: ThreadPoolExecutor):
    from . import _optuna

    try:
        return _optuna.grpc_proxy_server(storage, host, port, pool)
    except RuntimeError as exc:  # grpcio: "Failed to bind to address ..."
        raise ConfigError(f"--port: cannot listen on {host}:{port}, got {exc}. Choose another "
                          "--port or --host") from None
