"""From a confirmed match to action: outbox, signed webhook, acknowledgement, outcome, evidence, times.

The candidate is made by the real path: a face photo enrolled into a
missing-person bank (encryption key set), a re-encoded copy matched over HTTP,
two different reviewers confirm. The webhook goes to a real HTTP server on
127.0.0.1 (tests/webhook_receiver.py), which checks the signature itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api, reveal_reference
from conftest import jpeg_bytes, photo, png_bytes
from PIL import Image, ImageEnhance
from webhook_receiver import LoopbackReceiver, Receiver

from api.delivery import Deliverer
from matcher.review import outbox

NAME = "Ana Example-Person"
CASE_REF_TEXT = "CASE-ALERT-77"
OWNER = "case-officer"


def face(side: int = 200) -> Image.Image:
    return photo("astronaut.png").crop((130, 20, 370, 260)).resize((side, side))


def enroll(api: LiveApi, label: str, image: Image.Image) -> str:
    record = {**consent_record(label), "case_ref": CASE_REF_TEXT, "personal": {"name": NAME}}
    r = api.as_("admin").post("/v1/banks/families/subjects", data={"record": json.dumps(record)},
                              files=[("photos", ("p.png", png_bytes(image), "image/png"))])
    assert r.status_code == 201, r.text
    return str(r.json()["subject"]["pseudonym"])


def match(api: LiveApi, query: bytes) -> int:
    r = api.as_("investigator").post("/v1/match", data={"banks": "families"},
                                     files={"image": ("ad.jpg", query, "image/jpeg")})
    assert r.status_code == 200, r.text
    queued = [c for c in r.json()["candidates"] if c["candidate_id"]]
    assert queued, r.text
    return int(queued[0]["candidate_id"])


def confirm_twice(api: LiveApi, second: str, cid: int) -> None:
    reveal_reference(api.as_("reviewer"), cid)  # a person is confirmed only after the photo was seen
    r = api.as_("reviewer").post(f"/v1/review/candidates/{cid}/decision", json={"action": "confirm"})
    assert r.status_code == 200 and r.json()["state"] == "awaiting_second", r.text
    assert not [a for a in api.service.alerts.all_views() if a.candidate_id == cid]  # not yet
    with api.client(second) as c:
        reveal_reference(c, cid)
        r = c.post(f"/v1/review/candidates/{cid}/decision", json={"action": "confirm"})
    assert r.status_code == 200 and r.json()["state"] == "confirmed", r.text


@dataclass
class World:
    api: LiveApi
    receiver: Receiver
    secret: str
    owner_key: str
    second_reviewer: str
    pseudonym: str
    case_ref: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[World]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("alerts") / "data",
                                    catalog_url=module_catalog_url) as api, \
            LoopbackReceiver() as receiver:
        assert api.as_("admin").post("/v1/banks", json={"name": "families", "kind": "missing_person"}
                                     ).status_code == 201
        pseudonym = enroll(api, "mp-1", face())
        owner_key = api.key("investigator", OWNER)
        case = api.service.alerts.cases.create("Family liaison 77", OWNER)
        api.service.alerts.cases.add_subjects(case.ref, [pseudonym])
        _id, secret = api.service.alerts.subscribe(OWNER, receiver.url)
        yield World(api, receiver, secret, owner_key, api.key("reviewer", "second-reviewer"),
                    pseudonym, case.ref)


def deliver(api: LiveApi) -> None:
    Deliverer(api.service, backoff_base_s=0).run_once()


def test_a_confirmed_match_sends_one_signed_alert_and_the_owner_closes_it(world: World) -> None:
    api, receiver = world.api, world.receiver
    query = jpeg_bytes(ImageEnhance.Brightness(face(220)).enhance(1.1), 83)
    cid = match(api, query)
    confirm_twice(api, world.second_reviewer, cid)
    [alert] = [a for a in api.service.alerts.all_views() if a.candidate_id == cid]
    assert alert.case_ref == world.case_ref and alert.delivery == "pending"

    deliver(api)
    deliver(api)  # a second pass sends nothing more
    [got] = [r for r in receiver.accepted if r.payload["alert_id"] == alert.id]
    assert got.signed_by(world.secret)
    assert not got.signed_by("whsec_another")
    assert got.headers["idempotency-key"] == alert.event_id == got.payload["event_id"]
    assert got.payload["pseudonym"] == world.pseudonym and got.payload["case"] == world.case_ref
    for secret_text in (NAME, CASE_REF_TEXT, "mp-1"):  # no name, case reference or label travels
        assert secret_text.encode() not in got.body
    assert api.service.alerts.get(alert.id).delivery == "delivered"

    # The receiver fetches details with its own key; another investigator sees nothing of it.
    with api.client(world.owner_key) as owner:
        assert owner.get(f"/v1/alerts/{alert.id}").json()["delivery"] == "delivered"
        assert api.as_("investigator").get(f"/v1/alerts/{alert.id}").status_code == 404
        assert api.as_("investigator").post(f"/v1/alerts/{alert.id}/ack").status_code == 404
        r = owner.post(f"/v1/alerts/{alert.id}/ack")
        assert r.status_code == 200 and r.json()["acked_by"] == OWNER, r.text
        assert owner.post(f"/v1/alerts/{alert.id}/ack").json()["error"] == "already_acknowledged"
        assert owner.post(f"/v1/alerts/{alert.id}/outcome", json={"outcome": "rescued"}).status_code == 422
        r = owner.post(f"/v1/alerts/{alert.id}/outcome", json={"outcome": "action_taken"})
        assert r.status_code == 200 and r.json()["outcome"] == "action_taken", r.text
        assert all(r.json()["timeline"][k] for k in ("candidate", "confirmed", "delivered",
                                                     "acknowledged", "outcome"))
        case = owner.get(f"/v1/cases/{world.case_ref}").json()
        assert [m["alert"]["id"] for m in case["matches"]] == [alert.id]
        assert [e["step"] for e in case["timeline"]] == ["candidate", "confirmed", "delivered",
                                                         "acknowledged", "outcome"]
        assert api.as_("investigator").get(f"/v1/cases/{world.case_ref}").status_code == 404
    events = api.service.audit.events(limit=100_000)
    steps = {(e.action, e.result) for e in events if e.object == f"alert:{alert.id}" and e.actor == OWNER}
    assert {("alert.ack", "ok"), ("alert.outcome", "ok")} <= steps
    assert any(e.action == "alert.deliver" and e.result == "ok" and e.object == f"alert:{alert.id}"
               for e in events)

    # Response times from the catalog, also as Prometheus histograms (one confirmed match so far).
    metrics = api.as_("admin").get("/metrics").text
    for stage in ("decision", "delivered", "acknowledged", "outcome"):
        assert f'reunite_alert_response_seconds_count{{bank="families",stage="{stage}"}} 1.0' in metrics
    # A photo submitted by hand was never sighted in a crawl: no "to candidate" time is made up.
    assert 'reunite_alert_response_seconds_count{bank="families",stage="candidate"} 0.0' in metrics

    # The evidence report: both photos' hashes, the reviews, the audit chain and its check.
    report = api.as_("admin").get(f"/v1/alerts/{alert.id}/evidence").json()
    assert report["query_photo"]["sha256"] == hashlib.sha256(query).hexdigest()
    assert report["query_photo"]["hashes"]["pdq"] and report["reference_photo"]["hashes"]["pdq"]
    assert len(report["reference_photo"]["sha256"]) == 64
    assert [r["reviewer"] for r in report["reviews"]] == ["test-reviewer", "second-reviewer"]
    assert report["audit"]["verification"]["ok"] is True
    assert {"review.decide", "alert.ack", "alert.outcome"} <= {e["action"] for e in report["audit"]["events"]}
    assert NAME not in json.dumps(report)
    with api.client(world.owner_key) as owner:
        mine = owner.get(f"/v1/alerts/{alert.id}/evidence").json()
        assert [r["reviewer"] for r in mine["reviews"]] == [None, None]  # investigators: no names
        page = owner.get(f"/v1/alerts/{alert.id}/evidence", params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html")
    assert "Audit chain verified" in page.text and report["query_photo"]["sha256"] in page.text


def test_a_failing_receiver_is_visible_and_retried_until_it_answers(world: World) -> None:
    api, receiver = world.api, world.receiver
    cid = match(api, jpeg_bytes(face(210), 71))
    confirm_twice(api, world.second_reviewer, cid)
    [alert] = [a for a in api.service.alerts.all_views() if a.candidate_id == cid]
    receiver.status = 503
    try:
        deliver(api)
    finally:
        receiver.status = 200
    failing = api.as_("reviewer").get("/v1/alerts", params={"failing": "true"}).json()["alerts"]
    [shown] = [a for a in failing if a["id"] == alert.id]
    assert shown["delivery"] == "failing" and shown["deliveries"][0]["last_status"] == 503
    deliver(api)
    sent = [r for r in receiver.requests if r.payload["alert_id"] == alert.id]
    assert [r.status for r in sent] == [503, 200]
    assert sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"] == alert.event_id
    assert api.service.alerts.get(alert.id).delivery == "delivered"
    assert alert.id not in [a["id"] for a in api.as_("reviewer").get(
        "/v1/alerts", params={"failing": "true"}).json()["alerts"]]


def test_webhook_urls_are_http_only_and_a_caseless_confirmation_is_shown_undeliverable(world: World
                                                                                       ) -> None:
    api = world.api
    for bad in ("file:///etc/passwd", "ftp://example.org/x", "http://user:pw@example.org/", "hook"):
        with pytest.raises(outbox.AlertError):
            api.service.alerts.subscribe(OWNER, bad)
    other = enroll(api, "mp-2", photo("coffee.png").resize((200, 150)))
    assert other  # in no case: its confirmation has nobody to tell, and says so
    cid = match(api, jpeg_bytes(photo("coffee.png").resize((200, 150)), 95))
    confirm_twice(api, world.second_reviewer, cid)
    [alert] = [a for a in api.service.alerts.all_views() if a.candidate_id == cid]
    assert alert.delivery == "no_owner" and alert.failing


def test_percentiles_are_values_that_occurred() -> None:
    from matcher.review.stats import percentile

    assert percentile([], 90) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([float(v) for v in range(1, 11)], 90) == 9.0
    assert percentile([float(v) for v in range(1, 11)], 50) == 5.0


def test_the_admin_commands(world: World) -> None:
    from conftest import run_reunite

    data = world.api.data_dir
    done = run_reunite("alerts", "subscribe", "--owner", OWNER, "--url", "file:///etc/passwd", data=data)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = run_reunite("alerts", "subscribe", "--owner", "team:night-desk", "--url", "https://hooks.example/x",
                       data=data, check=True)
    assert done.stdout.strip().splitlines()[-1].startswith("whsec_")
    assert run_reunite("cases", "team", "night-desk", OWNER, data=data, check=True).returncode == 0
    lines = run_reunite("cases", "list", data=data, check=True).stdout.splitlines()
    listed = [json.loads(line) for line in lines]
    assert [c["ref"] for c in listed] == [world.case_ref] and listed[0]["subjects"] == [world.pseudonym]
    done = run_reunite("alerts", "deliver", data=data)
    assert done.returncode == 0 and json.loads(done.stdout)["failed"] == 0, done.stdout + done.stderr
    [first, *_] = world.api.service.alerts.all_views()
    page = run_reunite("alerts", "evidence", str(first.id), "--html", data=data, check=True).stdout
    assert "Audit chain verified" in page and first.query_sha256 in page
    assert run_reunite("alerts", "evidence", "999999", data=data).returncode == 2
    bad = run_reunite("cases", "add", world.case_ref, "S-0000000000000000", data=data)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    moved = run_reunite("cases", "owner", world.case_ref, "team:night-desk", data=data, check=True)
    assert json.loads(moved.stdout)["owner"] == "team:night-desk"
    run_reunite("cases", "owner", world.case_ref, OWNER, data=data, check=True)  # back, for later tests
    actions = {e.action for e in world.api.service.audit.events(limit=100_000) if e.actor.startswith("cli:")}
    assert {"webhook.subscribe", "team.add", "alert.evidence", "case.add", "case.owner"} <= actions


def test_a_match_of_an_indexed_ad_is_timed_from_its_sighting_and_shows_its_network(world: World) -> None:
    api = world.api
    assert api.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads"}).status_code == 201
    picture = ImageEnhance.Contrast(face(230)).enhance(1.1)
    sighted, repost = jpeg_bytes(picture, 88), jpeg_bytes(picture, 70)
    for label, data in (("ad-100", sighted), ("ad-101", repost)):
        r = api.as_("ingest").post("/v1/banks/ads/items", data={"label": label},
                                   files={"image": ("ad.jpg", data, "image/jpeg")})
        assert r.status_code == 201, r.text
    cid = match(api, sighted)
    confirm_twice(api, world.second_reviewer, cid)
    [alert] = [a for a in api.service.alerts.all_views() if a.candidate_id == cid]
    assert alert.first_seen_at is not None and alert.first_seen_at <= alert.candidate_at
    with api.client(world.owner_key) as owner:
        case = owner.get(f"/v1/cases/{world.case_ref}").json()
    [found] = [m for m in case["matches"] if m["alert"]["id"] == alert.id]
    assert found["network"]["ads"] == ["ad-100", "ad-101"] and found["alert"]["timeline"]["first_seen"]
    report = api.as_("admin").get(f"/v1/alerts/{alert.id}/evidence").json()
    assert report["query_photo"]["ad"] == "ad-100" and report["query_photo"]["source"] == "indexed ad"


def test_withdrawn_consent_takes_the_alerts_with_it(world: World) -> None:  # last: it purges the subject
    api = world.api
    assert [a for a in api.service.alerts.all_views() if a.pseudonym == world.pseudonym]
    assert api.as_("admin").delete(f"/v1/subjects/{world.pseudonym}").status_code in (200, 204)
    assert not [a for a in api.service.alerts.all_views() if a.pseudonym == world.pseudonym]
    with api.service.store.catalog.session() as s:
        from sqlalchemy import func, select

        left = s.scalar(select(func.count(outbox.AlertDelivery.id)).join(
            outbox.Alert, outbox.Alert.id == outbox.AlertDelivery.alert_id, isouter=True)
            .where(outbox.Alert.id.is_(None)))
    assert left == 0
    assert api.service.alerts.cases.get(world.case_ref).subjects == []
