"""Trial isolation: each trial trains in a child forked from the worker (`trial_isolation: process`).

The worker (parent) imported torch, timm and Optuna once and never initialises CUDA (it counts
GPUs through NVML, `hpo.devices`), so a `fork` child starts in milliseconds with everything
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
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any

import optuna

from .errors import VcrHpoError

__all__ = ["ISOLATION_MODES", "IsolatedObjective", "TrialProcessDied"]

#: Values of `study.trial_isolation` / `--trial-isolation`.
ISOLATION_MODES = ("none", "process")


class TrialProcessDied(VcrHpoError):
    """The trial's child process ended without a result (killed by a signal or exited)."""


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
                system_attrs: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
    os._exit(0)  # no atexit handlers, no flushing of the parent's inherited buffers


class IsolatedObjective:
    """Wrap an `hpo.objective.Objective`: suggest here, train in a forked child.

    Args:
        objective: the objective to run in the child (its `space` suggests the params here;
            its `on_epoch` callback stays here and gets the child's epochs through the pipe).
    """

    def __init__(self, objective: Any) -> None:
        self.objective = objective
        self.space = objective.space
        self._ctx = multiprocessing.get_context("fork")

    def __call__(self, trial: optuna.Trial) -> Any:
        from .study import _optuna

        params = self.space.suggest(trial)  # the sampler's state advances in this process
        system_attrs = _optuna.storage_of(trial.study).get_trial_system_attrs(
            _optuna.trial_id(trial))
        parent_conn, child_conn = self._ctx.Pipe()
        inner = self.objective
        on_epoch = inner.on_epoch
        if on_epoch is not None:  # forward the child's epochs to the parent's progress bar
            inner.on_epoch = lambda number, m: child_conn.send(("epoch", number, m))
        try:
            proc = self._ctx.Process(target=_child_main, args=(child_conn, inner, trial.number,
                                                               params, system_attrs), daemon=True)
            proc.start()
        finally:
            inner.on_epoch = on_epoch
        child_conn.close()
        try:
            return self._serve(trial, parent_conn, proc)
        finally:
            parent_conn.close()
            if proc.is_alive():  # interrupted (RunInterrupted) or the parent failed
                proc.kill()
            proc.join()

    def _serve(self, trial: optuna.Trial, conn, proc) -> Any:
        from .study._optuna import set_constraints

        while True:
            try:
                message = conn.recv()
            except EOFError:
                proc.join()
                raise _died(proc.exitcode, trial) from None
            kind = message[0]
            if kind == "user_attr":
                trial.set_user_attr(message[1], message[2])
            elif kind == "report":
                trial.report(message[1], message[2])
            elif kind == "should_prune":
                conn.send(trial.should_prune())
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


    def _upload(self, trial: optuna.Trial, name: str, data: bytes) -> None:
        import tempfile
        from pathlib import Path

        from .artifacts import upload

        with tempfile.TemporaryDirectory(prefix="vcr-hpo-child-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            upload(trial, self.objective.artifacts, path)


def _died(code: int | None, trial: optuna.Trial) -> TrialProcessDied:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = (" (the kernel's OOM killer sends SIGKILL when memory runs out)"
                if name == "SIGKILL" else "")
        reason = f"trial process killed by {name}{hint}"
    else:
        reason = f"trial process exited with code {code} before reporting a result"
    trial.set_user_attr("fail_reason", reason)
    trial.set_user_attr("trial_process_exit", code)
    return TrialProcessDied(reason)
