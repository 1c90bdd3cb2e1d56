"""Reliability fixtures: the campaign module (bench/reliability.py), a fast space, the installed CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VCR = shutil.which("vcr-hpo")


@pytest.fixture(scope="session")
def campaign():
    """bench/reliability.py as a module: the storm, load and audit code the benchmark runs too."""
    if VCR is None:
        pytest.skip("vcr-hpo is not installed (pip install -e .)")
    spec = importlib.util.spec_from_file_location("vcr_reliability", ROOT / "bench" / "reliability.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fast_space(campaign, tmp_path):
    """Write the campaign's fast search space; call with name/epochs/samples/sampler."""
    return lambda **kw: campaign.write_space(tmp_path, **kw)


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str
    timed_out: bool = False

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


# A zygote: one interpreter pays the torch/timm/optuna import once, then forks one child per case.
# The child runs the installed console script (`vcr-hpo`, by runpy) with its own argv, cwd,
# environment and file descriptors, and exits as the interpreter would: an uncaught exception
# prints its traceback and exits 1. Only the import cost is shared. `no_dac` drops root's
# CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so mode 000 files are unreadable as for a user.
_ZYGOTE = r"""
import ctypes, json, os, runpy, sys, time, traceback
import hpo.cli, hpo.study, hpo.space, hpo.data, hpo.objective, hpo.train, hpo.export, hpo.console
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
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
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
    deadline = time.monotonic() + req["timeout"]
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9); timed_out = True
        time.sleep(0.02)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status), "timed_out": timed_out}), flush=True)
"""


class Cli:
    """Runs the installed `vcr-hpo` with argv in cwd: `run` in a forked zygote child (fast),
    `fresh` as a new process (the user's way; pays the ~8 s import)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self._lock = threading.Lock()
        self._count = 0
        self._proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, VCR], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      env=env, cwd=root)
        ready = self._proc.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"the CLI zygote did not start: {ready!r}")

    def run(self, argv, cwd, *, env=None, unset=(), no_dac=False, timeout=120.0) -> CliResult:
        with self._lock:
            self._count += 1
            out, err = self.root / f"{self._count}.out", self.root / f"{self._count}.err"
            req = {"argv": [str(a) for a in argv], "cwd": str(cwd), "env": dict(env or {}),
                   "unset": list(unset), "no_dac": no_dac, "stdout": str(out), "stderr": str(err),
                   "timeout": timeout}
            self._proc.stdin.write(json.dumps(req) + "\n")
            self._proc.stdin.flush()
            reply = json.loads(self._proc.stdout.readline())
        return CliResult(reply["code"], out.read_text(errors="replace"),
                         err.read_text(errors="replace"), reply["timed_out"])

    def fresh(self, argv, cwd, *, env=None, unset=(), no_dac=False, timeout=300.0) -> CliResult:
        full = {**self.env, **(env or {})}
        for key in unset:
            full.pop(key, None)
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if no_dac else []
        try:
            proc = subprocess.run([*prefix, VCR, *map(str, argv)], cwd=cwd, env=full, check=False,
                                  capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return CliResult(-9, str(exc.stdout or ""), str(exc.stderr or ""), True)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=60)


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    """The installed CLI with empty weight caches, offline, one torch thread, short heartbeats."""
    if VCR is None:
        pytest.skip("vcr-hpo is not installed (pip install -e .)")
    root = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "TORCH_HOME": str(root / "torch_home"), "HF_HOME": str(root / "hf_home"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "VCR_HPO_HEARTBEAT": "1", "VCR_HPO_GRACE": "2"}
    env.pop("HF_HUB_CACHE", None)
    runner = Cli(root, env)
    yield runner
    runner.close()
