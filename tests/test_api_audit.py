"""The audit trail: what is recorded, and that editing or deleting any event is detected.

Also the key commands, since keys are what the audit log names: `reunite keys
create` prints the key alone on its last line, and `reunite keys revoke` takes
effect on the next request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import LiveApi, encryption_key, live_api, reunite
from conftest import jpeg_bytes, photo

from api.audit import HEAD_FILE, event_hash
from api.auth import create_key
from indexer.store.photos import QUERY_NAMESPACE


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("audit") / "data",
                                    catalog_url=module_catalog_url) as running:
        admin = running.as_("admin")
        admin.post("/v1/banks", json={"name": "ads", "kind": "ads", "policy": {"signals": ["hashes"]}})
        for _ in range(3):
            admin.get("/v1/banks/ads")
        running.as_("partner").get("/v1/banks")  # denied, and recorded
        yield running


def _sql(api: LiveApi, statement: str, *args: object) -> list[tuple]:
    return api.sql(statement, *args)


def test_events_name_who_did_what_to_which_object(api: LiveApi) -> None:
    events = api.as_("admin").get("/v1/audit/events", params={"limit": 1000}).json()["events"]
    first = events[0]
    assert (first["actor"], first["role"], first["action"], first["object"], first["result"]) == \
        ("test-admin", "admin", "bank.create", "bank:ads", "ok")
    assert first["at"] and first["detail"]["status"] == 201
    assert any(e["action"] == "bank.list" and e["result"] == "denied" and e["role"] == "partner"
               for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_intact_log_verifies(api: LiveApi) -> None:
    done = reunite("audit", "verify", data=api.data_dir)
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout
    assert api.as_("admin").get("/v1/audit/verify").json()["ok"] is True


def test_an_edited_event_is_detected(api: LiveApi) -> None:
    [(actor,)] = _sql(api, "SELECT actor FROM audit_events WHERE seq = 2")
    _sql(api, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2")
    try:
        problems = api.as_("admin").get("/v1/audit/verify").json()["problems"]
        assert problems == ["event 2 was edited (its hash does not match)"]
    finally:
        _sql(api, "UPDATE audit_events SET actor = ? WHERE seq = 2", actor)
    assert api.service.audit.verify().ok


def test_rehashing_an_edited_event_breaks_the_chain(api: LiveApi) -> None:
    row = _sql(api, "SELECT seq, at, actor, role, action, object, result, detail, prev_hash, hash "
                    "FROM audit_events WHERE seq = 3")[0]
    detail = row[7] if isinstance(row[7], dict) else json.loads(row[7])  # PostgreSQL's driver decodes JSON
    forged = event_hash(row[8], row[0], row[1], "forger", row[3], row[4], row[5], row[6], detail)
    _sql(api, "UPDATE audit_events SET actor = 'forger', hash = ? WHERE seq = 3", forged)
    try:
        problems = api.service.audit.verify().problems
        assert any("event 4 does not link" in p for p in problems), problems
    finally:
        _sql(api, "UPDATE audit_events SET actor = ?, hash = ? WHERE seq = 3", row[2], row[9])
    assert api.service.audit.verify().ok


def test_deleted_events_are_detected(api: LiveApi) -> None:
    columns = "seq, at, actor, role, action, object, result, detail, prev_hash, hash"
    middle = _sql(api, f"SELECT {columns} FROM audit_events WHERE seq = 2")[0]
    _sql(api, "DELETE FROM audit_events WHERE seq = 2")
    try:
        problems = api.service.audit.verify().problems
        assert any("missing (deleted)" in p for p in problems), problems
    finally:
        _sql(api, f"INSERT INTO audit_events ({columns}) VALUES (?,?,?,?,?,?,?,?,?,?)", *middle)
    assert api.service.audit.verify().ok
    # The newest events: the chain alone would still look whole, the saved head is not fooled.
    last = max(seq for (seq,) in _sql(api, "SELECT seq FROM audit_events"))
    _sql(api, "DELETE FROM audit_events WHERE seq >= ?", last - 1)
    done = reunite("audit", "verify", data=api.data_dir)
    assert done.returncode == 1 and "newest events were deleted" in done.stderr
    assert (api.data_dir / HEAD_FILE).exists()


def test_keys_are_created_and_revoked_on_the_command_line(api: LiveApi) -> None:
    done = reunite("keys", "create", "--role", "reviewer", "--name", "cli-reviewer", data=api.data_dir)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("rk_") and " " not in key
    with api.client(key) as c:
        assert c.get("/v1/whoami").json() == {"name": "cli-reviewer", "role": "reviewer"}
        assert not api.holds(key.encode())
        assert reunite("keys", "revoke", "cli-reviewer", data=api.data_dir).returncode == 0
        assert c.get("/v1/whoami").status_code == 401
    with pytest.raises(ValueError, match="unknown role"):
        create_key(api.service.store.catalog, "superuser", "x")


def test_a_request_that_fails_with_500_after_a_match_ran_is_still_audited(tmp_path: Path) -> None:
    """The match ran (and found the ad); storing the query photo for the reviewer then fails.

    The photo store's query folder is made unusable for real (a file where the folder goes),
    so the request ends in an unhandled error, answered 500 by the error handler.
    """
    image = jpeg_bytes(photo("coffee.png"))
    with live_api(tmp_path / "data") as running:
        admin = running.as_("admin")
        admin.post("/v1/banks", json={"name": "ads", "kind": "ads", "policy": {"signals": ["hashes"]}})
        r = admin.post("/v1/banks/ads/items", files={"image": ("ad.jpg", image, "image/jpeg")})
        assert r.status_code == 201, r.text
        (running.data_dir / "photos").mkdir(exist_ok=True)
        (running.data_dir / "photos" / QUERY_NAMESPACE).write_bytes(b"not a folder")
        r = running.as_("investigator").post("/v1/match", data={"banks": "ads"},
                                             files={"image": ("q.jpg", image, "image/jpeg")})
        assert r.status_code == 500 and r.json()["error"] == "internal"
        matches = [e for e in running.service.audit.events(limit=1000) if e.action == "match"]
        assert matches, "the failed match left no audit event"
        event = matches[-1]
        assert (event.actor, event.result, event.detail["status"]) == ("test-investigator", "error", 500)
        assert event.object == f"query:{hashlib.sha256(image).hexdigest()}"
        assert running.service.audit.verify().ok
