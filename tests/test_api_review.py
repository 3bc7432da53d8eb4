"""The review workflow over HTTP: queue, filters, pagination, decisions, the two-person rule."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_support import LiveApi, encryption_key, live_api, queued_candidates

HASHES_ONLY = {"signals": ["hashes"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("review") / "data",
                                    catalog_url=module_catalog_url) as running:
        admin = running.as_("admin")
        for name, policy in (("ads-single", HASHES_ONLY),
                             ("ads-double", {**HASHES_ONLY, "second_review": True})):
            r = admin.post("/v1/banks", json={"name": name, "kind": "ads", "policy": policy})
            assert r.status_code == 201, r.text
        yield running


def _decide(api: LiveApi, client_role: str, cid: int, action: str, note: str = "") -> tuple[int, dict]:
    r = api.as_(client_role).post(f"/v1/review/candidates/{cid}/decision",
                                  json={"action": action, "note": note})
    return r.status_code, r.json()


def test_queue_lists_filters_and_pages(api: LiveApi) -> None:
    ids = queued_candidates(api, "ads-single", 3, seed=11)
    reviewer = api.as_("reviewer")
    page = reviewer.get("/v1/review/candidates", params={"bank": "ads-single", "limit": 2}).json()
    assert page["total"] == 3 and [c["id"] for c in page["candidates"]] == ids[:2]
    rest = reviewer.get("/v1/review/candidates", params={"bank": "ads-single", "offset": 2}).json()
    assert [c["id"] for c in rest["candidates"]] == ids[2:]
    assert reviewer.get("/v1/review/candidates", params={"bank": "ads-single", "tier": "review"}
                        ).json()["total"] == 0
    # Matching the same image again does not queue it twice.
    again = _queued_again(api, ids[0])
    assert again == ids[0]
    one = reviewer.get(f"/v1/review/candidates/{ids[0]}").json()
    assert one["state"] == "pending" and one["evidence"] and one["has_query_image"]
    img = reviewer.get(f"/v1/review/candidates/{ids[0]}/query-image")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert api.as_("reviewer").get("/v1/review/candidates", params={"bank": "nope"}).status_code == 404
    assert api.as_("reviewer").get("/v1/review/candidates/999999").status_code == 404


def _queued_again(api: LiveApi, cid: int) -> int:
    row = api.as_("reviewer").get(f"/v1/review/candidates/{cid}").json()
    data = api.as_("reviewer").get(f"/v1/review/candidates/{cid}/query-image").content
    r = api.as_("investigator").post("/v1/match", data={"banks": row["bank"]},
                                     files={"image": ("q.jpg", data, "image/jpeg")})
    return r.json()["candidates"][0]["candidate_id"]


def test_single_reviewer_decisions_are_final_and_recorded(api: LiveApi) -> None:
    a, b, c = queued_candidates(api, "ads-single", 3, seed=12)
    status, body = _decide(api, "reviewer", a, "confirm", "same bedspread and lamp as ad 4471")
    assert status == 200 and body["state"] == "confirmed"
    assert body["decisions"][0]["reviewer"] == "test-reviewer" and body["decisions"][0]["at"]
    assert body["decisions"][0]["note"] == "same bedspread and lamp as ad 4471"
    status, body = _decide(api, "admin", a, "reject")
    assert status == 409 and body["error"] == "already_decided"
    assert _decide(api, "reviewer", b, "reject")[1]["state"] == "rejected"
    assert _decide(api, "reviewer", c, "escalate")[1]["state"] == "escalated"
    assert _decide(api, "reviewer", c, "escalate")[1]["error"] == "already_escalated"
    assert _decide(api, "admin", c, "confirm")[1]["state"] == "confirmed"
    assert _decide(api, "reviewer", 999999, "confirm")[0] == 404
    assert _decide(api, "investigator", a, "confirm")[0] == 403
    # Investigators see the outcome, not who decided nor the note.
    seen = api.as_("investigator").get(f"/v1/review/candidates/{a}").json()
    assert seen["state"] == "confirmed" and seen["decisions"][0]["note"] is None
    assert seen["decisions"][0]["reviewer"] is None
    states = api.as_("reviewer").get("/v1/review/candidates",
                                     params={"bank": "ads-single", "state": "confirmed"}).json()
    assert {x["id"] for x in states["candidates"]} >= {a, c}
    # Notes are case notes: sealed at rest.
    assert not api.holds(b"bedspread")
    decisions = [e for e in api.service.audit.events(limit=100_000) if e.action == "review.decide"]
    assert decisions and all("bedspread" not in str(e.detail) for e in decisions)


def test_second_reviewer_is_required_where_configured(api: LiveApi) -> None:
    a, b = queued_candidates(api, "ads-double", 2, seed=13)
    second = api.client(api.key("reviewer", "second-reviewer"))
    status, body = _decide(api, "reviewer", a, "confirm")
    assert body["state"] == "awaiting_second" and body["required_reviews"] == 2
    status, body = _decide(api, "reviewer", a, "confirm")
    assert status == 409 and body["error"] == "second_reviewer_required"
    r = second.post(f"/v1/review/candidates/{a}/decision", json={"action": "confirm"})
    assert r.json()["state"] == "confirmed" and len(r.json()["decisions"]) == 2
    # Disagreement goes to escalation, not to a silent reject.
    assert _decide(api, "reviewer", b, "confirm")[1]["state"] == "awaiting_second"
    r = second.post(f"/v1/review/candidates/{b}/decision",
                    json={"action": "reject", "note": "different room"})
    assert r.json()["state"] == "escalated"
    second.close()
