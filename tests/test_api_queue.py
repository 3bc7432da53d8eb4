"""The queue's bulk reject, undo / reopen and export over HTTP: the same application rules, 4xx JSON.

A real service on loopback (tests/api_support.py); candidates come from real
ingests and matches. The rules themselves are tested in
tests/test_queue_workbench.py; here, that HTTP reaches them and answers bad
requests with a JSON body naming the problem.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from api_support import LiveApi, live_api, no_encryption_key, queued_candidates


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with no_encryption_key(), live_api(tmp_path_factory.mktemp("api-queue") / "data") as running:
        assert running.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads"}).status_code == 201
        yield running


def test_bulk_reject_reopen_and_export_over_http(api: LiveApi) -> None:
    a, b, c = queued_candidates(api, "ads", 3, seed=41)
    reviewer = api.as_("reviewer")
    r = reviewer.post("/v1/review/candidates/bulk/reject", json={"candidate_ids": [a, b, 999999],
                                                                 "note": "one studio"})
    assert r.status_code == 200, r.text
    assert r.json() == {"rejected": 2, "results": [
        {"candidate_id": a, "state": "rejected", "error": None},
        {"candidate_id": b, "state": "rejected", "error": None},
        {"candidate_id": 999999, "state": None, "error": "candidate_not_found"}]}
    bad = reviewer.post("/v1/review/candidates/bulk/reject", json={"candidate_ids": [], "extra": 1})
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
    assert "candidate_ids" in bad.json()["detail"] and "extra" in bad.json()["detail"]

    # Undo: the reviewer's own decision; another reviewer is refused with 403 JSON.
    other = api.client(api.key("reviewer", "http-second"))
    refused = other.post(f"/v1/review/candidates/{a}/reopen", json={"reason": "not mine"})
    assert refused.status_code == 403 and refused.json()["error"] == "not_your_decision"
    assert reviewer.post(f"/v1/review/candidates/{a}/reopen", json={"reason": ""}).status_code == 422
    undone = reviewer.post(f"/v1/review/candidates/{a}/reopen", json={"reason": "wrong tick"})
    assert undone.status_code == 200 and undone.json()["state"] == "pending"
    again = reviewer.post(f"/v1/review/candidates/{a}/reopen", json={"reason": "again"})
    assert again.status_code == 409 and again.json()["error"] == "nothing_to_undo"
    reopened = api.as_("admin").post(f"/v1/review/candidates/{b}/reopen", json={"reason": "second look"})
    assert reopened.status_code == 200 and reopened.json()["state"] == "pending"
    assert [d["action"] for d in reopened.json()["decisions"]] == ["reject", "reopen"]
    missing = api.as_("admin").post("/v1/review/candidates/999999/reopen", json={"reason": "x"})
    assert missing.status_code == 404 and missing.json()["error"] == "candidate_not_found"

    # Export: the confirmed match only, as CSV and JSON; a bad format or bank answers 4xx JSON.
    assert reviewer.post(f"/v1/review/candidates/{c}/decision", json={"action": "confirm"}).status_code == 200
    got = reviewer.get("/v1/review/candidates/export", params={"format": "csv"})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert [int(row["candidate_id"]) for row in csv.DictReader(io.StringIO(got.text))] == [c]
    js = reviewer.get("/v1/review/candidates/export", params={"format": "json", "bank": "ads"})
    assert [m["candidate_id"] for m in js.json()["matches"]] == [c]
    wrong = reviewer.get("/v1/review/candidates/export", params={"format": "xlsx"})
    assert wrong.status_code == 422 and "format" in wrong.json()["detail"]
    nobank = reviewer.get("/v1/review/candidates/export", params={"bank": "nope"})
    assert nobank.status_code == 404 and nobank.json()["error"] == "bank_not_found"
    assert api.as_("investigator").get("/v1/review/candidates/export").status_code == 403
    events = [(e.action, e.result, e.detail.get("via")) for e in api.service.audit.events(limit=10_000)
              if e.action in ("review.export", "review.reopen")]
    assert ("review.export", "ok", "api") in events and ("review.reopen", "rejected", "api") in events
    assert sum(1 for e in api.service.audit.events(limit=10_000)
               if e.action == "review.decide" and e.detail.get("bulk")) == 3
