"""The CPU-thread rule: idle cores split between the worker processes."""

from __future__ import annotations

import os
import time


def busy_cores(interval: float = 0.25) -> float | None:
    """Cores other processes keep busy now: /proc/stat sampled over `interval` s (Linux).

    None where /proc/stat cannot be read. Unlike the load average it has no minute-long lag, so a
    run started right after another one still sees idle cores.
    """

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]  # user .. steal
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / (total1 - total0))


def cpu_threads(workers: int, *, cores: int | None = None, busy: float | None = None) -> int:
    """Torch CPU threads per worker process: the idle cores split between the workers.

    Idle cores = cores - the cores other processes keep busy when the run starts (`busy_cores`,
    else the 1-minute load average), rounded, at least 1. On idle cores extra threads pay (the
    demo, 32 px, one worker on 2 idle cores: 73 s wall with 2 threads against 90 s with 1); on
    busy cores they spin (the same demo at load 5-8: 770 s with 2 threads against 202 s with 1).
    """
    cores = cores or os.cpu_count() or 1
    if busy is None:
        busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            busy = 0.0
    idle = max(1, cores - round(busy))
    return max(1, idle // max(1, workers))


# --------------------------------------------------------------------------- status
