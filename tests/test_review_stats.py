"""The reviewer pages' queue order, neighbours and dashboard figures, over a real catalog."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import update

from indexer import pipeline
from indexer.signals import base as signals
from indexer.store.store import NewImage, Store
from matcher.review import stats as review_stats
from matcher.review.queue import AWAITING_SECOND, ReviewDecision, ReviewQueue, StoredCandidate
from matcher.review.stats import QueueFilter
from matcher.search.query import Candidate
from tests.conftest import jpeg_bytes, tiles, vectors_for

HASHES = [s.name for s in signals.select(["hashes"])]


def _queue(tmp_path: Path, catalog_url: str | None = None) -> tuple[Store, ReviewQueue, list[int]]:
    """Four stored candidates with scores 0.9, 0.6, 0.95, 0.7 (ids in that order)."""
    store = Store(tmp_path / "data", catalog_url, vectors_for(catalog_url))
    bank = store.catalog.ensure_bank("ads", "ads", {"second_review": True})
    items = [item for item, _new in store.add_images(bank, [
        NewImage(pipeline.extract(jpeg_bytes(t), HASHES), f"ad-{i}", f"tile-{i}")
        for i, t in enumerate(tiles(4, seed=3))])]
    queue = ReviewQueue(store.catalog)
    evidence = [{"pdq": 4}, {"face_score": 0.6, "face_distance": 0.4}, {"sha256": 0, "pdq": 0},
                {"local_inliers": 80, "local_matches": 120}]
    ids = []
    for n, (item, score) in enumerate(zip(items, (0.9, 0.6, 0.95, 0.7), strict=True)):
        cand = Candidate(bank="ads", label=f"ad-{n}", subject_id=item.subject_id, pseudonym=None,
                         item=item.id, score=score, decision="match" if score >= 0.8 else "review",
                         evidence=evidence[n])
        ids.append(queue.record([cand], {"ads": bank}, f"{n:064d}", "test")[0])
    return store, queue, ids


def test_order_filters_and_neighbours(tmp_path: Path, catalog_url: str | None) -> None:
    # Filters read inside the evidence JSON: json_extract on SQLite, ->> on PostgreSQL.
    store, queue, (a, b, c, d) = _queue(tmp_path, catalog_url)
    catalog = store.catalog
    by_score = QueueFilter()
    assert [r.id for r in review_stats.queue_page(catalog, by_score)[0]] == [c, a, d, b]
    assert [r.id for r in review_stats.queue_page(catalog, QueueFilter(order="newest"))[0]] == [d, c, b, a]
    rows, total = review_stats.queue_page(catalog, by_score, offset=1, limit=2)
    assert [r.id for r in rows] == [a, d] and total == 4
    assert [r.id for r in review_stats.queue_page(catalog, QueueFilter(family="faces"))[0]] == [b]
    assert [r.id for r in review_stats.queue_page(catalog, QueueFilter(family="hashes"))[0]] == [c, a]
    assert [r.id for r in review_stats.queue_page(catalog, QueueFilter(family="local"))[0]] == [d]
    assert [r.id for r in review_stats.queue_page(catalog, QueueFilter(tier="review"))[0]] == [d, b]

    assert review_stats.neighbour(catalog, by_score, a) == d
    assert review_stats.neighbour(catalog, by_score, a, forward=False) == c
    assert review_stats.neighbour(catalog, by_score, b) is None
    # After a first confirmation the candidate waits for someone else: skipped for that reviewer only.
    queue.decide(d, "ann", "reviewer", "confirm")
    assert queue.get(d)[0].state == AWAITING_SECOND
    assert review_stats.neighbour(catalog, by_score, a, reviewer="ann") == b
    assert review_stats.neighbour(catalog, by_score, a, reviewer="bob") == d
    # A decided candidate leaves the open queue but still anchors its neighbours.
    queue.decide(c, "ann", "reviewer", "reject")
    assert review_stats.neighbour(catalog, by_score, c) == a


def test_dashboard_figures(tmp_path: Path, catalog_url: str | None) -> None:
    store, queue, (a, b, c, _d) = _queue(tmp_path, catalog_url)
    catalog = store.catalog
    queue.decide(a, "ann", "reviewer", "reject")            # final at once
    queue.decide(b, "ann", "reviewer", "confirm")           # awaiting a second reviewer
    queue.decide(b, "bob", "reviewer", "confirm")           # final with the second
    queue.decide(c, "ann", "reviewer", "escalate")
    start = dt.datetime(2026, 3, 1, 12, 0)
    with catalog.session() as s:  # put the history on known times
        s.execute(update(StoredCandidate).values(created_at=start))
        for n, minutes in enumerate((10, 30, 90, 20), start=1):
            s.execute(update(ReviewDecision).where(ReviewDecision.id == n)
                      .values(at=start + dt.timedelta(minutes=minutes)))
    times = review_stats.response_times(catalog)
    # first decisions: a 10 min, b 30 min, c 20 min; final outcomes: a 10 min, b 90 min
    assert times.first_decision_s == 20 * 60 and times.first_decisions == 3
    assert times.final_outcome_s == 50 * 60 and times.final_outcomes == 2
    days = review_stats.decisions_per_day(catalog, 3, now=dt.datetime(2026, 3, 2, 9, 0))
    assert [d.day.isoformat() for d in days] == ["2026-03-02", "2026-03-01", "2026-02-28"]
    assert days[1].by_action == {"reject": 1, "confirm": 2, "escalate": 1} and days[0].total == 0
    [ads] = review_stats.queue_length_per_bank(catalog)
    assert ads.bank == "ads" and ads.open == 2 and ads.by_state["confirmed"] == 1
