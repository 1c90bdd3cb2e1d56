"""Trial isolation: each trial trains in a child forked from the worker (`trial_isolation: process`).

The worker (parent) imported torch, timm and Optuna once and never initialises CUDA (it counts
GPUs through NVML, `hpo.run.devices`), so a `fork` child starts in milliseconds with everything
imported, and whatever a trial leaves behind (CUDA memory, a leak, a crashed CUDA context, a
segfault) ends with the child.

Protocol (chosen over letting the child open its own storage connection): the parent asks the
sampler for the params with the real trial *before* forking, so the sampler's state (a seeded
TPE's RNG, constant-liar bookkeeping) advances in the long-lived parent and the next trial does
not replay the same draw; the child receives them through a proxy trial whose `suggest_*` return
them, and sends every `report`, `should_prune`, user attr and constraint back over a pipe; the
parent performs them on the real trial (one storage connection per worker, its heartbeat thread
keeps beating while the child trains). The child's result (values, pruned, or the exception)
comes back the same way. A child that dies without a result (SIGKILL from the OOM killer, a
segfault) makes the trial FAIL with `fail_reason` "trial process killed by SIGKILL ...".

A dead or deadlocked child cannot make the parent wait forever. The parent never blocks on the
pipe: it polls the pipe and the child's exit status once a second, so a child that died is seen
even when its own children still hold the pipe open. A child that sends nothing and uses
(almost) no CPU for `trial_stall_timeout` seconds is stalled (a deadlock sleeps on a lock or a
pipe): the parent makes it print its Python stacks (faulthandler, user attr `stall_traceback`),
kills it, and the trial FAILs. A child that spins uses CPU and is not stalled by this rule.

The child is forked from a new thread, not from the worker's main thread: GNU OpenMP (torch's
CPU thread pool) keeps its pool per thread and has no fork handler, so a child forked from a
thread that had run a parallel region with more than one thread waits forever at its first
parallel region for pool threads that were not copied. A new thread has no pool.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import pickle
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

import optuna

from ..attrs import FAIL_REASON, STALL_TRACEBACK, TRIAL_PROCESS_EXIT
from ..errors import VcrHpoError
from ..space import STALL_TIMEOUT

__all__ = ["ISOLATION_MODES", "STALL_TIMEOUT", "IsolatedObjective", "TrialProcessDied",
           "TrialProcessStalled"]


#: Values of `study.trial_isolation` / `--trial-isolation`.
ISOLATION_MODES = ("none", "process")
_POLL_S = 1.0  # how often the parent looks at a silent child (exit status, CPU time)
_BUSY = 0.01  # share of one core a child must use over the stall window to count as working
_SEND_FAILED = 3  # the child's exit code when its result could not be sent
_DUMP_S = 2.0  # how long a stalled child gets to print its stacks before it is killed


class TrialProcessDied(VcrHpoError):
    """The trial's child process ended without a result (killed by a signal or exited)."""


class TrialProcessStalled(TrialProcessDied):
    """The trial's child process sent nothing and used no CPU for `trial_stall_timeout` s."""


class _ChildTrial:
    """What the objective sees in the child: fixed params, everything else sent to the parent."""

    def __init__(self, conn, number: int, params: dict[str, Any],
                 system_attrs: dict[str, Any] | None = None) -> None:
        self._conn, self.number, self.params = conn, number, dict(params)
        self.user_attrs: dict[str, Any] = {}
        #: the trial's system attrs when the child started (retry origins for checkpoints)
        self.system_attrs: dict[str, Any] = dict(system_attrs or {})

    def upload_file(self, path: str | os.PathLike) -> None:
        """Send a file to the parent, which uploads it as this trial's artifact."""
        from pathlib import Path

        self._conn.send(("artifact", Path(path).name, Path(path).read_bytes()))

    def _value(self, name: str) -> Any:
        return self.params[name]

    def suggest_float(self, name: str, *args, **kwargs) -> float:
        return self._value(name)

    def suggest_int(self, name: str, *args, **kwargs) -> int:
        return self._value(name)

    def suggest_categorical(self, name: str, *args, **kwargs) -> Any:
        return self._value(name)

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value
        self._conn.send(("user_attr", key, value))

    def report(self, value: float, step: int) -> None:
        self._conn.send(("report", value, step))

    def should_prune(self) -> bool:
        self._conn.send(("should_prune",))
        return bool(self._conn.recv())

    def record_constraints(self, values: list[float]) -> None:
        self._conn.send(("constraints", values))


def _child_main(conn, objective: Callable, number: int, params: dict[str, Any],
                system_attrs: dict[str, Any], dump, parent_end) -> None:
    code = _SEND_FAILED
    try:
        # The worker's end, copied by fork: while we hold it, a dead worker would never close
        # the pipe, and should_prune would wait forever for its answer.
        parent_end.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # A stalled child is asked for its stacks; faulthandler writes them without the GIL.
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)
        trial = _ChildTrial(conn, number, params, system_attrs)
        try:
            values = objective(trial)
            message: tuple = ("done", values)
        except optuna.TrialPruned as exc:
            message = ("pruned", str(exc))
        except BaseException as exc:  # noqa: BLE001 (sent to the parent, which re-raises it)
            try:
                pickle.loads(pickle.dumps(exc))  # the parent must be able to rebuild it
                message = ("error", exc)
            except Exception:  # noqa: BLE001 (an exception that does not pickle)
                message = ("error", RuntimeError(f"{type(exc).__name__}: {exc}"))
        conn.send(message)
        conn.close()
        code = 0
    finally:
        # Whatever failed (no memory left to build or send the result, a broken pipe), never
        # return into multiprocessing's exit path: it joins threads and children the objective
        # left behind and could wait forever. No atexit handlers, no flushing of inherited buffers.
        os._exit(code)


class IsolatedObjective:
    """Wrap an `hpo.trial.objective.Objective`: suggest here, train in a forked child.

    Args:
        objective: the objective to run in the child (its `space` suggests the params here;
            its `on_epoch` callback stays here and gets the child's epochs through the pipe).
        stall_timeout: seconds a child may send nothing and use no CPU before it is killed and
            its trial FAILs; None waits as long as the child lives.

    Raises:
        ValueError: `stall_timeout` is not positive.
    """

    def __init__(self, objective: Any, *, stall_timeout: float | None = STALL_TIMEOUT) -> None:
        if stall_timeout is not None and not stall_timeout > 0:
            raise ValueError(f"stall_timeout: must be positive seconds or None, got {stall_timeout!r}")
        self.objective = objective
        self.space = objective.space
        self.stall_timeout = stall_timeout
        self._ctx = multiprocessing.get_context("fork")

    def __call__(self, trial: optuna.Trial) -> Any:
        from ..study import _optuna

        params = self.space.suggest(trial)  # the sampler's state advances in this process
        system_attrs = _optuna.storage_of(trial.study).get_trial_system_attrs(
            _optuna.trial_id(trial))
        parent_conn, child_conn = self._ctx.Pipe()
        inner = self.objective
        on_epoch = inner.on_epoch
        if on_epoch is not None:  # forward the child's epochs to the parent's progress bar
            inner.on_epoch = lambda number, m: child_conn.send(("epoch", number, m))
        with tempfile.TemporaryFile(prefix="vcr-hpo-stacks-") as dump:  # a stalled child's stacks
            proc = self._ctx.Process(target=_child_main, daemon=True, args=(
                child_conn, inner, trial.number, params, system_attrs, dump, parent_conn))
            try:
                try:
                    _start_from_new_thread(proc)
                finally:
                    inner.on_epoch = on_epoch
                    child_conn.close()
                return self._serve(trial, parent_conn, proc, dump)
            finally:
                parent_conn.close()
                if proc.pid is not None:
                    if proc.is_alive():  # interrupted (RunInterrupted) or the parent failed
                        proc.kill()
                    proc.join()

    def _serve(self, trial: optuna.Trial, conn, proc, dump) -> Any:
        """Do what the child asks until its result; never block on a child that cannot answer."""
        from ..study._optuna import set_constraints

        watch = _StallWatch(proc.pid, self.stall_timeout)
        eof = False  # the child closed its end: what is left is to see it exit
        while True:
            if not eof and conn.poll():
                try:
                    message = conn.recv()
                except (EOFError, OSError):  # OSError: it died in the middle of a message
                    eof = True
                    continue
            else:
                wait([proc.sentinel] if eof else [conn, proc.sentinel], _POLL_S)
                if not eof and conn.poll():
                    continue
                if not proc.is_alive():
                    if not eof and conn.poll():  # what it sent just before it died comes first
                        continue
                    raise _died(proc.exitcode, trial)
                if self.stall_timeout is not None and watch.stalled():  # no limit: never stalled
                    raise _stalled(trial, proc, dump, self.stall_timeout)
                continue
            kind = message[0]
            if kind == "user_attr":
                trial.set_user_attr(message[1], message[2])
            elif kind == "report":
                trial.report(message[1], message[2])
            elif kind == "should_prune":
                try:
                    conn.send(trial.should_prune())
                except OSError:  # it is gone (BrokenPipeError): the next look says how
                    pass
            elif kind == "constraints":
                set_constraints(trial, message[1])
            elif kind == "artifact":
                self._upload(trial, message[1], message[2])
            elif kind == "epoch":
                if self.objective.on_epoch is not None:
                    self.objective.on_epoch(message[1], message[2])
            elif kind == "done":
                return message[1]
            elif kind == "pruned":
                raise optuna.TrialPruned(message[1])
            elif kind == "error":
                raise message[1]
            watch.mark()  # after the work the message asked for, which may have taken a while

    def _upload(self, trial: optuna.Trial, name: str, data: bytes) -> None:
        from pathlib import Path

        from ..trial.artifacts import upload

        with tempfile.TemporaryDirectory(prefix="vcr-hpo-child-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            upload(trial, self.objective.artifacts, path)


def _start_from_new_thread(proc) -> None:
    """Fork `proc` from a thread that never ran an OpenMP parallel region (module docstring)."""
    errors: list[BaseException] = []

    def start() -> None:
        try:
            proc.start()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the calling thread)
            errors.append(exc)

    thread = threading.Thread(target=start, name="vcr-hpo-fork")
    thread.start()
    try:
        thread.join()
    except BaseException:  # a signal's exception (RunInterrupted): let the fork finish first
        thread.join()      # so the caller knows whether there is a child to kill
        raise
    if errors:
        raise errors[0]


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) of a process; None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name in (...) may hold spaces
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15
    except (OSError, IndexError, ValueError):
        return None


class _StallWatch:
    """When the child last showed a sign of life: a message, or CPU time used.

    A deadlocked child sleeps (on a lock, a futex, a full pipe) and a healthy one computes, so
    a child under `_BUSY` of one core and silent for `limit` seconds is stalled. Where /proc is
    missing only messages count.
    """

    def __init__(self, pid: int, limit: float | None) -> None:
        self._pid, self._limit = pid, limit
        self.mark()

    def mark(self) -> None:
        self._since, self._cpu = time.monotonic(), _cpu_seconds(self._pid)

    def stalled(self) -> bool:
        if self._limit is None:
            return False
        cpu = _cpu_seconds(self._pid)
        if cpu is not None and (self._cpu is None or cpu - self._cpu >= _BUSY * self._limit):
            self._since, self._cpu = time.monotonic(), cpu
        return time.monotonic() - self._since >= self._limit


def _stalled(trial: optuna.Trial, proc, dump, limit: float) -> TrialProcessStalled:
    """Ask the stalled child for its stacks, kill it, and say where it was."""
    stacks = _stacks(proc.pid, dump)
    proc.kill()
    proc.join()
    where = _where(stacks)
    reason = (f"trial process stalled: sent nothing and used no CPU for {limit:g} s "
              f"(study.trial_stall_timeout), killed" + (f"; it was at {where}" if where else ""))
    trial.set_user_attr(FAIL_REASON, reason[:500])
    if stacks:
        trial.set_user_attr(STALL_TRACEBACK, stacks[-4000:])
    return TrialProcessStalled(reason)


def _stacks(pid: int, dump) -> str:
    """The Python stacks of every thread of the child (its faulthandler on SIGUSR1)."""
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return ""
    size, deadline = -1, time.monotonic() + _DUMP_S
    while time.monotonic() < deadline:  # done when the file stops growing
        time.sleep(0.1)
        now = os.fstat(dump.fileno()).st_size
        if now and now == size:
            break
        size = now
    dump.seek(0)
    return dump.read().decode("utf-8", "replace")


def _where(stacks: str) -> str:
    """The innermost frame of the thread that runs the objective (the one under _child_main)."""
    for block in stacks.split("\n\n"):
        if "in _child_main" in block:
            frames = [ln.strip() for ln in block.splitlines() if ln.strip().startswith("File ")]
            return frames[0] if frames else ""
    return ""


def _died(code: int | None, trial: optuna.Trial) -> TrialProcessDied:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = (" (the kernel's OOM killer sends SIGKILL when memory runs out)"
                if name == "SIGKILL" else "")
        reason = f"trial process killed by {name}{hint}"
    elif code == _SEND_FAILED:
        reason = ("trial process could not send its result (exit code 3): out of memory, or "
                  "the pipe to the worker broke")
    else:
        reason = f"trial process exited with code {code} before reporting a result"
    trial.set_user_attr(FAIL_REASON, reason)
    trial.set_user_attr(TRIAL_PROCESS_EXIT, code)
    return TrialProcessDied(reason)
