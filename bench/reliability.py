"""Reliability campaign: SIGKILL storms and concurrent workers on the installed `vcr-hpo run`.

Kill storm: start `vcr-hpo run` on one storage, SIGKILL it at a seeded random moment while its
trials run, audit the storage, repeat; then resume to a target and audit again. Load: one
`vcr-hpo run --workers N` to a target and audit. The audit checks `PRAGMA integrity_check`
(SQLite), that every acknowledged trial (printed as finished by a killed process, or finished at
an earlier audit) is still there unchanged, and that every finished trial is well formed
(state, values, params inside the space, intermediate values). tests/reliability runs the same
functions at small counts.

    python bench/reliability.py                         # 100 kill rounds + 8 workers, SQLite
    python bench/reliability.py --rounds 20 --workers 4 --trials 60
    python bench/reliability.py --postgres              # the same on a throwaway PostgreSQL
    python bench/reliability.py --fresh --rounds 10     # a new process per round (slow import)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import runpy
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FAST_SPACE",
    "Child",
    "Launcher",
    "LoadReport",
    "Result",
    "StormReport",
    "acknowledged_in_output",
    "audit",
    "integrity",
    "kill_storm",
    "load_run",
    "run_env",
    "trial_problems",
    "write_space",
]

#: A search space whose trials take about a second on one core: resnet10t, 32 px, 32 images.
#: A conditional parameter and a pruner, so finished trials come as COMPLETE and PRUNED.
FAST_SPACE = """\
study:
  name: {name}
  metric: val_acc
  direction: maximize
  n_trials: 4
  sampler: {{type: {sampler}, seed: 11}}
  pruner: {{type: MedianPruner, n_startup_trials: 2, n_warmup_steps: 0}}
hyperparameters:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}}
  dropout: {{type: float, low: 0.0, high: 0.5, step: 0.1}}
  loss_fn: {{type: categorical, choices: [cross_entropy, focal]}}
  focal_gamma: {{type: float, low: 0.5, high: 3.0, when: {{loss_fn: focal}}}}
  optimizer: {{type: categorical, choices: [sgd, adam]}}
fixed:
  backbone: resnet10t
  epochs: {epochs}
  image_size: 32
  synthetic_size: {synthetic}
  max_train_samples: {samples}
  batch_size: 16
  device: cpu
"""

_FINISHED = ("COMPLETE", "PRUNED")
_ACK_LINE = re.compile(r"\| trial (\d+) (COMPLETE|PRUNED)(?: val_acc=(\d+\.\d+))?")


def write_space(folder: Path, *, name: str = "rel", epochs: int = 2, samples: int = 32,
                sampler: str = "Random") -> Path:
    """Write FAST_SPACE to `folder/<name>.yaml` and return the path."""
    path = Path(folder) / f"{name}.yaml"
    path.write_text(FAST_SPACE.format(name=name, epochs=epochs, samples=samples,
                                      synthetic=max(20, samples + samples // 2), sampler=sampler))
    return path


def vcr_executable() -> str:
    """The installed console script; the campaign runs it as a user would."""
    exe = shutil.which("vcr-hpo")
    if exe is None:
        raise SystemExit("vcr-hpo is not on PATH: pip install -e .")
    return exe


def run_env(*, heartbeat: int = 1, grace: int = 2, **extra: str) -> dict[str, str]:
    """Environment for the runs: short heartbeat and grace so orphans are reclaimed at once."""
    return {**os.environ, "VCR_HPO_HEARTBEAT": str(heartbeat), "VCR_HPO_GRACE": str(grace),
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


# --------------------------------------------------------------------------- launching runs
# A fresh `vcr-hpo` process pays ~8 s (more on a busy machine) importing torch, timm and optuna.
# The zygote pays it once, then forks one child per run; the child runs the installed console
# script (by runpy) with its own argv, cwd, environment and file descriptors, and exits as the
# interpreter would (an uncaught exception prints its traceback, exit 1). Only the import is
# shared. `no_dac` drops root's CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH so mode 000 files are
# unreadable as for a user; `limit_as` caps the address space (RLIMIT_AS, bytes).

_ZYGOTE = r"""
import ctypes, json, os, resource, runpy, sys, time, traceback
import hpo.cli, hpo.study, hpo.space, hpo.data, hpo.trial.objective, hpo.train
import hpo.outputs.configs, hpo.run.console
script = sys.argv[1]

def drop_dac():
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = ~((1 << 1) | (1 << 2)) & 0xFFFFFFFF  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    for name in ("effective", "permitted", "inheritable"):
        setattr(data[0], name, getattr(data[0], name) & keep)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")

def child(req):
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.update(req["env"])
        for key in req["unset"]:
            os.environ.pop(key, None)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 0); os.dup2(out, 1); os.dup2(err, 2)
        if req["no_dac"]:
            drop_dac()
        if req["limit_as"]:
            resource.setrlimit(resource.RLIMIT_AS, (req["limit_as"], req["limit_as"]))
        sys.argv = [script, *req["argv"]]
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush(); sys.stderr.flush()
    finally:
        os._exit(code)

def wait(pid, timeout):
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), timed_out
        if time.monotonic() > deadline and not timed_out:
            os.kill(pid, 9); timed_out = True
        time.sleep(0.02)

print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "wait":
        code, timed_out = wait(req["pid"], req["timeout"])
        reply = {"code": code, "timed_out": timed_out}
    else:
        pid = os.fork()
        if pid == 0:
            child(req)
        if req["op"] == "spawn":
            reply = {"pid": pid}
        else:
            code, timed_out = wait(pid, req["timeout"])
            reply = {"code": code, "timed_out": timed_out}
    print(json.dumps(reply), flush=True)
"""


@dataclass(frozen=True)
class Result:
    """Exit code and output of one finished `vcr-hpo` run."""

    code: int
    out: str
    err: str
    timed_out: bool = False

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


class Child:
    """A running `vcr-hpo` (zygote child or fresh process); its stderr goes to a file."""

    def __init__(self, pid: int, err_path: Path, waiter: Callable[[float], int]) -> None:
        self.pid, self.err_path, self._waiter = pid, err_path, waiter
        self.returncode: int | None = None

    def alive(self) -> bool:
        if self.returncode is not None:
            return False
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = 600.0) -> int:
        if self.returncode is None:
            self.returncode = self._waiter(timeout)
        return self.returncode

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""


class Launcher:
    """Starts the installed `vcr-hpo`: in a zygote child (`zygote=True`, fast) or as a new process."""

    def __init__(self, root: Path, env: Mapping[str, str] | None = None, *, zygote: bool = True):
        self.root, self.env = Path(root), dict(env if env is not None else run_env())
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = 0
        self._proc = None
        if zygote:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE, vcr_executable()], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.env,
                cwd=self.root)
            ready = self._proc.stdout.readline().strip()
            if ready != "ready":
                raise RuntimeError(f"the vcr-hpo zygote did not start: {ready!r}")

    def _files(self) -> tuple[Path, Path]:
        self._count += 1
        return self.root / f"{self._count}.out", self.root / f"{self._count}.err"

    def _ask(self, req: dict) -> dict:
        self._proc.stdin.write(json.dumps(req) + "\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())

    def _request(self, op, argv, cwd, env, unset, no_dac, limit_as, timeout) -> tuple[dict, Path, Path]:
        out, err = self._files()
        req = {"op": op, "argv": [str(a) for a in argv], "cwd": str(cwd), "env": dict(env or {}),
               "unset": list(unset), "no_dac": no_dac, "limit_as": limit_as,
               "stdout": str(out), "stderr": str(err), "timeout": timeout}
        return self._ask(req), out, err

    def run(self, argv, cwd, *, env=None, unset=(), no_dac=False, limit_as=None,
            timeout=300.0) -> Result:
        """Run to the end; a zygote child, or a new process when there is no zygote."""
        if self._proc is None:
            return self.fresh(argv, cwd, env=env, unset=unset, no_dac=no_dac, timeout=timeout)
        with self._lock:
            reply, out, err = self._request("run", argv, cwd, env, unset, no_dac, limit_as, timeout)
        return Result(reply["code"], out.read_text(errors="replace"),
                      err.read_text(errors="replace"), reply["timed_out"])

    def spawn(self, argv, cwd, *, env=None) -> Child:
        """Start without waiting; stdout is discarded, stderr kept in a file."""
        if self._proc is None:
            with self._lock:
                _, err = self._files()
            with open(err, "w") as fh:
                proc = subprocess.Popen([vcr_executable(), *map(str, argv)], cwd=cwd,
                                        env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=fh)
            return Child(proc.pid, err, lambda timeout: proc.wait(timeout))
        with self._lock:
            reply, _, err = self._request("spawn", argv, cwd, env, (), False, None, 0)
        pid = reply["pid"]

        def waiter(timeout: float) -> int:
            with self._lock:
                return self._ask({"op": "wait", "pid": pid, "timeout": timeout})["code"]

        return Child(pid, err, waiter)

    def fresh(self, argv, cwd, *, env=None, unset=(), no_dac=False, timeout=300.0) -> Result:
        """A new `vcr-hpo` process, as from a shell (pays the import)."""
        full = {**self.env, **(env or {})}
        for key in unset:
            full.pop(key, None)
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if no_dac else []
        try:
            proc = subprocess.run([*prefix, vcr_executable(), *map(str, argv)], cwd=cwd, env=full,
                                  check=False, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return Result(-9, str(exc.stdout or ""), str(exc.stderr or ""), True)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
            self._proc = None


# --------------------------------------------------------------------------- audit


def _storage(url: str):
    from hpo.study import build_storage

    return build_storage(url, heartbeat_interval=None, grace_period=None)  # reading fails no one


def _study_trials(storage, study_name: str) -> list:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)


def integrity(url: str) -> str | None:
    """`PRAGMA integrity_check` of an SQLite storage ("ok" when sound); None for other databases."""
    from hpo.study import sqlite_path

    path = sqlite_path(url)
    if path is None:
        return None
    conn = sqlite3.connect(path, timeout=60)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def trial_problems(trial, space, epochs: int) -> list[str]:
    """What is wrong with one finished trial: state, values, params, intermediate values."""
    from hpo.attrs import FEATURE_CHANNELS

    out: list[str] = []
    tag = f"trial {trial.number}"
    state = trial.state.name
    if state not in _FINISHED:
        return [f"{tag}: not finished, got {state}"]
    dists = space.distributions()
    active = space.active(trial.params)
    if set(trial.params) != active:
        out.append(f"{tag}: params {sorted(trial.params)} but the space makes {sorted(active)} active")
    for name, value in trial.params.items():
        dist = dists.get(name)
        if dist is None:
            continue
        if trial.distributions.get(name) != dist:
            out.append(f"{tag}: {name} stored with {trial.distributions.get(name)}, space has {dist}")
        elif not dist._contains(dist.to_internal_repr(value)):
            out.append(f"{tag}: {name}={value!r} outside {dist}")
    steps = sorted(trial.intermediate_values)
    values = [trial.intermediate_values[s] for s in steps]
    if not all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values):
        out.append(f"{tag}: intermediate values outside [0, 1]: {values}")
    if state == "COMPLETE":
        if steps != list(range(epochs)):
            out.append(f"{tag}: COMPLETE with intermediate steps {steps}, expected 0..{epochs - 1}")
        if trial.values is None or len(trial.values) != 1 or not math.isfinite(trial.values[0]):
            out.append(f"{tag}: COMPLETE with values {trial.values}")
        elif values and trial.values[0] != max(values):  # the value is the best epoch's val_acc
            out.append(f"{tag}: value {trial.values[0]} is not the best epoch's {max(values)}")
        if set(trial.user_attrs.get(FEATURE_CHANNELS, {})) != {"c2", "c3", "c4", "c5"}:
            out.append(f"{tag}: COMPLETE without feature_channels user attr")
    else:
        if trial.values is not None and (not values or list(trial.values) != [values[-1]]):
            # Optuna stores a pruned trial's last reported value as its value
            out.append(f"{tag}: PRUNED with values {trial.values}, last report {values[-1:]}")
        if not steps or steps != list(range(len(steps))) or len(steps) > epochs:
            out.append(f"{tag}: PRUNED with intermediate steps {steps}")
    if trial.datetime_complete is None:
        out.append(f"{tag}: {state} without datetime_complete")
    return out


def _fingerprint(trial) -> tuple:
    """What must never change once a trial is acknowledged."""
    return (trial.state.name, tuple(trial.values or ()), tuple(sorted(trial.params.items())),
            tuple(sorted(trial.intermediate_values.items())))


def acknowledged_in_output(text: str) -> dict[int, tuple[str, float | None]]:
    """Trials a run printed as finished (the non-terminal progress lines): number -> (state, value)."""
    return {int(n): (state, float(v) if v else None) for n, state, v in _ACK_LINE.findall(text)}


@dataclass
class Audit:
    """One look at the storage after a fault."""

    integrity: str | None
    trials: list
    problems: list[str]
    lost: list[int]
    changed: list[int]

    def count(self, state: str) -> int:
        return sum(1 for t in self.trials if t.state.name == state)

    @property
    def finished(self) -> int:
        return self.count("COMPLETE") + self.count("PRUNED")


def audit(url: str, study_name: str, space, epochs: int, acknowledged: dict[int, tuple],
          printed: Mapping[int, tuple[str, float | None]] = {}) -> Audit:
    """Check the storage; then add every finished trial to `acknowledged` (number -> fingerprint).

    Args:
        acknowledged: fingerprints of trials acknowledged earlier; each must be present, unchanged.
        printed: trials a killed process printed as finished; each must be stored so.
    """
    check = integrity(url)
    storage = _storage(url)
    try:
        trials = _study_trials(storage, study_name)
    finally:
        storage.engine.dispose()  # no file left open: a test may remount the folder read-only
    by_number = {t.number: t for t in trials}
    problems: list[str] = []
    if check not in (None, "ok"):
        problems.append(f"integrity_check: {check}")
    numbers = sorted(by_number)
    if numbers != list(range(len(trials))):
        problems.append(f"trial numbers not dense: {numbers}")
    lost = sorted(n for n in acknowledged if n not in by_number)
    changed = sorted(n for n in acknowledged
                     if n in by_number and _fingerprint(by_number[n]) != acknowledged[n])
    for n, (state, value) in printed.items():
        t = by_number.get(n)
        if t is None:
            lost.append(n)
        elif t.state.name != state or (value is not None and round(t.values[0], 4) != value):
            problems.append(f"trial {n}: printed {state} {value}, stored {t.state.name} {t.values}")
    for t in trials:
        if t.state.name in _FINISHED:
            problems += trial_problems(t, space, epochs)
            acknowledged.setdefault(t.number, _fingerprint(t))
    return Audit(check, trials, problems, sorted(set(lost)), changed)


# --------------------------------------------------------------------------- kill storm


@dataclass
class StormReport:
    """Figures of one kill storm and its final resume."""

    url: str
    rounds: int = 0
    kills: int = 0  # processes killed while alive (the others exited first: a problem)
    orphans_made: int = 0  # RUNNING trials left behind by a kill
    integrity_failures: int = 0
    lost: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    target: int = 0
    finished: int = 0
    running_after_resume: int = -1
    waiting_after_resume: int = 0
    failed: int = 0
    retries: int = 0
    resume_code: int | None = None
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            (f"kill storm on {self.url.split('://')[0]}: {self.rounds} rounds, {self.kills} "
             f"SIGKILLs of a live run, {self.orphans_made} left a RUNNING trial behind"),
            (f"  integrity failures {self.integrity_failures}, lost acknowledged trials "
             f"{len(self.lost)}, changed acknowledged trials {len(self.changed)}, other problems "
             f"{len(self.problems)}"),
            (f"  final resume: exit {self.resume_code}, finished {self.finished}/{self.target}, "
             f"RUNNING (orphans) {self.running_after_resume}, WAITING "
             f"{self.waiting_after_resume}, FAIL {self.failed} (retried {self.retries})"),
            f"  {self.seconds:.0f} s wall",
        ]


def _running(storage, study_name: str) -> set[int]:
    return {t.number for t in _study_trials(storage, study_name) if t.state.name == "RUNNING"}


def kill_storm(url: str, space_path: Path, workdir: Path, *, rounds: int, seed: int = 0,
               launcher: Launcher | None = None, study_name: str = "rel", epochs: int = 2,
               extra: int = 2, start_timeout: float = 240.0,
               log: Callable[[str], None] | None = None) -> StormReport:
    """SIGKILL `vcr-hpo run` `rounds` times at random moments, auditing after each; then resume.

    Each round starts the installed `vcr-hpo run` (a target it cannot reach), waits until it
    has claimed a trial of its own, sleeps a seeded uniform [0, 2.5 trial durations) and kills
    it, so kills land in training, in reports, in `tell` and in the next claim alike. The final
    resume runs to `extra` more finished trials than the storm left.

    Args:
        launcher: how runs start (default: new processes, each paying the import).
    """
    from hpo.space import load_search_space

    space = load_search_space(space_path)
    rng = random.Random(seed)
    own = launcher is None
    launcher = launcher or Launcher(Path(workdir) / "runs", zygote=False)
    argv = ["run", "--space", str(space_path), "--storage", url, "--study-name", study_name]
    report = StormReport(url=url)
    acknowledged: dict[int, tuple] = {}
    seen: set[str] = set()
    storage = _storage(url)
    durations: list[float] = []
    start = time.monotonic()
    for r in range(rounds):
        before = _running(storage, study_name)  # orphans of earlier kills: not this run's trials
        proc = launcher.spawn([*argv, "--n-trials", "100000"], workdir)
        deadline = time.monotonic() + start_timeout
        while proc.alive() and time.monotonic() < deadline:
            if _running(storage, study_name) - before:
                break
            time.sleep(0.05)
        window = 2.5 * (sorted(durations)[len(durations) // 2] if durations else 2.0)
        delay = rng.uniform(0.0, window)
        time.sleep(delay)
        alive = proc.alive()
        if alive:
            proc.kill()
            report.kills += 1
        code = proc.wait()
        text = proc.stderr()
        if not alive:
            report.problems.append(f"round {r}: the run exited {code} before the kill: "
                                   f"{text.strip().splitlines()[-3:]}")
        got = audit(url, study_name, space, epochs, acknowledged, acknowledged_in_output(text))
        report.rounds += 1
        report.integrity_failures += got.integrity not in (None, "ok")
        report.lost += got.lost
        report.changed += got.changed
        report.problems += [f"round {r}: {p}" for p in got.problems if p not in seen]
        seen.update(got.problems)  # a malformed trial is reported once, not every round
        orphans = {t.number for t in got.trials if t.state.name == "RUNNING"} - before
        report.orphans_made += len(orphans)
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in got.trials
                     if t.state.name == "COMPLETE"]
        if log:
            log(f"round {r + 1}/{rounds}: killed {delay:.2f} s into the run's first trial "
                f"(window {window:.1f} s), {got.finished} finished, "
                f"orphans {sorted(orphans)}, integrity {got.integrity}")
    target = sum(1 for t in _study_trials(storage, study_name)
                 if t.state.name in _FINISHED) + extra
    # Within the grace period a dead run's trial still counts as running (maybe on another
    # machine); a user resumes later than that, and so does the storm.
    time.sleep(float(launcher.env.get("VCR_HPO_GRACE", 30)) + 1)
    resume = launcher.run([*argv, "--n-trials", str(target), "--quiet"], workdir, timeout=600)
    if own:
        launcher.close()
    report.resume_code = resume.code
    if resume.code != 0:
        report.problems.append(f"resume exited {resume.code}: {resume.err[-2000:]}")
    got = audit(url, study_name, space, epochs, acknowledged)
    report.integrity_failures += got.integrity not in (None, "ok")
    report.lost += got.lost
    report.changed += got.changed
    report.problems += [f"after resume: {p}" for p in got.problems]
    report.target = target
    report.finished = got.finished
    report.running_after_resume = got.count("RUNNING")
    report.waiting_after_resume = got.count("WAITING")
    report.failed = got.count("FAIL")
    report.retries = sum(1 for t in got.trials if "failed_trial" in t.system_attrs)
    report.lost = sorted(set(report.lost))
    report.changed = sorted(set(report.changed))
    report.seconds = time.monotonic() - start
    return report


# --------------------------------------------------------------------------- load


@dataclass
class LoadReport:
    """Figures of one multi-worker run."""

    url: str
    workers: int
    target: int
    code: int = -1
    finished: int = 0
    states: dict[str, int] = field(default_factory=dict)
    dense: bool = False
    problems: list[str] = field(default_factory=list)
    max_concurrent: int = 0
    worker_errors: int = 0
    seconds: float = 0.0
    stderr: str = ""

    @property
    def trials_per_hour(self) -> float:
        return 3600.0 * self.finished / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()) if v)
        return [
            (f"load on {self.url.split('://')[0]}: {self.workers} workers x "
             f"{self.target // self.workers} trials: exit {self.code}, finished "
             f"{self.finished}/{self.target} ({states}), numbering dense {self.dense}"),
            (f"  worker errors {self.worker_errors}, out-of-space or malformed trials "
             f"{len(self.problems)}, at most {self.max_concurrent} trials running at once"),
            f"  {self.seconds:.0f} s wall (process start-up included), {self.trials_per_hour:.0f} trials/hour",
        ]


def _max_overlap(trials) -> int:
    events = []
    for t in trials:
        if t.datetime_start and t.datetime_complete:
            events += [(t.datetime_start, 1), (t.datetime_complete, -1)]
    level = best = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        level += step
        best = max(best, level)
    return best


def load_run(url: str, space_path: Path, workdir: Path, *, workers: int, n_trials: int,
             study_name: str = "load", epochs: int = 1, timeout: float = 1800.0) -> LoadReport:
    """`vcr-hpo run --workers N --n-trials M` on a fresh study, then audit every trial."""
    from hpo.space import load_search_space

    space = load_search_space(space_path)
    report = LoadReport(url=url, workers=workers, target=n_trials)
    argv = [vcr_executable(), "run", "--space", str(space_path), "--storage", url,
            "--study-name", study_name, "--n-trials", str(n_trials), "--workers", str(workers)]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=workdir, env=run_env(heartbeat=5, grace=30), check=False,
                          capture_output=True, text=True, timeout=timeout)
    report.seconds = time.monotonic() - start
    report.code, report.stderr = proc.returncode, proc.stderr
    failed = re.findall(r"(\d+) of \d+ workers failed", proc.stderr)  # the parent's summary
    report.worker_errors = sum(int(n) for n in failed) + proc.stderr.count("Traceback")
    got = audit(url, study_name, space, epochs, {})
    report.states = {s: got.count(s) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    report.finished = got.finished
    report.dense = sorted(t.number for t in got.trials) == list(range(len(got.trials)))
    report.problems = got.problems
    report.max_concurrent = _max_overlap(got.trials)
    return report


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=100, help="kill rounds (default 100)")
    p.add_argument("--workers", type=int, default=8, help="load workers (default 8)")
    p.add_argument("--trials", type=int, default=0,
                   help="load trials in all (default 30 per worker)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL, not SQLite")
    p.add_argument("--skip-storm", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--fresh", action="store_true",
                   help="a new vcr-hpo process per storm round (default: fork each from one "
                        "pre-imported interpreter, which saves the 8-25 s import per round)")
    ns = p.parse_args(argv)
    trials = ns.trials or 30 * ns.workers
    import optuna
    import torch

    print(f"$ python {shlex.join(['bench/reliability.py', *(argv if argv is not None else sys.argv[1:])])}")
    one, five, _ = os.getloadavg()
    print(f"# {os.cpu_count()} CPU cores, torch {torch.__version__}, optuna {optuna.__version__}, "
          f"load {one:.1f}/{five:.1f}", flush=True)
    cluster = None
    failed = False
    with tempfile.TemporaryDirectory(prefix="vcr-rel-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("VCR_HPO_CACHE", str(root / "cache"))
        if ns.postgres:
            launcher = Path(__file__).resolve().parents[1] / "tests" / "_postgres.py"
            cluster = runpy.run_path(str(launcher))["PostgresCluster"]()  # test-only, by path

        def url_for(name: str) -> str:
            return cluster.create_database() if cluster else f"sqlite:///{root / name}.db"

        try:
            if not ns.skip_storm:
                space = write_space(root, name="rel", epochs=2)
                launcher = Launcher(root / "runs", zygote=not ns.fresh)
                try:
                    rep = kill_storm(url_for("storm"), space, root, rounds=ns.rounds, seed=ns.seed,
                                     launcher=launcher, log=lambda s: print("  " + s, flush=True))
                finally:
                    launcher.close()
                print("\n".join(rep.lines()))
                for line in rep.problems[:20]:
                    print("  problem: " + line)
                failed |= bool(rep.integrity_failures or rep.lost or rep.changed or rep.problems
                               or rep.running_after_resume or rep.finished != rep.target)
            if not ns.skip_load:
                space = write_space(root, name="load", epochs=1, samples=16, sampler="TPE")
                rep = load_run(url_for("load"), space, root, workers=ns.workers, n_trials=trials)
                print("\n".join(rep.lines()), flush=True)
                for line in rep.problems[:20]:
                    print("  problem: " + line)
                failed |= bool(rep.code or rep.problems or rep.worker_errors
                               or rep.finished != rep.target or not rep.dense)
        finally:
            if cluster:
                cluster.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
