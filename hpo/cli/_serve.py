"""Long-running servers on a storage: `dashboard` (optuna-dashboard) and `storage-proxy` (gRPC)."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ._common import artifacts_arg, open_existing, storages, study_args
from ._registry import command

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _dashboard_args(p: argparse.ArgumentParser) -> None:
    study_args(p)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (the dashboard has no authentication)")
    artifacts_arg(p)


@command("dashboard", "optuna-dashboard on the study storage (127.0.0.1 unless --allow-remote)",
         args=_dashboard_args)
def _cmd_dashboard(ns: argparse.Namespace) -> int:
    if ns.host not in _LOOPBACK and not ns.allow_remote:
        raise ConfigError(f"--host: a non-loopback address exposes every study without "
                          f"authentication, got {ns.host!r}. Add --allow-remote if you mean it, or "
                          "use an SSH tunnel (ssh -L 8080:127.0.0.1:8080 host)")
    if not 0 < ns.port < 65536:
        raise ConfigError(f"--port: must lie in [1, 65535], got {ns.port}. Choose a free port")
    urls = storages(ns)
    if len(urls) > 1:
        raise ConfigError(f"--storage: the dashboard serves one storage, got {len(urls)} files in "
                          f"studies/. Pass --storage or --study-name")
    if ns.host not in _LOOPBACK:
        print(f"warning: optuna-dashboard has no authentication; anyone who reaches "
              f"{ns.host}:{ns.port} can read and change these studies", file=sys.stderr)
    from optuna_dashboard import run_server

    storage = open_existing(urls[0])
    store = _dashboard_store(ns, urls[0], storage)
    print(f"optuna-dashboard on http://{ns.host}:{ns.port}/dashboard  ({urls[0]}; artifacts "
          f"{store}); Ctrl-C stops it", file=sys.stderr, flush=True)
    run_server(storage, host=ns.host, port=ns.port, artifact_store=store)
    return 0


def _dashboard_store(ns: argparse.Namespace, url: str, storage):
    """The artifact store the dashboard serves: --artifacts, else the (one) study's location."""
    import optuna

    from ..trial.artifacts import artifact_store, check_location, study_location

    names = [s.study_name for s in storage.get_all_studies()]
    if ns.study_name:
        names = [n for n in names if n == ns.study_name]
    if ns.artifacts:
        return artifact_store(url, names[0] if names else "", check_location(ns.artifacts))
    locations = {n: study_location(optuna.load_study(study_name=n, storage=storage), url)
                 for n in names}
    if not locations:
        return None
    if len(set(locations.values())) > 1:
        print(f"warning: the studies of {url} keep artifacts in {len(set(locations.values()))} "
              f"places; the dashboard shows those of {names[0]} only. Pass --study-name or "
              "--artifacts", file=sys.stderr)
    return artifact_store(url, names[0], locations[names[0]])


def _proxy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, metavar="URL",
                   help="the database the workers share: postgresql://user:pass@host:5432/db")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 for workers on other machines (no auth)")
    p.add_argument("--port", type=int, default=13000, help="default 13000")
    p.add_argument("--threads", type=int, default=16, metavar="N",
                   help="gRPC handler threads (each may hold one database connection); default 16")


@command("storage-proxy", "Optuna's gRPC storage proxy: many workers use --storage grpc://HOST:PORT",
         args=_proxy_args)
def _cmd_storage_proxy(ns: argparse.Namespace) -> int:
    from ..study._proxy import serve_storage_proxy

    serve_storage_proxy(ns.storage, host=ns.host, port=ns.port, threads=ns.threads)
    return 0
