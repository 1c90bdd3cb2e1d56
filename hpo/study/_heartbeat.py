"""The heartbeat thread of a running trial (ask/tell runs do not get Optuna's own)."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

import optuna

from . import _optuna

if TYPE_CHECKING:
    from typing_extensions import Self


class _Heartbeat:
    """Records the trial's heartbeat every interval from a thread while the trial runs."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        # Any: the heartbeat methods are BaseHeartbeat's, which RDB and gRPC storages implement
        self._storage: Any = storage
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        if _optuna.heartbeat_enabled(self._storage):
            self._thread = threading.Thread(target=self._beat, name="vcr-hpo-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        interval = self._storage.get_heartbeat_interval()
        while True:
            # a missed beat is harmless; a dead thread orphans the trial
            with contextlib.suppress(Exception):
                self._storage.record_heartbeat(self._trial_id)
            if self._stop.wait(interval):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
