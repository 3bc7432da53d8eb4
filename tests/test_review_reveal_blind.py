"""Reveal before confirming a person, and blind second review: the rules in the application layer.

The review queue (matcher.review.queue) refuses a confirmation of a missing
person's candidate by a reviewer who has not revealed its reference photo,
whoever calls it; the candidate view (api.visibility) hides earlier decisions
from a second reviewer until they have decided. Both are checked here on a
real SQLite catalog, without HTTP (tests/test_web_candidate.py drives the same
rules through the HTTP API and the pages).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api import visibility
from indexer import pipeline
from indexer.signals import base as signals
from indexer.store.catalog import Bank, Subject
from indexer.store.store import NewImage, Store
from matcher.review import queue as review
from matcher.review.queue import ReviewQueue
from matcher.search.query import Candidate
from tests.conftest import jpeg_bytes, tiles

HASHES = [s.name for s in signals.select(["hashes"])]


def _queued(tmp_path: Path, kind: str, n: int = 2) -> tuple[Store, ReviewQueue, list[int]]:
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("b", kind)
    items = [item for item, _new in store.add_images(bank, [
        NewImage(pipeline.extract(jpeg_bytes(t), HASHES), f"s-{i}", f"tile-{i}")
        for i, t in enumerate(tiles(n, seed=5))])]
    queue = ReviewQueue(store.catalog)
    ids = []
    for k, item in enumerate(items):
        cand = Candidate(bank="b", label=f"s-{k}", subject_id=item.subject_id, pseudonym=None,
                         item=item.id, score=0.9, decision="match",
                         evidence={"face_score": 0.9, "face_distance": 0.2})
        ids.append(queue.record([cand], {"b": bank}, f"{k:064d}", "test")[0])
    return store, queue, ids


def test_a_person_is_confirmed_only_by_a_reviewer_who_revealed_the_photo(tmp_path: Path) -> None:
    _store, queue, (a, b) = _queued(tmp_path, "missing_person")
    with pytest.raises(review.Conflict) as refused:
        queue.decide(a, "ann", "reviewer", "confirm", "same scar")
    assert refused.value.code == "reveal_required"
    row, decisions = queue.get(a)
    assert row.state == review.PENDING and decisions == []  # nothing recorded
    # Rejecting or escalating names no one: no reveal needed.
    assert queue.decide(b, "ann", "reviewer", "escalate")[0].state == review.ESCALATED

    assert queue.record_reveal([a], "ann") == 1 and queue.record_reveal([a], "ann") == 0
    assert queue.decide(a, "ann", "reviewer", "confirm")[0].state == review.AWAITING_SECOND
    # The second reviewer must look too: ann's reveal is not bob's.
    with pytest.raises(review.Conflict) as second:
        queue.decide(a, "bob", "reviewer", "confirm")
    assert second.value.code == "reveal_required"
    queue.record_reveal([a], "bob")
    assert queue.decide(a, "bob", "reviewer", "confirm")[0].state == review.CONFIRMED


def test_a_subject_photo_reveal_counts_for_the_candidates_against_that_photo(tmp_path: Path) -> None:
    _store, queue, (a, b) = _queued(tmp_path, "missing_person")
    row_a, _ = queue.get(a)
    assert queue.record_subject_reveal(int(row_a.subject_id or 0), row_a.ref_item_id, "ann") == 1
    assert queue.has_revealed(a, "ann") and not queue.has_revealed(b, "ann")


def test_other_banks_need_no_reveal(tmp_path: Path) -> None:
    _store, queue, (a, _b) = _queued(tmp_path, "ads")
    assert queue.decide(a, "ann", "reviewer", "confirm")[0].state == review.CONFIRMED


def _view(store: Store, queue: ReviewQueue, cid: int, role: str, viewer: str | None) -> dict:
    row, decisions = queue.get(cid)
    with store.catalog.session() as s:
        bank = s.get(Bank, row.bank_id)
        subject = s.get(Subject, row.subject_id)
    assert bank is not None
    return visibility.candidate_view(row, bank, subject, role, decisions, viewer=viewer)


def test_the_second_reviewer_sees_no_earlier_decision_until_deciding(tmp_path: Path) -> None:
    store, queue, (a, b) = _queued(tmp_path, "missing_person")
    for cid in (a, b):
        queue.record_reveal([cid], "ann")
        queue.record_reveal([cid], "bob")
        queue.decide(cid, "ann", "reviewer", "confirm", "same scar on the left hand")
    second = _view(store, queue, a, "reviewer", "bob")
    assert second["blind_review"] and second["decisions"] == [] and second["decisions_hidden"] == 1
    assert "scar" not in repr(second)
    assert _view(store, queue, a, "admin", "carol")["decisions"] == []  # an admin may decide: blind too
    assert _view(store, queue, a, "reviewer", None)["blind_review"]  # an unknown viewer: blind
    first = _view(store, queue, a, "reviewer", "ann")
    assert not first["blind_review"] and first["decisions"][0]["note"] == "same scar on the left hand"

    # Once bob decided, the history is his to see, whichever way he went.
    queue.decide(a, "bob", "reviewer", "confirm", "agreed")
    after = _view(store, queue, a, "reviewer", "bob")
    assert not after["blind_review"] and [d["note"] for d in after["decisions"]] == [
        "same scar on the left hand", "agreed"]
    queue.decide(b, "bob", "reviewer", "reject", "different ear")  # disagreement: escalated
    escalated = _view(store, queue, b, "reviewer", "dave")
    assert escalated["state"] == review.ESCALATED and len(escalated["decisions"]) == 2
