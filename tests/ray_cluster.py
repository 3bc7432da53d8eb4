"""One real two-node Ray cluster for the test run, in a network namespace of its own.

Why a namespace: Ray binds all interfaces whatever the options. Measured with
Ray 2.60 (``ray start --head --node-ip-address=127.0.0.1 --port=P``, then a
second ``ray start --address=127.0.0.1:P``, and ``ss -ltnp``): the GCS server
(port P) and both raylets (node manager and object manager ports) listen on
``*``, the autoscaler monitor on ``0.0.0.0``, and the Ray Client server (10001)
and the runtime-env agents on the machine's own address; the head even took
the machine's address as its node IP. So the cluster runs in a new network
namespace (``unshare --net``, which has only its loopback, brought up here):
there every one of those sockets is on 127.0.0.1 of that namespace and nothing
outside it can reach them. The tests reach it by running ``reunite`` in the
same namespace (``nsenter --net=/proc/<head pid>/ns/net``).

Each node is ``ray start ... --block`` (one CPU each); stopping sends SIGTERM to
those two and, after a short grace, SIGKILL to each of their descendants by PID
(:meth:`RayCluster.stop`). The nodes' workers get the repository on PYTHONPATH
(a deployment installs reunite on each node) and one thread per library.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPT_OUT_ENV = "REUNITE_TEST_RAY"  # "0": skip the Ray tests (developers only)
PORT = 6380  # the GCS port inside the namespace: nothing else lives there
ROOT = Path(__file__).resolve().parent.parent
READY = "This command will now block forever"
MISSING = ("Ray is not installed: pip install -e '.[test]' (the `ray` extra), or set "
           f"{OPT_OUT_ENV}=0 to skip the Ray tests on a developer machine")


def opted_out() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() in ("0", "no", "false", "off")


def ray_bin() -> Path | None:
    found = Path(sys.executable).parent / "ray"
    return found if found.is_file() else None


class RayCluster:
    """A head and a worker node, one CPU each, on the loopback of a private network namespace."""

    def __init__(self, ray: Path) -> None:
        self.ray = ray
        self.root = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths
        self.address = f"127.0.0.1:{PORT}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.procs: list[subprocess.Popen[bytes]] = []

    def _start(self, cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.root / log).open("wb")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                                start_new_session=True)
        out.close()
        self.procs.append(proc)
        deadline = time.monotonic() + 120
        while READY not in (self.root / log).read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[:4])} did not start:\n"
                                   + (self.root / log).read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        return proc

    def start(self) -> None:
        common = ["--num-cpus=1", f"--temp-dir={self.root / 'ray'}", "--disable-usage-stats", "--block"]
        head = [str(self.ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={PORT}",
                "--include-dashboard=false", *common]
        namespace = (["unshare", "--net"] if os.geteuid() == 0
                     else ["unshare", "--user", "--map-root-user", "--net"])
        self.head = self._start([*namespace, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *head],
                                "head.log")
        self._start([*self.enter(), str(self.ray), "start", f"--address={self.address}",
                     "--node-ip-address=127.0.0.1", *common], "worker.log")
        self.wait_for_nodes(2)

    def enter(self) -> list[str]:
        """The command prefix that runs a program in the cluster's network namespace."""
        flags = [f"--net=/proc/{self.head.pid}/ns/net"]
        if os.geteuid() != 0:
            flags = [f"--user=/proc/{self.head.pid}/ns/user", "--preserve-credentials", *flags]
        return ["nsenter", *flags, "--"]

    def wait_for_nodes(self, count: int) -> None:
        """Until the GCS lists ``count`` live nodes (a node's `ray start` returns before it registered)."""
        probe = ("import ray, time, sys\n"
                 f"ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR')\n"
                 "deadline = time.monotonic() + 60\n"
                 f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
                 "    if time.monotonic() > deadline: sys.exit('nodes missing')\n"
                 "    time.sleep(0.2)\n")
        subprocess.run([*self.enter(), sys.executable, "-c", probe], env=self.env, check=True,
                       timeout=120, capture_output=True, cwd=self.root)

    def stop(self) -> None:
        """SIGTERM to both nodes, then SIGKILL, by PID, to whatever of theirs is left after a grace.

        A node asked to stop drains for up to 30 s first; a test cluster has nothing worth
        draining. Its processes are found before as descendants of the two ``ray start``
        (actor workers run in sessions of their own, so a process group misses them).
        """
        family = [pid for proc in self.procs for pid in _descendants(proc.pid)]
        for proc in reversed(self.procs):  # the worker node first, then the head
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid in [proc.pid for proc in self.procs] + family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _descendants(root: int) -> list[int]:
    """PIDs of every living descendant of ``root`` (read from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
