"""`reunite serve` as its own process on a free loopback port, for the multi-process tests.

The two-worker and two-port tests need real processes (each with its own
indexes and connections), not the in-thread server of api_support.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(data: Path, env: dict[str, str], *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `reunite --data DATA serve` with ``options``; returns the process and its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from api.cli import main; main()", "--data", str(data),
                             "serve", "--port", str(port), "--log-level", "warning", *options],
                            cwd=ROOT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 180) -> None:
    """Wait for /readyz; fail at once if the process died, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "reunite serve did not start"
        time.sleep(0.2)
