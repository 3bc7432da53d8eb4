"""A hash lookup queues its hits and appends its audit event in one transaction.

``api.hash_matching.lookup`` with a :class:`api.audit.PlannedEvent` (what
``POST /v1/match/hashes`` passes) writes the candidates and the event through
:meth:`api.audit.AuditLog.append_after`: one commit, so a hit is never queued
without its event nor an event kept for a write that was rolled back; a lost
race is run again whole. Its statements are prepared DB-API statements
(:mod:`indexer.store.prepared`), so the rows they write are read back here
through the ORM, on SQLite and PostgreSQL. Over HTTP, the route's event is the
only one the request leaves (the middleware does not append it a second time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from api_support import LiveApi, live_api
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from api import hash_matching
from api.audit import AuditEvent, AuditLog, PlannedEvent
from api.auth import Principal
from api.service import Service, ServiceConfig
from indexer import pipeline
from indexer.signals.base import SignalVector
from indexer.store.store import NewImage
from matcher.review.queue import CandidateRequester, StoredCandidate
from matcher.search.hashes import parse_hashes

PARTNER = Principal(key_id=0, name="partner-test", role="partner")


def _service(folder: Path, catalog_url: str | None) -> tuple[Service, np.ndarray]:
    svc = Service(ServiceConfig.from_env(folder, catalog_url=catalog_url))
    bank = svc.store.catalog.ensure_bank("list", "hashes", {"signals": ["hashes"], "partner_lookup": True})
    codes = np.random.default_rng(5).integers(0, 256, (6, 32), dtype=np.uint8)
    svc.store.add_images(bank, [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1,
                                                             [SignalVector("pdq", codes[n], quality=1.0)]),
                                         f"ref-{n}") for n in range(len(codes))])
    return svc, codes


def _lookup(svc: Service, code: np.ndarray, principal: Principal = PARTNER) -> hash_matching.HashLookup:
    hashes = {"pdq": code.tobytes().hex()}
    qid = hash_matching.query_id(hashes)
    planned = PlannedEvent(principal.name, principal.role, "match.hashes", f"hashes:{qid}", "ok",
                           {"status": 200})
    with svc.store.catalog.unit():
        banks = hash_matching.choose_banks(svc, [], partner=principal.role == "partner")
        return hash_matching.lookup(svc, principal, parse_hashes(hashes), banks, 10, qid, planned)


def _counts(svc: Service) -> tuple[int, int]:
    with svc.store.catalog.session() as s:
        return (int(s.scalar(select(func.count(StoredCandidate.id)))),
                int(s.scalar(select(func.count(AuditEvent.seq)).where(AuditEvent.action == "match.hashes"))))


def test_the_hits_and_their_event_are_one_commit(tmp_path: Path, catalog_url: str | None) -> None:
    svc, codes = _service(tmp_path / "data", catalog_url)
    commits: list[object] = []
    event.listen(svc.store.catalog.engine, "commit", lambda conn: commits.append(conn))
    found = _lookup(svc, codes[2])
    assert [c.label for c in found.candidates] == ["ref-2"] and len(found.queued) == 1
    assert len(commits) == 1  # the candidate and the event together (they were two commits)
    # The rows the prepared statements wrote, as the ORM reads them.
    with svc.store.catalog.session() as s:
        [stored] = s.scalars(select(StoredCandidate))
        [ev] = s.scalars(select(AuditEvent).where(AuditEvent.action == "match.hashes"))
    assert (stored.id, stored.state, stored.tier, stored.minor_policy, stored.context) == (
        found.queued[0], "pending", "match", False, None)
    assert stored.evidence == found.candidates[0].evidence and stored.created_by == PARTNER.name
    assert isinstance(stored.created_at, dt.datetime) and stored.created_at == stored.updated_at
    assert ev.detail == {"status": 200, "candidates": 1, "queued": 1}
    assert (ev.actor, ev.role, ev.result, ev.object) == (PARTNER.name, "partner", "ok",
                                                          f"hashes:{found.query_id}")
    assert svc.audit.verify().ok
    # The same query by another partner: the same candidate, one requester row more, one commit.
    other = Principal(key_id=1, name="partner-two", role="partner")
    commits.clear()
    again = _lookup(svc, codes[2], other)
    assert again.queued == found.queued and len(commits) == 1
    with svc.store.catalog.session() as s:
        assert list(s.scalars(select(CandidateRequester.requester))) == ["partner-two"]
    assert _counts(svc) == (1, 2)
    # A lookup that queues nothing appends its event alone.
    nothing = _lookup(svc, 255 - codes[0])
    assert nothing.candidates == [] and _counts(svc) == (1, 3)
    assert svc.audit.verify().ok


def test_a_failed_event_takes_the_queue_write_with_it(tmp_path: Path, catalog_url: str | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    svc, codes = _service(tmp_path / "data", catalog_url)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the audit store refused the event")

    monkeypatch.setattr(AuditLog, "_append_on", broken)
    with pytest.raises(RuntimeError):
        _lookup(svc, codes[3])
    monkeypatch.undo()
    assert _counts(svc) == (0, 0)  # no candidate without its event
    assert [c.label for c in _lookup(svc, codes[3]).candidates] == ["ref-3"]
    assert _counts(svc) == (1, 1) and svc.audit.verify().ok


def test_a_lost_race_runs_the_whole_transaction_again(tmp_path: Path, catalog_url: str | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer took the event's sequence number (or a queue row) first: the candidate
    written before it is rolled back with it, and the second run writes both once."""
    svc, codes = _service(tmp_path / "data", catalog_url)
    real = AuditLog._append_on
    calls = []

    def loses_once(self: AuditLog, conn: object, *args: object) -> AuditEvent:
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO audit_events", {}, Exception("seq taken"))
        return real(self, conn, *args)

    monkeypatch.setattr(AuditLog, "_append_on", loses_once)
    found = _lookup(svc, codes[4])
    assert len(calls) == 2 and len(found.queued) == 1
    assert _counts(svc) == (1, 1) and svc.audit.verify().ok


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with live_api(tmp_path_factory.mktemp("one-commit") / "data", catalog_url=module_catalog_url) as running:
        assert running.as_("admin").post("/v1/banks", json={
            "name": "list", "kind": "hashes", "policy": {"signals": ["hashes"], "partner_lookup": True}}
        ).status_code == 201
        yield running


def test_a_lookup_over_http_leaves_one_event(api: LiveApi) -> None:
    code = np.random.default_rng(9).integers(0, 256, 32, dtype=np.uint8)
    hex_code = code.tobytes().hex()
    partner = api.as_("partner")
    for answer in (partner.post("/v1/match/hashes", json={"hashes": {"pdq": hex_code}}),
                   partner.post("/v1/match/hashes", json={"hashes": {"pdq": "zz"}})):
        assert answer.status_code in (200, 422), answer.text
    qid = hash_matching.query_id({"pdq": hex_code})
    rows = api.as_("admin").get("/v1/audit/events", params={"action": "match.hashes", "limit": 100}
                                ).json()["events"]
    ours = [e for e in rows if e["object"] == f"hashes:{qid}"]
    assert len(ours) == 1 and ours[0]["result"] == "ok"
    assert ours[0]["detail"] == {"status": 200, "candidates": 0, "queued": 0}
    refused = [e for e in rows if e["detail"].get("status") == 422]
    assert len(refused) == 1 and refused[0]["result"] == "rejected"


def test_an_hma_lookup_over_http_leaves_one_event(api: LiveApi) -> None:
    """HMA's ``GET /m/lookup`` appends its event in the lookup's transaction, as
    ``/v1/match/hashes`` does: one event for the answer, and one for a refused request."""
    code = np.random.default_rng(11).integers(0, 256, 32, dtype=np.uint8)
    hex_code = code.tobytes().hex()
    partner = api.as_("partner")
    found = partner.get("/m/lookup", params={"signal_type": "pdq", "signal": hex_code})
    assert found.status_code == 200 and found.json() == {}, found.text
    refused = partner.get("/m/lookup", params={"signal_type": "pdq", "signal": "zz"})
    assert refused.status_code == 400, refused.text
    qid = hash_matching.query_id({"pdq": hex_code})
    rows = api.as_("admin").get("/v1/audit/events", params={"action": "hma.lookup", "limit": 100}
                                ).json()["events"]
    ours = [e for e in rows if e["object"] == f"hashes:{qid}"]
    assert len(ours) == 1 and ours[0]["result"] == "ok"
    assert ours[0]["detail"] == {"status": 200, "candidates": 0, "queued": 0}
    assert [e["result"] for e in rows if e["detail"].get("status") == 400] == ["rejected"]
