"""Read-only views of the review queue that the reviewer pages need and :mod:`matcher.review.queue` lacks.

:class:`matcher.review.queue.ReviewQueue` owns the candidate lifecycle (storing,
deciding); this module only *reads* its tables: a queue page ordered the way
reviewers work (strongest or newest first, which ``ReviewQueue.list`` does not
offer because the API promises oldest first), filtered by the kind of signal
that produced the candidate, the candidate after or before another one in that
order (for j / k and "next after a decision"), and the dashboard figures:
queue length per bank, decisions per day, and the median time from a
candidate's creation to its decision (the response time investigators are
judged by). Nothing here knows of HTTP.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, not_, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.sql.elements import ColumnElement

from indexer.signals import base as signals
from indexer.store.catalog import Bank, Catalog, Item, utcnow
from matcher.review.cases import Case
from matcher.review.outbox import Alert, AlertDelivery
from matcher.review.queue import (
    AWAITING_SECOND,
    CONFIRMED,
    OPEN_STATES,
    REJECTED,
    STATES,
    ReviewDecision,
    StoredCandidate,
    kind_priority,
    kind_rank,
)

# Signal families a reviewer can filter by, and how each shows in a candidate's evidence.
EXACT, HASHES, FACES, LOCAL = "exact", "hashes", "faces", "local"
FAMILY_LABELS = {EXACT: "Identical file (SHA-256)", HASHES: "Perceptual hash",
                 FACES: "Face", LOCAL: "Local features (crop / overlay / venue)"}
ORDERS = ("priority", "score", "newest", "oldest")


def family_keys(family: str) -> list[str]:
    """Evidence keys whose presence means ``family`` contributed to a candidate."""
    if family == EXACT:
        return ["sha256"]
    if family == HASHES:
        return sorted(s.name for s in signals.all_signals() if s.family == "hashes")
    if family == FACES:
        return ["face_score"]
    if family == LOCAL:
        return ["local_inliers"]
    raise ValueError(f"unknown signal family {family!r} (one of {', '.join(FAMILY_LABELS)})")


def evidence_families(evidence: dict[str, Any]) -> list[str]:
    """The families present in one candidate's evidence, in display order."""
    return [f for f in FAMILY_LABELS if any(k in evidence for k in family_keys(f))]


@dataclass(frozen=True)
class QueueFilter:
    """What a reviewer asked to see; ``states`` defaults to every open state."""

    bank_id: int | None = None
    tier: str | None = None
    family: str | None = None
    states: tuple[str, ...] = OPEN_STATES
    order: str = "priority"

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = [StoredCandidate.state.in_(self.states)]
        if self.bank_id is not None:
            out.append(StoredCandidate.bank_id == self.bank_id)
        if self.tier is not None:
            out.append(StoredCandidate.tier == self.tier)
        if self.family is not None:
            out.append(or_(*[StoredCandidate.evidence[k].as_string().is_not(None)
                             for k in family_keys(self.family)]))
        return out

    def sort_keys(self) -> list[tuple[Any, bool, Any]]:
        """The sort keys of ``order``: (SQL expression, descending, value of a row), id last.

        Every order puts protected children first (matcher.privacy.minors). ``priority``
        (the reviewers' default) then puts missing persons before venues before
        the rest (:func:`matcher.review.queue.kind_rank`, the application's rule), and
        ranks by score within each: a 0.93 face match of a missing person is
        looked at before a hundred 1.00 reposts of one ad.
        """
        c = StoredCandidate
        minor = sql_case((c.minor_policy.is_(True), 1), else_=0)
        out: list[tuple[Any, bool, Any]] = [(minor, True, lambda row, kind: 1 if row.minor_policy else 0)]
        if self.order == "priority":
            out.append((kind_rank(), False, lambda row, kind: kind_priority(kind)))
        if self.order in ("newest", "oldest"):
            descending = self.order == "newest"
            out.append((c.created_at, descending, lambda row, kind: row.created_at))
            out.append((c.id, descending, lambda row, kind: row.id))
        else:
            out.append((c.score, True, lambda row, kind: row.score))
            out.append((c.id, True, lambda row, kind: row.id))
        return out

    def sort(self) -> list[Any]:
        return [expr.desc() if descending else expr.asc() for expr, descending, _v in self.sort_keys()]


def _after(f: QueueFilter, row: StoredCandidate, kind: str, forward: bool) -> ColumnElement[bool]:
    """Rows strictly after (``forward``) or before ``row`` in the order of ``f`` (a keyset condition)."""
    keys = f.sort_keys()
    alternatives = []
    for n, (expr, descending, value) in enumerate(keys):
        equal = [e == v(row, kind) for e, _d, v in keys[:n]]
        later = descending == forward  # moving "down" a descending list means smaller values
        step = expr < value(row, kind) if later else expr > value(row, kind)
        alternatives.append(and_(*equal, step))
    return or_(*alternatives)


def _reversed(f: QueueFilter) -> list[Any]:
    return [expr.asc() if descending else expr.desc() for expr, descending, _v in f.sort_keys()]


def _not_waiting_on(reviewer: str) -> ColumnElement[bool]:
    """Excludes candidates that wait for a second reviewer after ``reviewer`` gave the first."""
    mine = exists().where(ReviewDecision.candidate_id == StoredCandidate.id,
                          ReviewDecision.reviewer == reviewer, ReviewDecision.action == "confirm",
                          ReviewDecision.state_after == AWAITING_SECOND)  # an undo back to it is not
    return not_(and_(StoredCandidate.state == AWAITING_SECOND, mine))


def queue_page(catalog: Catalog, f: QueueFilter, offset: int = 0,
               limit: int = 25) -> tuple[list[StoredCandidate], int]:
    """One page of candidates under ``f`` and how many match in all."""
    with catalog.session() as s:
        total = int(s.scalar(select(func.count(StoredCandidate.id)).where(*f.conditions())) or 0)
        rows = list(s.scalars(select(StoredCandidate).where(*f.conditions()).order_by(*f.sort())
                              .offset(offset).limit(limit)))
    return rows, total


def neighbour(catalog: Catalog, f: QueueFilter, candidate_id: int, *, forward: bool = True,
              reviewer: str | None = None) -> int | None:
    """The id of the candidate after (or before) ``candidate_id`` under ``f``.

    The anchor need not match ``f`` any more (it usually was just decided and
    left the open states); its position is taken from its sort key. With
    ``reviewer``, candidates that only wait for *another* reviewer are skipped.
    """
    with catalog.session() as s:
        row = s.get(StoredCandidate, candidate_id)
        if row is None:
            return None
        kind = s.scalar(select(Bank.kind).where(Bank.id == row.bank_id)) or ""
        conditions = [*f.conditions(), _after(f, row, kind, forward), StoredCandidate.id != candidate_id]
        if reviewer is not None:
            conditions.append(_not_waiting_on(reviewer))
        order = f.sort() if forward else _reversed(f)
        return s.scalar(select(StoredCandidate.id).where(*conditions).order_by(*order).limit(1))


# --- dashboard -------------------------------------------------------------------


@dataclass
class BankQueue:
    """Open candidates of one bank, by state."""

    bank_id: int
    bank: str
    kind: str
    by_state: dict[str, int] = field(default_factory=dict)

    @property
    def open(self) -> int:
        return sum(self.by_state.get(s, 0) for s in OPEN_STATES)


def queue_length_per_bank(catalog: Catalog) -> list[BankQueue]:
    """Every bank with its candidates per state (banks without candidates included, at zero)."""
    with catalog.session() as s:
        banks = list(s.scalars(select(Bank).order_by(Bank.name)))
        rows = s.execute(select(StoredCandidate.bank_id, StoredCandidate.state,
                                func.count(StoredCandidate.id))
                         .group_by(StoredCandidate.bank_id, StoredCandidate.state)).all()
    out = {b.id: BankQueue(b.id, b.name, b.kind, dict.fromkeys(STATES, 0)) for b in banks}
    for bank_id, state, n in rows:
        if bank_id in out:
            out[bank_id].by_state[str(state)] = int(n)
    return list(out.values())


@dataclass(frozen=True)
class DayCount:
    day: dt.date
    by_action: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_action.values())


def decisions_per_day(catalog: Catalog, days: int = 14, now: dt.datetime | None = None) -> list[DayCount]:
    """Decisions (UTC days, newest first) over the last ``days`` days, zero days included."""
    now = now or utcnow()
    first = (now - dt.timedelta(days=days - 1)).date()
    start = dt.datetime.combine(first, dt.time())
    with catalog.session() as s:
        rows = s.execute(select(ReviewDecision.at, ReviewDecision.action)
                         .where(ReviewDecision.at >= start)).all()
    table: dict[dt.date, dict[str, int]] = {first + dt.timedelta(days=i): {} for i in range(days)}
    for at, action in rows:
        slot = table.setdefault(at.date(), {})
        slot[str(action)] = slot.get(str(action), 0) + 1
    return [DayCount(day, table[day]) for day in sorted(table, reverse=True)]


@dataclass(frozen=True)
class ResponseTimes:
    """Median seconds from a candidate's creation to its first decision and to its final outcome."""

    first_decision_s: float | None
    first_decisions: int
    final_outcome_s: float | None
    final_outcomes: int


def response_times(catalog: Catalog, bank_id: int | None = None,
                   since: dt.datetime | None = None) -> ResponseTimes:
    """Medians over candidates created since ``since`` (all when None), optionally of one bank.

    "Final" is the decision that left the candidate confirmed or rejected; a
    missing-person candidate that needs two reviewers reaches it only with the
    second one, which is the delay an investigator actually waits.
    """
    conditions: list[ColumnElement[bool]] = []
    if bank_id is not None:
        conditions.append(StoredCandidate.bank_id == bank_id)
    if since is not None:
        conditions.append(StoredCandidate.created_at >= since)
    with catalog.session() as s:
        rows = s.execute(select(StoredCandidate.id, StoredCandidate.created_at, ReviewDecision.at,
                                ReviewDecision.state_after)
                         .join(ReviewDecision, ReviewDecision.candidate_id == StoredCandidate.id)
                         .where(*conditions).order_by(ReviewDecision.id)).all()
    first: dict[int, float] = {}
    final: dict[int, float] = {}
    for cid, created, at, state_after in rows:
        seconds = max(0.0, (at - created).total_seconds())
        first.setdefault(int(cid), seconds)
        if state_after in (CONFIRMED, REJECTED):
            final.setdefault(int(cid), seconds)
    return ResponseTimes(statistics.median(first.values()) if first else None, len(first),
                         statistics.median(final.values()) if final else None, len(final))


# --- from first sighting to action (alerts) ---------------------------------------

STAGES = ("candidate", "decision", "delivered", "acknowledged", "outcome")
STAGE_LABELS = {"candidate": "to candidate", "decision": "to decision (confirmed)",
                "delivered": "to alert delivered", "acknowledged": "to acknowledgement",
                "outcome": "to outcome"}


@dataclass(frozen=True)
class AlertTiming:
    """Seconds from the first sighting to each step of one confirmed match (None: not reached)."""

    alert_id: int
    bank: str
    case: str | None
    seconds: dict[str, float | None]


@dataclass(frozen=True)
class StageSummary:
    stage: str
    count: int
    median_s: float | None
    p90_s: float | None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100): a value that occurred, also for one or two values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100)
    return ordered[int(rank) - 1]


def alert_timings(catalog: Catalog) -> list[AlertTiming]:
    """Every confirmed match that has an alert, timed from its first sighting.

    The first sighting is when the matched photo was first indexed in an ads
    bank (its item's ``created_at``); for a photo an investigator submitted by
    hand that no crawl holds, the candidate's creation stands in for it and
    "to candidate" is left out (there was no sighting to measure from).
    """
    sighted = (select(Item.sha256.label("sha"), func.min(Item.created_at).label("first"))
               .join(Bank, Bank.id == Item.bank_id).where(Bank.kind == "ads")
               .group_by(Item.sha256).subquery())
    delivered = (select(AlertDelivery.alert_id.label("aid"), func.min(AlertDelivery.delivered_at)
                        .label("at")).group_by(AlertDelivery.alert_id).subquery())
    with catalog.session() as s:
        rows = s.execute(
            select(Alert.id, Bank.name, Case.ref, StoredCandidate.created_at, Alert.confirmed_at,
                   delivered.c.at, Alert.acked_at, Alert.outcome_at, sighted.c.first)
            .join(StoredCandidate, StoredCandidate.id == Alert.candidate_id)
            .join(Bank, Bank.id == Alert.bank_id)
            .outerjoin(Case, Case.id == Alert.case_id)
            .outerjoin(delivered, delivered.c.aid == Alert.id)
            .outerjoin(sighted, sighted.c.sha == StoredCandidate.query_sha256)
            .order_by(Alert.id)).all()
    out = []
    for aid, bank, case, candidate_at, confirmed, sent, acked, outcome, first in rows:
        start = first or candidate_at

        def since(at: dt.datetime | None, start: dt.datetime = start) -> float | None:
            return None if at is None else max(0.0, (at - start).total_seconds())

        seconds = {"candidate": since(candidate_at) if first is not None else None,
                   "decision": since(confirmed), "delivered": since(sent),
                   "acknowledged": since(acked), "outcome": since(outcome)}
        out.append(AlertTiming(int(aid), str(bank), case, seconds))
    return out


def summarise(timings: list[AlertTiming]) -> list[StageSummary]:
    """Median and p90 of each stage over ``timings``."""
    out = []
    for stage in STAGES:
        values = [t.seconds[stage] for t in timings if t.seconds[stage] is not None]
        clean = [float(v) for v in values if v is not None]
        out.append(StageSummary(stage, len(clean), statistics.median(clean) if clean else None,
                                percentile(clean, 90)))
    return out


def grouped(timings: list[AlertTiming], by: str) -> dict[str, list[StageSummary]]:
    """Stage summaries per bank (``by="bank"``) or per case ref (``by="case"``; caseless alerts left out)."""
    groups: dict[str, list[AlertTiming]] = {}
    for t in timings:
        key = t.bank if by == "bank" else t.case
        if key is not None:
            groups.setdefault(key, []).append(t)
    return {k: summarise(v) for k, v in sorted(groups.items())}
