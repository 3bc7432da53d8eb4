"""One real PostgreSQL server for the test run, and a throwaway database per test.

Why not pytest-postgresql: its process fixture cannot start the server as root
(CI runs as root), and ``initdb`` / ``pg_ctl`` refuse root too, so the server is
made and started here as the ``postgres`` user with ``runuser`` (directly when
the tests do not run as root). It listens on a free loopback port only, with
its socket in its own folder, fsync off (a test server loses nothing worth
keeping in a crash), and is stopped with ``pg_ctl stop`` at the end of the run.
Each test that asks for it gets its own ``CREATE DATABASE``, dropped after it.

The server binaries are Debian's ``postgresql`` package (``make postgres``),
found under ``/usr/lib/postgresql/<version>/bin`` or at ``$REUNITE_PG_BIN``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

OPT_OUT_ENV = "REUNITE_TEST_POSTGRES"  # "0": skip the PostgreSQL half of the suite (developers only)
BIN_ENV = "REUNITE_PG_BIN"
MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
           f"or ${BIN_ENV}: run `make postgres` (Debian's postgresql package), or set "
           f"{OPT_OUT_ENV}=0 to skip the PostgreSQL tests on a developer machine")


# Data folders whose catalog is a PostgreSQL database (conftest.bind_catalog): `reunite`
# subprocesses and LiveApi on such a folder get its URL, as an operator's shell would. Kept
# here, not in conftest, because some test modules import conftest twice (as `tests.conftest`).
CATALOG_OF: dict[Path, str] = {}
# While a module runs under conftest's `every_folder_on_backend` on PostgreSQL: the server
# that gives each new data folder its own database (here for the same reason).
NEW_FOLDERS_ON: list[PostgresServer] = []
# While a PostgreSQL module runs under REUNITE_TEST_VECTORS=milvus (conftest's `backend`): the
# run's Milvus URL, which every folder on PostgreSQL gets for its vectors (here for the same reason).
VECTORS_ON: list[str] = []


def opted_out() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() in ("0", "no", "false", "off")


def find_bin() -> Path | None:
    """The folder with initdb and pg_ctl: $REUNITE_PG_BIN, else the newest Debian install."""
    configured = os.environ.get(BIN_ENV)
    candidates = [Path(configured)] if configured else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if
        p.parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A private server in a temporary folder, owned by the ``postgres`` user when run as root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="reunite-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._names = itertools.count(1)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        return done

    def start(self) -> None:
        options = ("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=300")
        for attempt in range(3):  # another process may take the free port between probe and bind
            self.port = _free_port()
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                          "-o", f"-p {self.port} -k {self.root} {options}", "start")
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def stop(self) -> None:
        """Stop the server: ``pg_ctl stop``, and the postmaster's own PID killed if that fails."""
        pid_file = self.data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.is_file() else None
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        except Exception:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
