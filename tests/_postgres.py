"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests and the benches (test-only code).

Not part of the installed package: tests/conftest.py, bench/reliability.py and
bench/storage_cost.py load it by its path. Kept instead of
pytest-postgresql because that plugin runs initdb/pg_ctl as the current user, and initdb refuses
root (CI runs as root); this launcher runs them as the `postgres` user through runuser.

`VCR_HPO_TEST_PG_BINDIR` names the folder holding initdb and pg_ctl; set it to an empty folder
to see how the tests behave on a machine without PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import runpy
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

__all__ = ["PostgresCluster", "postgres_available"]


def _pg_bindir() -> str | None:
    """$VCR_HPO_TEST_PG_BINDIR, else Debian's PostgreSQL binaries (newest), else initdb on PATH."""
    chosen = os.environ.get("VCR_HPO_TEST_PG_BINDIR")
    if chosen is not None:
        return chosen if os.path.isfile(os.path.join(chosen, "initdb")) else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    which = shutil.which("initdb")
    return os.path.dirname(which) if which else None


def postgres_available() -> bool:
    return _pg_bindir() is not None


def _free_port() -> int:
    # By its path: the benches run this file by its path, without tests/ on sys.path.
    return runpy.run_path(os.path.join(os.path.dirname(__file__), "_net.py"))["free_port"]()


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1, run as an unprivileged user."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries found; install Debian's postgresql")
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="vcrhpo-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            import pwd

            user = "postgres"
            pw = pwd.getpwnam(user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", user, "--"]
        self.user = "postgres"
        self._run("initdb", "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-w", "-t", "60",
                  "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                        "-c fsync=off -c max_connections=200", "start")
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, os.path.join(self.bindir, tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        import psycopg2

        name = "t_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGINT)  # fast shutdown
            for _ in range(200):
                os.kill(self.pid, 0)
                time.sleep(0.05)
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
