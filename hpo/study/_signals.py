"""SIGINT/SIGTERM during a run: RunInterrupted in the main thread, a second signal exits."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped the run (BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """The first SIGINT/SIGTERM raises RunInterrupted in the main thread; a second exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum, frame):
        if seen:
            os._exit(128 + signum)  # the user insists: no cleanup, the heartbeat retry covers it
        seen.append(signum)
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
