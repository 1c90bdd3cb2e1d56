"""Loopback helpers for tests that start a server (test-only code): a free port, a GET, the wait.

Test modules import it as `tests._net` (pyproject's pytest `pythonpath` puts the repository root
on sys.path); tests/_postgres.py, which the benches run by its path, loads it by its path.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from typing import IO

__all__ = ["free_port", "http_get", "wait_until_serving"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 30) -> bytes:
    """The body of a GET; a refused connection or an HTTP error raises (an OSError)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_until_serving(url: str, proc: subprocess.Popen, log: IO[str], timeout: float = 180) -> None:
    """Poll `url` until it answers; fail with the server's log once `proc` exits or time is up.

    The process is left as it is either way: the caller stops it.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            http_get(url, timeout=5)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError(f"nothing answers {url}: {log.read()}") from None
            time.sleep(0.5)
