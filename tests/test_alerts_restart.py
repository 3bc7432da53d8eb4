"""An alert survives SIGKILL of `reunite serve` between the confirmation and the delivery, and is sent once.

`reunite serve` runs as a real subprocess (python -m api.cli --data D serve
--port P), its deliverer in the background. The receiver (a real HTTP server
on 127.0.0.1) refuses with 503 until the service is killed, so the alert is
confirmed and stored but not delivered when the process dies; after the
restart the new process delivers it, exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from api_support import ROOT, consent_record, reveal_reference
from conftest import jpeg_bytes, png_bytes
from test_alerts import face
from webhook_receiver import LoopbackReceiver

from api.application import Application
from api.auth import create_key
from api.delivery import Deliverer
from indexer.crypto import KEY_ENV, generate_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data: Path, port: int, env: dict[str, str], log_level: str = "warning") -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "--data", str(data), "serve", "--port",
                             str(port), "--log-level", log_level], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.2)


def test_sigkill_between_confirmation_and_delivery_loses_nothing_and_sends_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, KEY_ENV: generate_key(), "OMP_NUM_THREADS": "1",
           "REUNITE_ALERT_POLL_S": "0.2", "REUNITE_ALERT_BACKOFF_S": "0.1"}
    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = env[KEY_ENV]
    try:
        setup = Application(data, environ=env)
        keys = {name: create_key(setup.store.catalog, role, name) for name, role in (
            ("admin-1", "admin"), ("inv-1", "investigator"), ("rev-1", "reviewer"), ("rev-2", "reviewer"))}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with LoopbackReceiver() as receiver:
            receiver.status = 503
            proc = serve(data, port, env)
            try:
                def as_(name: str) -> httpx.Client:
                    return httpx.Client(base_url=url, headers={"X-API-Key": keys[name]}, timeout=120)

                with as_("admin-1") as admin:
                    assert admin.post("/v1/banks", json={"name": "families", "kind": "missing_person"}
                                      ).status_code == 201
                    r = admin.post("/v1/banks/families/subjects",
                                   data={"record": json.dumps(consent_record("mp-k"))},
                                   files=[("photos", ("p.png", png_bytes(face()), "image/png"))])
                    assert r.status_code == 201, r.text
                    pseudonym = r.json()["subject"]["pseudonym"]
                case = setup.alerts.cases.create("Kill test", "inv-1")
                setup.alerts.cases.add_subjects(case.ref, [pseudonym])
                _sub, secret = setup.alerts.subscribe("inv-1", receiver.url)
                with as_("inv-1") as inv:
                    r = inv.post("/v1/match", data={"banks": "families"},
                                 files={"image": ("ad.jpg", jpeg_bytes(face(220), 80), "image/jpeg")})
                    [cid] = [c["candidate_id"] for c in r.json()["candidates"] if c["candidate_id"]]
                for reviewer in ("rev-1", "rev-2"):
                    with as_(reviewer) as rev:
                        reveal_reference(rev, cid)
                        r = rev.post(f"/v1/review/candidates/{cid}/decision", json={"action": "confirm"})
                        assert r.status_code == 200, r.text
                assert r.json()["state"] == "confirmed"
                # The service's deliverer tried (and the receiver refused): confirmed, stored, not delivered.
                receiver.wait_for(lambda: len(receiver.requests) >= 1)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                assert not receiver.accepted
                receiver.status = 200
                proc = serve(data, port, env, log_level="info")
                receiver.wait_for(lambda: len(receiver.accepted) >= 1)
                with as_("inv-1") as inv:
                    [alert] = inv.get("/v1/alerts").json()["alerts"]
                    assert alert["candidate_id"] == cid and alert["delivery"] == "delivered"
                # Nothing is due any more: another pass (cron's `reunite alerts deliver`) sends nothing.
                assert Deliverer(Application(data, environ=env)).run_once().delivered == 0
                proc.send_signal(signal.SIGTERM)  # a clean stop: the lifespan stops the deliverer
                proc.wait(timeout=60)
                assert proc.stderr is not None
                assert "Application shutdown complete" in proc.stderr.read().decode()
            finally:
                if proc.poll() is None:
                    proc.kill()
        [got] = receiver.accepted
        assert got.signed_by(secret)
        assert got.payload["candidate_id"] == cid and got.payload["case"] == case.ref
        assert {r.headers["idempotency-key"] for r in receiver.requests} == {alert["event_id"]}
    finally:
        if old is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = old
