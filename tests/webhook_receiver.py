"""A real webhook receiver on 127.0.0.1 for the alert tests: records every POST, answers as told.

It checks signatures on its own (HMAC-SHA256 over ``"<t>." + body``, as the
README documents for receivers), not with reunite's code, so a change of the
signing scheme on one side only fails the tests. ``accepted`` holds the
requests it answered 2xx, de-duplicated by nothing: a repeat would show.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_by(self, secret: str, tolerance_s: float = 300) -> bool:
        fields = dict(part.split("=", 1) for part in self.headers.get("x-reunite-signature", "").split(","))
        t = fields.get("t", "")
        if not t.isdigit() or t != self.headers.get("x-reunite-timestamp"):
            return False
        if abs(time.time() - int(t)) > tolerance_s:
            return False
        mac = hmac.new(secret.encode(), t.encode() + b"." + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, fields.get("v1", ""))


@dataclass
class Receiver:
    url: str = ""
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met; got {len(self.requests)} requests")
            time.sleep(0.05)


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = self.receiver.status
        with self.receiver._lock:
            self.receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()},
                                                   body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


class LoopbackReceiver:
    """``with LoopbackReceiver() as r:`` serves on ``r.url`` until the block ends."""

    def __init__(self) -> None:
        self.state = Receiver()
        handler = type("Handler", (_Handler,), {"receiver": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = self.state.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self.state

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
