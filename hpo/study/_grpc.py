"""Studies through Optuna's gRPC storage proxy: `grpc://host:port` URLs and heartbeats.

`GrpcStorageProxy` has no heartbeat of its own (it is not a `BaseHeartbeat`), so a worker killed
mid-trial would leave a RUNNING trial forever. `HeartbeatGrpcStorage` adds one through the
storage API itself: each beat is a trial system attribute stamped with the worker's clock, and
a RUNNING trial whose stamp is older than the grace period is stale (Optuna's own
`fail_stale_trials` then fails and retries it). Clocks of the machines must agree to well under
the grace period (NTP does). A trial that never beat (its process died right after the claim)
is stale once this process has seen it beatless for the grace period.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import ConfigError
from . import _optuna

GRPC_SCHEME = "grpc://"
ATTR_BEAT = "vcr-hpo:heartbeat"  # trial system attr {"trial": id, "t": unix time or None}
GRPC_FIX = 'Run: pip install -e ".[grpc]" (grpcio and protobuf)'


def parse_grpc_url(url: str, *, where: str = "--storage") -> tuple[str, int]:
    """`grpc://host:port` -> (host, port), checked without connecting.

    Raises:
        ConfigError: no host, no port, a port out of range, or a path or query after the port.
    """
    rest = url[len(GRPC_SCHEME):]
    host, sep, port = rest.rpartition(":")
    fix = "Use grpc://HOST:PORT, the address `vcr-hpo storage-proxy` listens on"
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: a gRPC storage URL needs a host and a port, got {url!r}. {fix}")
    if "/" in host or "@" in host or "?" in port:
        raise ConfigError(f"{where}: a gRPC storage URL is only a host and a port, got {url!r}. {fix}")
    return host.strip("[]"), int(port)


def require_grpc(where: str = "--storage") -> None:
    """grpcio and protobuf import here (the `grpc` extra).

    Raises:
        ConfigError: one of them is missing.
    """
    missing = [m for m in ("grpc", "google.protobuf") if _find(m) is None]
    if missing:
        raise ConfigError(f"{where}: the gRPC storage proxy needs grpcio and protobuf, got "
                          f"{' and '.join(missing)} missing. {GRPC_FIX}")


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:  # the parent package (google) is missing
        return None


def _storage_class():
    """`HeartbeatGrpcStorage`, built on first use so that importing vcr-hpo needs no grpcio."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return _CLASS


_CLASS = None


def _make_class():
    base_heartbeat = _optuna.base_heartbeat()

    # a base known only at run time (Optuna's private BaseHeartbeat, reached through _optuna)
    class HeartbeatGrpcStorage(optuna.storages.GrpcStorageProxy,
                               base_heartbeat):  # type: ignore[valid-type,misc]
        """Optuna's gRPC proxy client plus heartbeats kept as trial system attributes."""

        def __init__(self, *, host: str, port: int, heartbeat_interval: int | None = None,
                     grace_period: int | None = None,
                     stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None
                     ) -> None:
            super().__init__(host=host, port=port)
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period
            self._stale_callback = stale_callback
            self._beatless: dict[int, float] = {}  # trial id -> when first seen without a beat

        # -- BaseHeartbeat
        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, ATTR_BEAT, {"trial": trial_id, "t": time.time()})

        def get_heartbeat_interval(self) -> int | None:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self):
            return self._stale_callback

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            grace = self.grace_period or 2 * (self.heartbeat_interval or 10)
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            now, seen, stale = time.time(), time.monotonic(), []
            beatless = {}
            for trial in running:
                tid = _optuna.trial_id(trial)
                beat = last_beat(trial)
                if beat is not None:
                    if now - beat > grace:
                        stale.append(tid)
                    continue
                first = beatless[tid] = self._beatless.get(tid, seen)
                if seen - first > grace:
                    stale.append(tid)
            self._beatless = beatless
            return stale

    return HeartbeatGrpcStorage


def last_beat(trial: FrozenTrial) -> float | None:
    """The unix time of the trial's last heartbeat through the proxy; None if it never beat.

    A retried trial carries its origin's beat in its copied system attrs: that one is not its own.
    """
    beat = trial.system_attrs.get(ATTR_BEAT)
    if isinstance(beat, dict) and beat.get("trial") == _optuna.trial_id(trial):
        t = beat.get("t")
        return float(t) if isinstance(t, (int, float)) else None
    return None


def clear_beat(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Forget the trial's beat (before it goes back to WAITING), so that when it is claimed
    again its old beat does not make it look stale before it beats anew."""
    storage.set_trial_system_attr(trial_id, ATTR_BEAT, {"trial": trial_id, "t": None})


#: seconds `build_grpc_storage` waits for the proxy to answer
CONNECT_TIMEOUT = 20.0


def build_grpc_storage(url: str, *, heartbeat_interval: int | None, grace_period: int | None,
                       max_retry: int, connect_timeout: float | None = None):
    """A `HeartbeatGrpcStorage` for `grpc://host:port`, after the proxy answered.

    Raises:
        ConfigError: grpcio is missing, the URL is malformed, or no proxy answers in time.
    """
    import warnings

    host, port = parse_grpc_url(url)
    require_grpc()
    if connect_timeout is None:
        connect_timeout = CONNECT_TIMEOUT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = None
        if heartbeat_interval is not None:
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        storage = _storage_class()(host=host, port=port, heartbeat_interval=heartbeat_interval,
                                   grace_period=grace_period, stale_callback=callback)
    try:
        storage.wait_server_ready(timeout=connect_timeout)
    except ConnectionError:
        raise ConfigError(
            f"--storage: no gRPC storage proxy answers at {host}:{port}, got {url!r} (waited "
            f"{connect_timeout:g} s). Start it there: vcr-hpo storage-proxy --storage URL "
            f"--port {port}"
        ) from None
    return storage


def is_grpc_storage(storage) -> bool:
    return isinstance(_optuna.unwrap_storage(storage), optuna.storages.GrpcStorageProxy)


def stale_by_beat(storage, study_id: int, grace_period: float) -> list[tuple[int, float | None]]:
    """RUNNING trials whose last beat through the proxy is older than the grace period:
    (number, age seconds by this machine's clock); None for a trial that never beat."""
    now = time.time()
    out: list[tuple[int, float | None]] = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        beat = last_beat(trial)
        if beat is None:
            out.append((trial.number, None))
        elif now - beat > grace_period:
            out.append((trial.number, now - beat))
    return out
