"""One real Milvus server for the test run, in a network namespace of its own.

Why a namespace: the embedded server of the PyPI package ``milvus==2.3.5``
(``milvus run standalone``) listens on all interfaces, and its embedded etcd
takes ports 2379/2380 whatever the configuration says, so two runs on one
machine (or a developer's own etcd) would collide and the server would be
reachable from the network. It runs inside ``unshare --net`` (only a loopback
there, brought up first), where every one of its sockets is private.

The tests reach it through two byte relays: inside the namespace one listens
on a unix socket in the run's folder and connects to 127.0.0.1:19530 there;
in the test process one listens on a free 127.0.0.1 port of this machine and
connects to that unix socket (a unix socket is a file, so it crosses the
namespace boundary). ``reunite`` subprocesses and ``reunite serve`` get
``milvus://127.0.0.1:<that port>`` like any client.

The package unpacks its binaries (246 MB) on first start, about 30 s; they are
unpacked once into the user's cache (``$REUNITE_CACHE_DIR`` or
``~/.cache/reunite``) and each run's server gets a symlink to them, so later
runs start in seconds. The server's data lives in a temporary folder removed at
the end; the ``milvus run standalone`` child is stopped by its PID.

Run as ``python tests/milvus_server.py RUNDIR`` (inside the namespace) it is
the namespace side: it starts the server, serves the unix socket and writes
``RUNDIR/ready`` with the server's PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

OPT_OUT_ENV = "REUNITE_TEST_MILVUS"  # "0": skip the Milvus tests (developers only)
MILVUS_PORT = 19530  # inside the namespace: nothing else lives there
MISSING = ("the embedded Milvus server is not installed: pip install -e '.[test]' (the `milvus` extra), "
           f"or set {OPT_OUT_ENV}=0 to skip the Milvus tests on a developer machine")
SOCKET_NAME = "milvus.sock"


def opted_out() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() in ("0", "no", "false", "off")


def installed() -> bool:
    try:
        import milvus  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


def _cache_dir() -> Path:
    base = os.environ.get("REUNITE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    if not os.environ.get("REUNITE_CACHE_DIR"):
        root = root / "reunite"
    return root


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, connect) -> None:  # type: ignore[no-untyped-def]
    try:
        server_r, server_w = await connect()
    except OSError:
        client_w.close()
        return
    await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w), return_exceptions=True)


# --- the namespace side ------------------------------------------------------------------------

def _serve_inside(run_dir: Path) -> None:
    """Start the server, relay the unix socket to it, stop it on SIGTERM."""
    from milvus import MilvusServer, MilvusServerConfig, _initialize_data_files

    bin_home = _cache_dir() / "milvus-2.3.5"
    bin_home.mkdir(parents=True, exist_ok=True)
    with (bin_home / ".lock").open("w") as lock:  # two runs unpacking at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        _initialize_data_files(str(bin_home))
    base = run_dir / "server"
    base.mkdir()
    (base / "bin").symlink_to(bin_home / "bin")
    server = MilvusServer(MilvusServerConfig(data_dir=str(base)))
    server.set_base_dir(str(base))
    # Strong reads wait for the next time tick: 200 ms by default, most of a lookup's time.
    server.config.set("proxy.timeTickInterval", int(os.environ.get("REUNITE_TEST_MILVUS_TICK_MS", "20")))
    server.start()
    assert server.server_proc is not None
    pid = server.server_proc.pid

    def stop(*_args: object) -> None:
        server.stop()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)

    async def main() -> None:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await _relay(r, w, lambda: asyncio.open_connection("127.0.0.1", MILVUS_PORT))

        unix = await asyncio.start_unix_server(handle, path=str(run_dir / SOCKET_NAME))
        (run_dir / "ready.tmp").write_text(str(pid))
        os.replace(run_dir / "ready.tmp", run_dir / "ready")
        async with unix:
            await unix.serve_forever()

    try:
        asyncio.run(main())
    finally:
        server.stop()


# --- the test side -----------------------------------------------------------------------------

class MilvusServer:
    """The namespace's server and this process's TCP relay to it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rm-", dir="/tmp"))  # short: a unix socket path
        self.proc: subprocess.Popen[bytes] | None = None
        self.server_pid: int | None = None
        self.port = 0
        self._relay: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"milvus://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240) -> None:
        namespace = (["unshare", "--net"] if os.geteuid() == 0
                     else ["unshare", "--user", "--map-root-user", "--net"])
        log = (self.root / "runner.log").open("wb")
        self.proc = subprocess.Popen(
            [*namespace, "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
             sys.executable, str(Path(__file__).resolve()), str(self.root)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while not (self.root / "ready").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Milvus did not start:\n" + self.log_tail())
            time.sleep(0.2)
        self.server_pid = int((self.root / "ready").read_text())
        self._start_relay()

    def log_tail(self) -> str:
        parts = [self.root / "runner.log", self.root / "server" / "logs" / "milvus-stderr.log"]
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in parts if p.is_file())

    def _start_relay(self) -> None:
        """127.0.0.1:<free port> here, each connection piped to the namespace's unix socket."""
        path = str(self.root / SOCKET_NAME)

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    upstream.connect(path)
                except OSError:
                    return
                back = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
                back.start()
                _copy(self.request, upstream)
                back.join()
                upstream.close()

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Pipe)
        server.daemon_threads = True
        self._relay = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="milvus-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """SIGTERM to the runner (which stops the server), then SIGKILL to the server's PID if left."""
        if self._relay is not None:
            self._relay.shutdown()
            self._relay.server_close()
            self._relay = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        if self.server_pid is not None and _is_milvus(self.server_pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.server_pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Bytes from ``source`` to ``sink`` until either side closes."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _is_milvus(pid: int) -> bool:
    """Whether ``pid`` is still a ``milvus run standalone`` (not a PID reused meanwhile)."""
    try:
        return b"milvus" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


if __name__ == "__main__":
    _serve_inside(Path(sys.argv[1]))
