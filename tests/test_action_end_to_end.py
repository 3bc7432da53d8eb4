"""Issue 16's done-when, in one run: a crawl becomes two signed alerts, once each, through a SIGKILL.

Every part is the real thing, in its own process where users run it so:
`reunite enroll` of a consented missing person and of a venue (each in a case
owned by one investigator, ``--case-owner``), `reunite alerts subscribe` of a
webhook receiver (a real HTTP server on 127.0.0.1 that checks the signature
itself), `reunite serve` with its deliverer, and `reunite index` of a crawl in
which one ad shows the person (a re-encoded, resized photo) and another the
venue (another view of the room). With no request by hand both ads reach the
review queue with their ad as context; reviewers confirm them over HTTP (the
missing person twice, by two reviewers). The receiver refuses with 503 until
the service is killed with SIGKILL, so both alerts are confirmed and stored but
not delivered when it dies; after the restart each is delivered exactly once,
signed (HMAC-SHA256 over "<timestamp>.<body>" with the subscriber's secret).
Then a second person whose photo is in an ad indexed earlier is enrolled: the
back-search puts that ad in the queue for the new person.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import httpx
from test_alerts_restart import free_port, serve
from test_scene import view
from webhook_receiver import LoopbackReceiver

from api.application import Application
from api.auth import create_key
from api.delivery import Deliverer
from indexer.crypto import KEY_ENV, generate_key
from tests.api_support import consent_record, reveal_reference
from tests.conftest import jpeg_bytes, photo, run_reunite

OWNER = "inv-1"
ROOMS = {"cafe": "coffee.png", "cat_room": "chelsea.png", "launch_hall": "rocket.jpg"}


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _person(tmp: Path, label: str, image_name: str, crop: tuple[int, int, int, int] | None = None) -> Path:
    image = photo("astronaut.png")
    ref = tmp / image_name
    ref.write_bytes(jpeg_bytes(image.crop(crop) if crop else image, 92))
    return _csv(tmp / f"{label}.csv", [{"path": str(ref), **consent_record(label)}])


def _venues(tmp: Path) -> Path:
    folder = tmp / "venues"
    folder.mkdir()
    rows = []
    for label, name in ROOMS.items():
        for seed in (1, 2):
            path = folder / f"{label}_{seed}.jpg"
            path.write_bytes(jpeg_bytes(view(photo(name), seed)))
            rows.append({"path": str(path), "label": label, "name": label.title(), "room": str(seed)})
    return _csv(tmp / "venues.csv", rows)


def _crawl(tmp: Path) -> Path:
    ads = tmp / "crawl"
    ads.mkdir()
    (ads / "a1.jpg").write_bytes(jpeg_bytes(photo("astronaut.png").resize((400, 400)), 60))
    (ads / "a2.jpg").write_bytes(jpeg_bytes(view(photo("coffee.png"), 7, strength=0.1), 80))
    (ads / "a3.jpg").write_bytes(jpeg_bytes(photo("brick.png"), 80))
    return _csv(tmp / "ads.csv", [
        {"path": "crawl/a1.jpg", "label": "ad-1", "site": "example.test",
         "posted_at": "2026-11-30T10:00:00Z"},
        {"path": "crawl/a2.jpg", "label": "ad-2", "site": "other.test", "posted_at": "2026-12-01"},
        {"path": "crawl/a3.jpg", "label": "ad-3", "site": "other.test"}])


def test_a_crawl_alerts_the_case_owner_once_per_confirmed_match_through_a_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, KEY_ENV: generate_key(), "OMP_NUM_THREADS": "1",
           "REUNITE_ALERT_POLL_S": "0.2", "REUNITE_ALERT_BACKOFF_S": "0.1"}
    setup = Application(data, environ=env)
    keys = {name: create_key(setup.store.catalog, role, name) for name, role in (
        (OWNER, "investigator"), ("rev-1", "reviewer"), ("rev-2", "reviewer"))}
    for manifest, bank, kind in ((_person(tmp_path, "mp-a", "ref-a.jpg"), "missing", "missing_person"),
                                 (_venues(tmp_path), "hotels", "venue")):
        done = run_reunite("enroll", str(manifest), "--bank", bank, "--kind", kind, "--case-owner", OWNER,
                           "--quiet", data=data, env=env)
        assert done.returncode == 0, done.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def as_(name: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers={"X-API-Key": keys[name]}, timeout=120)

    with LoopbackReceiver() as receiver:
        sub = run_reunite("alerts", "subscribe", "--owner", OWNER, "--url", receiver.url, data=data, env=env)
        assert sub.returncode == 0, sub.stderr
        secret = sub.stdout.strip().splitlines()[-1]
        receiver.status = 503
        proc = serve(data, port, env)
        try:
            # No request by hand: indexing the crawl is all it takes to fill the queue.
            indexed = run_reunite("index", str(_crawl(tmp_path)), "--bank", "ads", "--quiet",
                                  data=data, env=env)
            assert indexed.returncode == 0, indexed.stderr
            assert "watch: 3 ads checked against hotels, missing" in indexed.stdout, indexed.stdout
            with as_("rev-1") as rev:
                queue = rev.get("/v1/review/candidates", params={"limit": 100}).json()["candidates"]
            found = sorted((c["bank"], c["context"]["ad"]) for c in queue)
            assert found == [("hotels", "ad-2"), ("missing", "ad-1")], queue
            ids = {c["bank"]: c["id"] for c in queue}
            for bank, reviewers in (("missing", ("rev-1", "rev-2")), ("hotels", ("rev-1", "rev-2"))):
                for reviewer in reviewers:
                    with as_(reviewer) as rev:
                        if bank == "missing":  # a person is confirmed only by who saw her photo
                            reveal_reference(rev, ids[bank])
                        r = rev.post(f"/v1/review/candidates/{ids[bank]}/decision",
                                     json={"action": "confirm"})
                    assert r.status_code == 200, r.text
                    if r.json()["state"] == "confirmed":
                        break
                    assert r.json()["state"] == "awaiting_second" and bank == "missing", r.text
                assert r.json()["state"] == "confirmed", (bank, r.text)
            # The deliverer tried both (the receiver refused): confirmed, stored, not delivered. Kill it.
            receiver.wait_for(lambda: len({q.headers["idempotency-key"] for q in receiver.requests}) >= 2)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL and not receiver.accepted
            receiver.status = 200
            proc = serve(data, port, env)
            receiver.wait_for(lambda: len(receiver.accepted) >= 2)
            with as_(OWNER) as inv:
                alerts = inv.get("/v1/alerts").json()["alerts"]
            assert sorted(a["candidate_id"] for a in alerts) == sorted(ids.values())
            assert all(a["delivery"] == "delivered" for a in alerts), alerts
            # Nothing is due any more: another pass (cron's `reunite alerts deliver`) sends nothing.
            assert Deliverer(Application(data, environ=env)).run_once().delivered == 0
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        accepted = list(receiver.accepted)
    assert len(accepted) == 2  # exactly one each, through the kill and the restart
    assert sorted(got.payload["candidate_id"] for got in accepted) == sorted(ids.values())
    assert all(got.signed_by(secret) for got in accepted)  # HMAC-SHA256 and a fresh timestamp
    assert not accepted[0].signed_by(secret + "x")
    assert {got.headers["idempotency-key"] for got in accepted} == {a["event_id"] for a in alerts}
    assert all(got.payload["case"].startswith("C-") for got in accepted)

    # A person enrolled after the crawl, whose photo is in ad-1: the back-search queues that ad for her.
    later = _person(tmp_path, "mp-b", "ref-b.jpg", crop=(60, 0, 460, 400))
    back = run_reunite("enroll", str(later), "--bank", "missing", "--kind", "missing_person", "--quiet",
                       data=data, env=env)
    assert back.returncode == 0, back.stderr
    assert "back-search of ads: 3 ads checked against missing" in back.stdout, back.stdout
    app = Application(data, environ=env)
    with app.store.catalog.session() as s:
        from indexer.store.catalog import Subject
        labels = {sub.id: sub.label for sub in s.query(Subject)}
    queued, _total = app.review.list(limit=100)
    pending = [(labels[c.subject_id], c.context["ad"]) for c in queued if c.state == "pending"]
    assert pending == [("mp-b", "ad-1")]
