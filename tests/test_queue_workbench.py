"""The queue's application rules over a real catalog: priority, bulk reject, undo / reopen, export.

Candidates are stored through :meth:`ReviewQueue.record` as the matcher stores
them (real SQLite, real items hashed from fixture tiles); decisions go through
:class:`api.application.Application`, the layer the CLI, HTTP and web pages share,
so the audit events checked here are the ones every front end writes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from api.application import Actor, Application
from indexer import pipeline
from indexer.signals import base as signals
from indexer.store.catalog import Bank
from indexer.store.store import NewImage
from matcher.review import export as review_export
from matcher.review import outbox
from matcher.review import queue as review
from matcher.review import stats as review_stats
from matcher.review.cases import Cases
from matcher.review.queue import ReviewDecision
from matcher.review.stats import QueueFilter
from matcher.search.query import Candidate
from tests.conftest import jpeg_bytes, tiles

HASHES = [s.name for s in signals.select(["hashes"])]
REVIEWER = Actor("rev-1", "reviewer")
OTHER = Actor("rev-2", "reviewer")
ADMIN = Actor("boss", "admin")


def _store(app: Application, bank: Bank, label: str, seed: int) -> tuple[int, int | None]:
    [(item, _new)] = app.store.add_images(bank, [
        NewImage(pipeline.extract(jpeg_bytes(tiles(1, seed=seed)[0]), HASHES), label, f"{label}.jpg")])
    return item.id, item.subject_id


def _candidate(app: Application, bank: Bank, label: str, score: float, query: str, seed: int,
               minor: bool = False, evidence: dict | None = None) -> int:
    item, subject = _store(app, bank, label, seed)
    cand = Candidate(bank=bank.name, label=label, subject_id=subject, pseudonym=None, item=item, score=score,
                     decision="match" if score >= 0.8 and not minor else "review",
                     evidence=evidence or {"pdq": 2}, minor_policy=minor)
    return app.review.record([cand], {bank.name: bank}, query.ljust(64, "0"), "inv")[0]


@pytest.fixture
def app(tmp_path: Path) -> Application:
    return Application(tmp_path / "data", environ={})


def _events(app: Application, action: str) -> list:
    return [e for e in app.audit.events(limit=10_000) if e.action == action]


def test_priority_puts_children_then_missing_persons_before_tied_ad_copies(app: Application) -> None:
    ads = app.store.catalog.ensure_bank("ads", "ads")
    people = app.store.catalog.ensure_bank("families", "missing_person", {"second_review": False})
    rooms = app.store.catalog.ensure_bank("rooms", "venue")
    copies = [_candidate(app, ads, f"ad-{n}", 1.0, f"a{n}", seed=n) for n in range(3)]
    person = _candidate(app, people, "mp-1", 0.91, "b1", seed=10, evidence={"face_score": 0.91})
    venue = _candidate(app, rooms, "room-1", 0.95, "c1", seed=11, evidence={"local_inliers": 40})
    child = _candidate(app, people, "mp-2", 0.7, "d1", seed=12, minor=True)
    f = QueueFilter()  # the default: priority
    assert f.order == "priority"
    page, total = review_stats.queue_page(app.store.catalog, f)
    expected = [child, person, venue, *sorted(copies, reverse=True)]
    assert [r.id for r in page] == expected and total == 6
    # Score order alone is what reviewers had before: the copies came first.
    by_score, _ = review_stats.queue_page(app.store.catalog, QueueFilter(order="score"))
    assert [r.id for r in by_score][1:4] == sorted(copies, reverse=True)
    # j / k walk the same order in both directions, across the groups.
    for a, b in zip(expected, expected[1:], strict=False):
        assert review_stats.neighbour(app.store.catalog, f, a, forward=True) == b
        assert review_stats.neighbour(app.store.catalog, f, b, forward=False) == a
    assert review_stats.neighbour(app.store.catalog, f, expected[-1], forward=True) is None


def test_bulk_reject_decides_each_and_audits_each_but_never_a_child(app: Application) -> None:
    ads = app.store.catalog.ensure_bank("ads", "ads")
    people = app.store.catalog.ensure_bank("families", "missing_person")
    a, b = (_candidate(app, ads, f"ad-{n}", 0.9, f"a{n}", seed=n) for n in range(2))
    person = _candidate(app, people, "mp-1", 0.9, "b1", seed=5)
    child = _candidate(app, people, "mp-2", 0.7, "c1", seed=6, minor=True)
    app.review.decide(b, OTHER.name, OTHER.role, "reject")  # already final: refused, the rest go on
    outcomes = app.bulk_reject(REVIEWER, [a, b, person, child, 99999, a], note="not the same room",
                               via="web")
    assert [(o.candidate_id, o.state, o.error) for o in outcomes] == [
        (a, "rejected", None), (b, None, "already_decided"), (person, "rejected", None),
        (child, None, "minor_policy"), (99999, None, "candidate_not_found")]
    assert app.review.get(child)[0].state == "pending"
    events = [(e.object, e.result, e.detail.get("error"), e.detail.get("state"), e.detail.get("bulk"))
              for e in _events(app, "review.decide")]
    assert events == [(f"candidate:{a}", "ok", None, "rejected", True),
                      (f"candidate:{b}", "rejected", "already_decided", None, True),
                      (f"candidate:{person}", "ok", None, "rejected", True),
                      (f"candidate:{child}", "rejected", "minor_policy", None, True),
                      ("candidate:99999", "rejected", "candidate_not_found", None, True)]
    [(note,)] = [(d.note,) for d in app.review.get(a)[1]]
    assert note == "not the same room"
    with pytest.raises(ValueError, match="at most"):
        app.bulk_reject(REVIEWER, list(range(1, 300)))


def test_undo_is_the_deciders_own_within_the_window_and_reopen_is_an_admins(app: Application) -> None:
    people = app.store.catalog.ensure_bank("families", "missing_person")  # two reviewers
    cid = _candidate(app, people, "mp-1", 0.95, "a1", seed=1)
    app.review.record_reveal([cid], REVIEWER.name)
    app.review.decide(cid, REVIEWER.name, REVIEWER.role, "confirm")
    with pytest.raises(review.NotAllowed) as refused:
        app.reopen(OTHER, cid, "not mine")
    assert refused.value.code == "not_your_decision"
    with pytest.raises(ValueError, match="reason is required"):
        app.reopen(REVIEWER, cid, "  ")
    row = app.reopen(REVIEWER, cid, "pressed c by mistake")
    assert row.state == "pending"
    with pytest.raises(review.Conflict) as nothing:
        app.reopen(REVIEWER, cid, "again")
    assert nothing.value.code == "nothing_to_undo"
    # The undone first confirmation does not count: rev-1 confirms again, rev-2 gives the second.
    app.review.record_reveal([cid], REVIEWER.name)
    app.review.decide(cid, REVIEWER.name, REVIEWER.role, "confirm")
    app.review.record_reveal([cid], OTHER.name)
    row, _ = app.review.decide(cid, OTHER.name, OTHER.role, "confirm")
    assert row.state == "confirmed"
    # rev-2 undoes the second confirmation: back to awaiting, the unsent alert withdrawn, and the
    # first reviewer still cannot confirm alone.
    assert app.reopen(OTHER, cid, "wrong tab").state == "awaiting_second"
    with app.store.catalog.session() as s:
        assert s.scalar(select(outbox.Alert).where(outbox.Alert.candidate_id == cid)) is None
    with pytest.raises(review.Conflict) as second:
        app.review.record_reveal([cid], REVIEWER.name)
        app.review.decide(cid, REVIEWER.name, REVIEWER.role, "confirm")
    assert second.value.code == "second_reviewer_required"
    app.review.record_reveal([cid], OTHER.name)
    row, _ = app.review.decide(cid, OTHER.name, OTHER.role, "confirm")
    assert row.state == "confirmed"
    # Past the window, the reviewer is told to ask an admin; the admin reopens to pending.
    with app.store.catalog.session() as s:
        s.execute(update(ReviewDecision).where(ReviewDecision.candidate_id == cid)
                  .values(at=dt.datetime(2020, 1, 1)))
    with pytest.raises(review.NotAllowed) as late:
        app.reopen(OTHER, cid, "too late")
    assert late.value.code == "undo_window_passed"
    # Once the owner acknowledged the alert, not even an admin reopens it.
    with app.store.catalog.session() as s:
        s.execute(update(outbox.Alert).where(outbox.Alert.candidate_id == cid)
                  .values(acked_at=dt.datetime(2026, 1, 1), acked_by="owner"))
    with pytest.raises(review.Conflict) as told:
        app.reopen(ADMIN, cid, "second thoughts")
    assert told.value.code == "alert_sent" and app.review.get(cid)[0].state == "confirmed"
    with app.store.catalog.session() as s:
        s.execute(update(outbox.Alert).where(outbox.Alert.candidate_id == cid).values(acked_at=None))
    assert app.reopen(ADMIN, cid, "new evidence: a different person").state == "pending"
    with pytest.raises(review.Conflict) as open_:
        app.reopen(ADMIN, cid, "again")
    assert open_.value.code == "already_open"
    _row, decisions = app.review.get(cid)
    assert [(d.action, d.state_after) for d in decisions][-2:] == [("confirm", "confirmed"),
                                                                   ("reopen", "pending")]
    assert decisions[-1].note == "new evidence: a different person"
    events = [(e.actor, e.result, e.detail.get("transition") or e.detail.get("error"))
              for e in _events(app, "review.reopen")]
    assert events == [("rev-2", "rejected", "not_your_decision"), ("rev-1", "rejected", "bad_reason"),
                      ("rev-1", "ok", "undo"), ("rev-1", "rejected", "nothing_to_undo"),
                      ("rev-2", "ok", "undo"), ("rev-2", "rejected", "undo_window_passed"),
                      ("boss", "rejected", "alert_sent"), ("boss", "ok", "reopen"),
                      ("boss", "rejected", "already_open")]
    assert "different person" not in json.dumps([e.to_json() for e in app.audit.events(limit=1000)])


def test_export_of_confirmed_matches_names_no_one(app: Application) -> None:
    people = app.store.catalog.ensure_bank("families", "missing_person", {"second_review": False})
    ads = app.store.catalog.ensure_bank("ads", "ads")
    cid = _candidate(app, people, "CASE-CODE-77", 0.93, "a1", seed=1, evidence={"face_score": 0.9, "pdq": 8})
    other = _candidate(app, ads, "ad-label-9", 1.0, "b1", seed=2)
    _candidate(app, ads, "ad-open", 1.0, "c1", seed=3)  # pending: not exported
    with app.store.catalog.session() as s:
        pseudonym = s.get(review.StoredCandidate, cid).subject_id
    cases = Cases(app.store.catalog)
    from indexer.store.catalog import Subject
    with app.store.catalog.session() as s:
        pseudonym = s.get(Subject, pseudonym).pseudonym
    case = cases.create("Family of the girl from the river", "inv-owner")
    cases.add_subjects(case.ref, [pseudonym])
    app.review.record_reveal([cid], REVIEWER.name)
    app.review.decide(cid, REVIEWER.name, REVIEWER.role, "confirm", "her scar matches")
    app.review.record_reveal([other], REVIEWER.name)
    app.review.decide(other, REVIEWER.name, REVIEWER.role, "confirm")
    body, media, n = app.export_confirmed(ADMIN, "csv", via="web")
    assert media.startswith("text/csv") and n == 2
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["candidate_id"] for r in rows] == [str(cid), str(other)]
    assert rows[0]["subject"] == pseudonym and rows[0]["case"] == case.ref
    assert rows[0]["signals"] == "hashes;faces" and rows[0]["reviews"] == "1"
    assert tuple(rows[0]) == review_export.FIELDS
    for secret in ("CASE-CODE-77", "ad-label-9", "river", "scar", "rev-1", "inv-owner"):
        assert secret not in body
    body, media, n = app.export_confirmed(ADMIN, "json", bank=people)
    assert media == "application/json" and n == 1
    assert json.loads(body)["matches"][0]["subject"] == pseudonym
    with pytest.raises(ValueError, match="unknown export format"):
        app.export_confirmed(ADMIN, "xlsx")
    events = [(e.object, e.result, e.detail.get("format"), e.detail.get("rows"))
              for e in _events(app, "review.export")]
    assert events == [("queue", "ok", "csv", 2), ("bank:families", "ok", "json", 1),
                      ("queue", "rejected", "xlsx", None)]


def test_cli_review_export_reject_and_reopen(tmp_path: Path) -> None:
    from tests.conftest import run_reunite

    data = tmp_path / "data"
    app = Application(data, environ={})
    ads = app.store.catalog.ensure_bank("ads", "ads")
    a, b = (_candidate(app, ads, f"ad-{n}", 1.0, f"a{n}", seed=n) for n in range(2))
    app.review.record_reveal([a], REVIEWER.name)
    app.review.decide(a, REVIEWER.name, REVIEWER.role, "confirm")
    app.store.catalog.engine.dispose()
    done = run_reunite("review", "export", "--format", "json", data=data)
    assert done.returncode == 0, done.stderr
    assert [m["candidate_id"] for m in json.loads(done.stdout)["matches"]] == [a]
    bad = run_reunite("review", "export", "--format", "xlsx", data=data)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --format must be one of csv, json"
    rejected = run_reunite("review", "reject", str(b), str(a), "--note", "same studio", data=data)
    assert rejected.returncode == 1  # one was refused: a's confirmation is final
    assert rejected.stdout.splitlines() == [f"{b}\trejected", f"{a}\trefused: already_decided"]
    reopened = run_reunite("review", "reopen", str(a), "--reason", "asked by the owner", data=data)
    assert reopened.returncode == 0 and reopened.stdout.strip() == f"candidate {a} is now pending"
    noreason = run_reunite("review", "reopen", str(b), data=data)
    assert noreason.returncode == 2 and noreason.stderr.count("\n") == 1 and "reason" in noreason.stderr
    app = Application(data, environ={})
    events = [(e.action, e.result, e.detail.get("via")) for e in app.audit.events(limit=1000)
              if e.action in ("review.export", "review.decide", "review.reopen")]
    assert events == [("review.export", "ok", "cli"), ("review.decide", "ok", "cli"),
                      ("review.decide", "rejected", "cli"), ("review.reopen", "ok", "cli"),
                      ("review.reopen", "rejected", "cli")]
