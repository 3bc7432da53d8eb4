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
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with no_encryption_key(), live_api(tmp_path_factory.mktemp("api-queue") / "data",
                                       catalog_url=module_catalog_url) as running:
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


def test_web_search_spends_the_keys_request_budget(tmp_path) -> None:  # noqa: ANN001
    """A search from the browser costs what POST /v1/match costs: the key's budget, then 429."""
    import re

    from api_support import web_session
    from conftest import jpeg_bytes, tiles

    from api.budgets import BudgetConfig
    from api.service import ServiceConfig

    with no_encryption_key():
        config = ServiceConfig.from_env(tmp_path / "data")
        config.budgets = BudgetConfig(**{**config.budgets.__dict__,
                                         "roles": {**config.budgets.roles, "investigator": "3/minute"}})
        with live_api(tmp_path / "data", config=config) as api:
            assert api.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads"}).status_code == 201
            browser = web_session(api, api.keys["investigator"])  # the sign-in does not spend it
            form = browser.get("/review/search")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            image = jpeg_bytes(tiles(1, seed=3)[0])
            answers = [browser.post("/review/search", data={"csrf": csrf, "banks": "ads"},
                                    files={"image": ("q.jpg", image, "image/jpeg")}) for _ in range(4)]
            assert [a.status_code for a in answers[:2]] == [200, 200]
            assert answers[-1].status_code == 429 and int(answers[-1].headers["retry-after"]) > 0
            assert "Too many searches with this key" in answers[-1].text
            refused = [e for e in api.service.audit.events(limit=1000)
                       if e.action == "match" and e.detail.get("error") == "rate_limited"]
            assert refused and refused[-1].detail["via"] == "web"
