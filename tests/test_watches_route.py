"""``GET/PUT /v1/banks/{bank}/watches``: a watcher's watched ads banks over HTTP (issue 16).

A real uvicorn on loopback. The route goes through api.watching.set_watches,
the path `reunite watches` takes: the same checks, one ``bank.watches`` audit
event per change naming the caller's key, and the watch pass that follows
sees the change.
"""

from __future__ import annotations

from pathlib import Path

from api_support import live_api

from api.audit import AuditEvent
from indexer.store.store import Store
from matcher.search.watch import watchers_of
from tests.conftest import run_reunite


def test_an_admin_reads_and_narrows_a_watch_and_bad_requests_are_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with live_api(data) as api:
        admin = api.as_("admin")
        for name, kind in (("hotels", "venue"), ("ads-1", "ads"), ("ads-2", "ads")):
            assert admin.post("/v1/banks", json={"name": name, "kind": kind}).status_code == 201
        got = admin.get("/v1/banks/hotels/watches")
        assert got.status_code == 200, got.text
        assert got.json() == {"bank": "hotels", "kind": "venue", "watches": None,
                              "watching": ["ads-1", "ads-2"], "watched_by": []}
        assert admin.get("/v1/banks/ads-2/watches").json()["watched_by"] == ["hotels"]

        narrowed = admin.put("/v1/banks/hotels/watches", json={"watches": ["ads-1", "ads-1", "later"]})
        assert narrowed.status_code == 200, narrowed.text
        assert narrowed.json()["watches"] == ["ads-1", "later"]  # a name that is no bank yet is kept
        assert narrowed.json()["watching"] == ["ads-1"]
        assert admin.get("/v1/banks/ads-2/watches").json()["watched_by"] == []
        catalog = api.service.store.catalog
        assert [b.name for b in watchers_of(catalog, catalog.bank("ads-2"))] == []
        # Unchanged keys of the policy stay as they were.
        assert admin.get("/v1/banks/hotels").json()["policy"] == {"watches": ["ads-1", "later"]}

        none = admin.put("/v1/banks/hotels/watches", json={"watches": []})
        assert none.status_code == 200 and none.json()["watching"] == []

        for url, body, status, code in [
                ("/v1/banks/nowhere/watches", {"watches": None}, 404, "bank_not_found"),
                ("/v1/banks/ads-1/watches", {"watches": ["ads-2"]}, 422, "bad_policy"),
                ("/v1/banks/hotels/watches", {"watches": ["x"], "extra": 1}, 422, "validation_error"),
                ("/v1/banks/hotels/watches", {"watches": ["bad name!"]}, 422, "validation_error"),
                ("/v1/banks/hotels/watches", {}, 422, "validation_error")]:
            refused = admin.put(url, json=body)
            assert refused.status_code == status, (url, body, refused.text)
            assert refused.json()["error"] == code and refused.json()["detail"], refused.text
        assert admin.get("/v1/banks/nowhere/watches").json()["error"] == "bank_not_found"
        assert api.as_("investigator").put("/v1/banks/hotels/watches",
                                           json={"watches": None}).status_code == 403

        back = admin.put("/v1/banks/hotels/watches", json={"watches": None})
        assert back.status_code == 200 and back.json()["watching"] == ["ads-1", "ads-2"]
        assert admin.get("/v1/banks/hotels").json()["policy"] == {}

    # The CLI reads what HTTP set, through the same policy key.
    cli = run_reunite("watches", "hotels", "--ads", "ads-2", data=data)
    assert cli.returncode == 0 and "hotels watches ads-2 (now: ads-2)" in cli.stdout, cli.stderr
    with Store(data).catalog.session() as s:
        rows = s.query(AuditEvent).filter(AuditEvent.action == "bank.watches").order_by(AuditEvent.seq)
        events = [(e.actor, e.object, e.result, e.detail.get("via"), e.detail.get("error")) for e in rows]
    key = "test-admin"
    assert events == [
        (key, "bank:hotels", "ok", "http", None),
        (key, "bank:hotels", "ok", "http", None),
        (key, "bank:nowhere", "rejected", "http", "unknown_bank"),
        (key, "bank:ads-1", "rejected", "http", "bad_policy"),
        (key, "bank:hotels", "ok", "http", None),
        (events[-1][0], "bank:hotels", "ok", "cli", None)]
    assert events[-1][0].startswith("cli:")
