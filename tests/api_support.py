"""A real service on loopback for the API tests: uvicorn in a thread, httpx clients per role.

The app runs exactly as `reunite serve` runs it (create_app, uvicorn, real
SQLite catalog and FAISS indexes in a temporary data folder); tests talk to
it over TCP on 127.0.0.1 and may also look at the service object directly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from conftest import bind_catalog, catalog_env_of, catalog_of, jpeg_bytes, png_bytes, tiles

from api.auth import ROLES, create_key
from api.http.app import create_app
from api.service import Service
from indexer.crypto import KEY_ENV, generate_key

ROOT = Path(__file__).resolve().parent.parent


class LiveApi:
    """One running service and one API key per role."""

    def __init__(self, data_dir: Path, **options: object) -> None:
        self.data_dir = Path(data_dir)
        # A folder a test bound to a PostgreSQL database (conftest.bind_catalog) is served from it.
        options.setdefault("catalog_url", catalog_of(self.data_dir))
        self.app = create_app(self.data_dir, **options)
        self.service: Service = self.app.state.service
        self.catalog_url: str | None = options.get("catalog_url")  # type: ignore[assignment]
        bind_catalog(self.data_dir, self.catalog_url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        self.keys = {role: create_key(self.service.store.catalog, role, f"test-{role}") for role in ROLES}
        self._clients: dict[str, httpx.Client] = {}

    def key(self, role: str, name: str) -> str:
        return create_key(self.service.store.catalog, role, name)

    def as_(self, role: str | None) -> httpx.Client:
        """A client sending the key of ``role`` (None: no key)."""
        name = role or "anonymous"
        if name not in self._clients:
            headers = {"X-API-Key": self.keys[role]} if role else {}
            self._clients[name] = httpx.Client(base_url=self.url, headers=headers, timeout=120)
        return self._clients[name]

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=120)

    def stored_bytes(self) -> bytes:
        """What the catalog holds at rest: the SQLite file and its log, or a dump of every table.

        On PostgreSQL each row is read as text, where bytea shows as hex: :meth:`holds` looks
        for both forms.
        """
        engine = self.service.store.catalog.engine
        if engine.dialect.name == "sqlite":
            files = [self.data_dir / "catalog.sqlite", self.data_dir / "catalog.sqlite-wal"]
            return b"".join(f.read_bytes() for f in files if f.exists())
        from sqlalchemy import inspect, text
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            rows = [str(r[0]) for t in tables
                    for r in conn.execute(text(f'SELECT CAST(t AS text) FROM "{t}" t'))]
        return "\n".join(rows).encode("utf-8")

    def holds(self, needle: bytes) -> bool:
        """Whether ``needle`` is anywhere in the catalog's stored bytes (in clear or as bytea hex)."""
        blob = self.stored_bytes()
        return needle in blob or needle.hex().encode() in blob

    def sql(self, statement: str, *args: object) -> list[tuple]:
        """Raw SQL on the catalog (``?`` placeholders), as an attacker with database access would."""
        raw = self.service.store.catalog.engine.raw_connection()
        try:
            if self.service.store.catalog.engine.dialect.name != "sqlite":
                statement = statement.replace("?", "%s")
                # psycopg hands JSON columns back decoded; written back, they go as JSON text.
                args = tuple(json.dumps(a) if isinstance(a, dict | list) else a for a in args)
            cursor = raw.cursor()
            cursor.execute(statement, args)
            rows = cursor.fetchall() if cursor.description else []
            raw.commit()
            return [tuple(r) for r in rows]
        finally:
            raw.close()

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self.service.store.catalog.engine.dispose()


@contextmanager
def encryption_key(value: str | None = None) -> Iterator[str]:
    """Set REUNITE_ENCRYPTION_KEY for the duration (module-scoped fixtures cannot monkeypatch)."""
    old = os.environ.get(KEY_ENV)
    key = value or generate_key()
    os.environ[KEY_ENV] = key
    try:
        yield key
    finally:
        if old is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = old


@contextmanager
def no_encryption_key() -> Iterator[None]:
    old = os.environ.pop(KEY_ENV, None)
    try:
        yield
    finally:
        if old is not None:
            os.environ[KEY_ENV] = old


@contextmanager
def live_api(data_dir: Path, **options: object) -> Iterator[LiveApi]:
    api = LiveApi(data_dir, **options)
    try:
        yield api
    finally:
        api.close()


def consent_record(label: str, **extra: object) -> dict[str, object]:
    """A valid consent record for an enrollment (the same columns as `reunite enroll`)."""
    return {"label": label, "consent_by": "Parent of the subject", "consent_date": "2026-01-05",
            "consent_expires": "2099-12-31", "case_ref": f"CASE-{label}", **extra}


def reunite(*args: str, data: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the `reunite` console entry point (api.cli:main, as installed) in a subprocess."""
    cmd = [sys.executable, "-c", "from api.cli import main; main()", "--data", str(data), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **catalog_env_of(data), **(env or {})})


def queued_candidates(api: LiveApi, bank: str, n: int, seed: int) -> list[int]:
    """Ingest ``n`` tiles into ``bank`` and match a recompressed copy of each; the candidate ids."""
    pictures = tiles(n, seed=seed)
    r = api.as_("ingest").post(f"/v1/banks/{bank}/items/batch",
                               files=[("images", (f"{k}.png", png_bytes(p), "image/png"))
                                      for k, p in enumerate(pictures)])
    assert r.status_code == 200 and r.json()["indexed"] == n, r.text
    ids = []
    for p in pictures:
        r = api.as_("investigator").post("/v1/match", data={"banks": bank},
                                         files={"image": ("q.jpg", jpeg_bytes(p, 80), "image/jpeg")})
        best = r.json()["candidates"][0]
        assert best["decision"] == "match" and best["candidate_id"], r.text
        ids.append(best["candidate_id"])
    return ids


def web_session(api: LiveApi, key: str) -> httpx.Client:
    """A client signed in to the reviewer pages (cookies sent by hand: they are Secure, this is http)."""
    import re

    client = httpx.Client(base_url=api.url, timeout=120, follow_redirects=False)
    form = client.get("/review/signin")
    signin_token = form.cookies["reunite_signin"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    signed = client.post("/review/signin", data={"key": key, "csrf": csrf, "next": "/review/"},
                         headers={"Cookie": f"reunite_signin={signin_token}"})
    assert signed.status_code == 303, signed.text
    client.headers["Cookie"] = f"reunite_review={signed.cookies['reunite_review']}"
    return client


def reveal_reference(client: httpx.Client, cid: int) -> None:
    """Look at candidate ``cid``'s reference photo through the audited route, as a reviewer must
    before confirming a missing person (matcher.review.queue, ``reveal_required``)."""
    one = client.get(f"/v1/review/candidates/{cid}")
    assert one.status_code == 200, one.text
    r = client.get(f"/v1/subjects/{one.json()['pseudonym']}/photos/{one.json()['ref_item']}")
    assert r.status_code == 200, r.text
