"""The review queue: from a ranked candidate to a human decision.

A match at tier ``match`` or ``review`` is a claim that a photo in an ad shows
a missing person or a known room. Nobody acts on such a claim before a person
has looked, so every such candidate is stored here and enters the queue.

Lifecycle (one row per query image x subject, so re-submitting the same ad
does not flood the queue)::

    pending ──confirm──► confirmed                 (one reviewer suffices)
    pending ──confirm──► awaiting_second ──confirm by someone else──► confirmed
                                      └──reject──► escalated      (reviewers disagree)
    pending / escalated ──reject──► rejected
    pending / awaiting_second ──escalate──► escalated ──confirm / reject──► ...
    any decided state ──undo (its reviewer, within UNDO_WINDOW)──► the state before that decision
    any decided state ──reopen (an admin, with a reason)──► pending

A second, different reviewer is required for ``missing_person`` banks unless
configured otherwise (bank policy ``second_review``): naming a person wrongly
is the costliest error this system can make. Confirmed and rejected are
final for reviewers: a reviewer may only *undo* their own latest decision
within :data:`UNDO_WINDOW` (a slip of the keyboard), and only an admin may
*reopen* a decided candidate later, with a written reason. Both are recorded
as decisions (``action`` ``undo`` / ``reopen``, the reason as the note), so
the history stays a path of the machine. Reopening a confirmed match
withdraws its alert only while nobody has been told (no delivery sent, not
acknowledged); once the owner knows, the reopen is refused and the owner
records the outcome on the alert instead. Every decision keeps its
reviewer, time and note; notes are sealed with the encryption key when one
is configured, because they are case notes.

Reveal before a person is named: a candidate of a ``missing_person`` bank
(or a protected child's, whatever its bank) is confirmed only by a reviewer
who has seen the reference photo, that is, whose reveal of it was recorded
here (:meth:`ReviewQueue.record_reveal`, called by the audited reveal of the
web pages and of ``GET /v1/subjects/{pseudonym}/photos/{item}``). Otherwise
``confirm`` is refused with :class:`Conflict` ``reveal_required`` and nothing
is recorded; reject and escalate need no reveal (turning a claim down names
no one). A reference without a kept photo therefore cannot be confirmed, only
rejected or escalated: a face nobody can look at is not confirmed by a
person. Reveals are per reviewer, so the second reviewer must look too.

Blind second review: what a reviewer is *shown* of earlier decisions is
decided by :func:`api.visibility.candidate_view` (the layer that builds a
candidate for a role and a viewer); this module keeps every decision.

Concurrency rule: a decision is applied to the state it was computed from,
or not at all. ``decide`` reads the candidate and its history, computes the
next state, then writes it with a compare-and-set: ``UPDATE candidates SET
state = new, version = v + 1 WHERE id = ? AND version = v AND state = old``.
When another decision was committed in between (two reviewers pressing a
button on one candidate at the same moment), the UPDATE matches no row and
the late decision is refused with :class:`Conflict` ``decided_meanwhile``
(HTTP 409): its reviewer looks at the new state and decides again. So the
stored history is always a path of the machine above, whatever the timing:
two simultaneous confirms on a one-reviewer bank record one decision, and a
second confirm racing a reject cannot confirm over the disagreement. The
version column, not the state alone, is compared because a state can come
back (``awaiting_second`` → ``escalated`` → ``awaiting_second`` with another
first reviewer). This needs no row lock, which SQLite does not have
(``SELECT ... FOR UPDATE`` is silently dropped there): the compare-and-set is
atomic on SQLite (one writer at a time) and on PostgreSQL (READ COMMITTED
re-checks the WHERE on the newest row version after waiting for the other
writer) alike.

The transition to ``confirmed`` stores the match's alert in the same
transaction (:func:`matcher.review.outbox.enqueue_confirmed`): a confirmation and
its alert are committed together or not at all, whichever front end decided.

This module knows nothing of HTTP: the service and the reviewer web pages
call it alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    case,
    delete,
    false,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from indexer import text as text_rules
from indexer.crypto import Cipher, DecryptionFailed, is_sealed
from indexer.store.catalog import (
    Bank,
    Base,
    Catalog,
    lost_a_race,
    utcnow,
)
from matcher.review import outbox
from matcher.search import decide
from matcher.search.query import Candidate

PENDING, AWAITING_SECOND, ESCALATED, CONFIRMED, REJECTED = (
    "pending", "awaiting_second", "escalated", "confirmed", "rejected")
STATES = (PENDING, AWAITING_SECOND, ESCALATED, CONFIRMED, REJECTED)
OPEN_STATES = (PENDING, AWAITING_SECOND, ESCALATED)
ACTIONS = ("confirm", "reject", "escalate")
UNDO, REOPEN = "undo", "reopen"
UNDO_WINDOW = dt.timedelta(minutes=10)  # long enough to notice a slip, short enough not to be a habit
REOPEN_ROLES = frozenset({"admin"})
# Queue priority (after protected children): a missing person waits least, then a venue
# (a place where a victim was seen), then everything else (ad-to-ad copies, hash lists).
KIND_PRIORITY = {"missing_person": 0, "venue": 1}
OTHER_KIND_PRIORITY = 2
QUEUED_TIERS = (decide.MATCH, decide.REVIEW)
MAX_NOTE = 4000
RECORD_ATTEMPTS = 4


class StoredCandidate(Base):
    """A candidate kept for review: query image x subject, with evidence and state."""

    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("query_sha256", "bank_id", "subject_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True, nullable=True)
    ref_item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    query_sha256: Mapped[str] = mapped_column(String(64), index=True)
    query_photo: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[float] = mapped_column(Float)
    tier: Mapped[str] = mapped_column(String(16), index=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    required_reviews: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Bumped by every decision; the compare-and-set of ``decide`` checks it.
    # The server default lets the additive schema step add it to old catalogs.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # A protected child's candidate (matcher.privacy.minors): two reviewers, first in the queue.
    minor_policy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # What the query image is, when the system found it itself (a watched ad: bank, item, ad id,
    # site, url, posted time); None for an image someone submitted. See api/watching.py.
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ReviewDecision(Base):
    """One reviewer's action on a candidate."""

    __tablename__ = "review_decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    state_after: Mapped[str] = mapped_column(String(16))
    note: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CandidateRequester(Base):
    """Who asked for a candidate: each account whose match produced or re-produced it.

    One candidate serves every query of the same image, so ``created_by``
    names only the first asker; this table lets each asker read the outcome
    of their own queries (see :meth:`ReviewQueue.get`) and no one else's.
    """

    __tablename__ = "candidate_requesters"
    __table_args__ = (UniqueConstraint("candidate_id", "requester"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    requester: Mapped[str] = mapped_column(String(120))


class CandidateReveal(Base):
    """A reviewer saw a candidate's reference photo (the audit log has the event; this, the rule)."""

    __tablename__ = "candidate_reveals"
    __table_args__ = (UniqueConstraint("candidate_id", "reviewer"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(120))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# ReviewQueue.record_in's statements (indexer.store.prepared: the same SQL on SQLite and PostgreSQL).
_CANDIDATES = StoredCandidate.__tablename__
_STORED_SQL = ("SELECT id, bank_id, subject_id, score, minor_policy, state, query_photo, created_by, context "
               f"FROM {_CANDIDATES} WHERE query_sha256 = :sha AND bank_id {{in:banks}} ORDER BY id")
_NEW_CANDIDATE_COLUMNS = ("bank_id", "subject_id", "ref_item_id", "query_sha256", "query_photo", "score",
                          "tier", "evidence", "state", "required_reviews", "minor_policy", "created_by",
                          "created_at", "updated_at", "context", "version")
_INSERT_CANDIDATE_SQL = (f"INSERT INTO {_CANDIDATES} ({', '.join(_NEW_CANDIDATE_COLUMNS)}) VALUES "
                         f"({', '.join(':' + c for c in _NEW_CANDIDATE_COLUMNS)}) RETURNING id")
_INSERT_REQUESTER_SQL = (f"INSERT INTO {CandidateRequester.__tablename__} (candidate_id, requester) "
                         "VALUES (:candidate_id, :requester)")
_REQUESTED_SQL = (f"SELECT candidate_id FROM {CandidateRequester.__tablename__} "
                  "WHERE candidate_id {in:ids} AND requester = :requester")

# Banks whose candidates name a person: confirming one needs the reference revealed first.
REVEAL_KINDS = frozenset({"missing_person"})


class ReviewError(Exception):
    """A decision that cannot be taken; ``code`` is stable for clients."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotFound(ReviewError):
    pass


class Conflict(ReviewError):
    pass


class NotAllowed(ReviewError):
    """The caller's role or timing does not allow this transition (HTTP 403)."""


@dataclass(frozen=True)
class DecisionView:
    reviewer: str
    role: str
    action: str
    state_after: str
    note: str
    at: dt.datetime


def kind_priority(kind: str) -> int:
    """The queue group of a bank kind: lower is reviewed first (see :data:`KIND_PRIORITY`)."""
    return KIND_PRIORITY.get(kind, OTHER_KIND_PRIORITY)


def kind_rank() -> ColumnElement[int]:
    """:func:`kind_priority` of a candidate's bank, as SQL (for ordering the queue)."""
    kind = select(Bank.kind).where(Bank.id == StoredCandidate.bank_id).scalar_subquery()
    return case(*[(kind == k, v) for k, v in KIND_PRIORITY.items()], else_=OTHER_KIND_PRIORITY)


def second_review_required(bank: Bank, default_for_missing_person: bool = True) -> bool:
    """Whether confirming a candidate of ``bank`` needs two different reviewers."""
    configured = (bank.policy or {}).get("second_review")
    if configured is not None:
        return bool(configured)
    return bank.kind == "missing_person" and default_for_missing_person


class ReviewQueue:
    """Stores candidates and applies decisions, over one catalog."""

    def __init__(self, catalog: Catalog, cipher: Cipher | None = None,
                 second_review_missing_person: bool = True) -> None:
        self.catalog = catalog
        self.cipher = cipher
        self.second_review_missing_person = second_review_missing_person

    # --- entering the queue --------------------------------------------------
    def record(self, candidates: Iterable[Candidate], banks: dict[str, Bank], query_sha256: str,
               requested_by: str, query_photo: str | None = None,
               context: dict[str, Any] | None = None) -> dict[int, int]:
        """Store the queue-worthy candidates of one query; returns {position: candidate id}.

        A candidate already stored for the same query and subject keeps its
        state; its score and evidence are raised when the new one is stronger.
        Two matches of one image at the same moment may both find no row and
        both insert one: the unique constraint refuses the later, which is
        rolled back and tried again, and then finds the earlier's row.
        """
        candidates = list(candidates)
        if not any(c.decision in QUEUED_TIERS for c in candidates):
            return {}  # nothing to queue: no transaction (most hash lookups find nothing)
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                with self.catalog.writing() as conn:
                    return self.record_in(conn, candidates, banks, query_sha256, requested_by, query_photo,
                                          context)
            except DBAPIError as exc:
                if attempt == RECORD_ATTEMPTS or not lost_a_race(exc):
                    raise
        raise AssertionError("unreachable")

    def record_in(self, conn: Connection, candidates: list[Candidate], banks: dict[str, Bank],
                  query_sha256: str, requested_by: str, query_photo: str | None = None,
                  context: dict[str, Any] | None = None) -> dict[int, int]:
        """:meth:`record` inside the caller's transaction on ``conn`` (no statement when nothing is
        queued). A lost race (:func:`indexer.store.catalog.lost_a_race`) is raised for the caller to
        roll back and run its whole transaction again, as :meth:`record` does with its own."""
        # Prepared statements (indexer.store.prepared) on a catalog connection: the ORM's flush of
        # one new row, then Core's per-statement work, cost more than the rest of a lookup's queueing.
        out: dict[int, int] = {}
        queued = [(position, cand) for position, cand in enumerate(candidates)
                  if cand.decision in QUEUED_TIERS]
        if not queued:
            return out
        now = utcnow()
        prep = self.catalog.prepared
        load_bool, load_json = prep.loader("bool"), prep.loader("json")
        # The query's stored rows and this requester's links read once (two queries), not once
        # per candidate: a lookup of a reposted photo queues up to ``top`` candidates.
        stored: dict[tuple[int, int | None], dict[str, Any]] = {}
        bank_ids = sorted({banks[c.bank].id for _p, c in queued})
        for cid, bank_id, subject_id, score, minor, state, photo, created_by, kept_context in prep.rows(
                conn, _STORED_SQL, {"sha": query_sha256}, lists={"banks": bank_ids}):
            row = {"id": cid, "bank_id": bank_id, "subject_id": subject_id, "score": score,
                   "minor_policy": minor is not None and bool(load_bool(minor)), "state": state,
                   "query_photo": photo, "created_by": created_by,
                   "has_context": kept_context is not None and load_json(kept_context) is not None}
            stored.setdefault((row["bank_id"], row["subject_id"]), row)
        linked = self._requested_of(conn, [r["id"] for r in stored.values()], requested_by)
        changed: dict[int, dict[str, Any]] = {}
        for position, cand in queued:
            bank = banks[cand.bank]
            row = stored.get((bank.id, cand.subject_id))
            if row is None:
                values = dict(
                    bank_id=bank.id, subject_id=cand.subject_id, ref_item_id=cand.item,
                    query_sha256=query_sha256, query_photo=query_photo, score=cand.score,
                    tier=cand.decision, evidence=cand.evidence, state=PENDING,
                    required_reviews=2 if cand.minor_policy or second_review_required(
                        bank, self.second_review_missing_person) else 1,
                    minor_policy=cand.minor_policy,
                    created_by=requested_by, created_at=now, updated_at=now, context=context)
                stamp = prep.dump("datetime", now)
                new_id = int(prep.run(conn, _INSERT_CANDIDATE_SQL, {
                    **values, "evidence": prep.dump("json", cand.evidence),
                    "context": prep.dump("json", context),
                    "minor_policy": prep.dump("bool", cand.minor_policy),
                    "created_at": stamp, "updated_at": stamp, "version": 0})[0])
                row = {**values, "id": new_id, "has_context": context is not None}
                stored[(bank.id, cand.subject_id)] = row
            else:
                update_of = changed.setdefault(row["id"], {})
                if cand.score > row["score"]:
                    fields = dict(score=cand.score, tier=cand.decision, evidence=cand.evidence,
                                  ref_item_id=cand.item, updated_at=now)
                    row.update(fields)
                    update_of.update(fields)
                if cand.minor_policy and not row["minor_policy"] and row["state"] == PENDING:
                    # protected since it was stored
                    row.update(minor_policy=True, required_reviews=2)
                    update_of.update(minor_policy=True, required_reviews=2)
                if row["query_photo"] is None and query_photo is not None:
                    row["query_photo"] = update_of["query_photo"] = query_photo
                if not row["has_context"] and context is not None:
                    update_of["context"] = context
                    row["has_context"] = True
            if requested_by and row["created_by"] != requested_by and row["id"] not in linked:
                prep.run(conn, _INSERT_REQUESTER_SQL, {"candidate_id": row["id"],
                                                   "requester": requested_by})
                linked.add(row["id"])
            out[position] = row["id"]
        for candidate_id, fields in changed.items():
            if fields:
                conn.execute(update(StoredCandidate.__table__)
                             .where(StoredCandidate.__table__.c.id == candidate_id).values(**fields))
        return out

    def _requested_of(self, conn: Connection, candidate_ids: list[int], requester: str) -> set[int]:
        """Those of ``candidate_ids`` that ``requester`` is already recorded as having asked for."""
        if not candidate_ids or not requester:
            return set()
        return {int(cid) for (cid,) in self.catalog.prepared.rows(
            conn, _REQUESTED_SQL, {"requester": requester}, lists={"ids": candidate_ids})}

    # --- reading -------------------------------------------------------------
    def list(self, *, bank_id: int | None = None, tier: str | None = None, state: str | None = None,
             offset: int = 0, limit: int = 50) -> tuple[list[StoredCandidate], int]:
        """One page of the queue and the total: protected children first, then oldest first.

        Within each group the oldest waits least (nothing waits forever); a child's candidate
        goes before every adult's because a wrong or late answer about a child costs most.
        """
        conditions = []
        if bank_id is not None:
            conditions.append(StoredCandidate.bank_id == bank_id)
        if tier is not None:
            conditions.append(StoredCandidate.tier == tier)
        if state is not None:
            conditions.append(StoredCandidate.state == state)
        with self.catalog.session() as s:
            total = int(s.scalar(select(func.count(StoredCandidate.id)).where(*conditions)) or 0)
            rows = list(s.scalars(select(StoredCandidate).where(*conditions)
                                  .order_by(StoredCandidate.minor_policy.desc(),
                                            StoredCandidate.created_at, StoredCandidate.id)
                                  .offset(offset).limit(limit)))
        return rows, total

    def get(self, candidate_id: int, requested_by: str | None = None
            ) -> tuple[StoredCandidate, list[DecisionView]]:
        """One candidate and its decisions.

        With ``requested_by``, only a candidate that account's own matches
        produced is returned; any other is NotFound, exactly like one that does
        not exist. Candidate ids are sequential, so without this an
        investigator could walk every id and learn which queries of other
        cases matched which pseudonymous subject, with scores and evidence.
        The outcome of one's own query is what an investigator needs to act on.
        """
        with self.catalog.session() as s:
            row = s.get(StoredCandidate, candidate_id)
            if row is None or (requested_by is not None and not self._requested(s, row, requested_by)):
                raise NotFound("candidate_not_found", f"no candidate {candidate_id}")
            decisions = list(s.scalars(select(ReviewDecision)
                                       .where(ReviewDecision.candidate_id == candidate_id)
                                       .order_by(ReviewDecision.id)))
        return row, [self._view(d) for d in decisions]

    @staticmethod
    def _requested(s: Session, row: StoredCandidate, requester: str) -> bool:
        if row.created_by == requester:  # also covers candidates stored before the table existed
            return True
        return s.scalar(select(CandidateRequester.id).where(
            CandidateRequester.candidate_id == row.id, CandidateRequester.requester == requester)
        ) is not None

    def counts(self) -> dict[str, int]:
        """Candidates per state (for metrics and the queue page)."""
        with self.catalog.session() as s:
            rows = s.execute(select(StoredCandidate.state, func.count(StoredCandidate.id))
                             .group_by(StoredCandidate.state)).all()
        out = dict.fromkeys(STATES, 0)
        out.update({str(state): int(n) for state, n in rows})
        return out

    # --- revealing ---------------------------------------------------------------
    @staticmethod
    def reveal_required(row: StoredCandidate, bank: Bank | None) -> bool:
        """Whether confirming ``row`` needs its reference photo revealed to the reviewer first."""
        return bool(row.minor_policy) or (bank is not None and bank.kind in REVEAL_KINDS)

    def record_reveal(self, candidate_ids: Iterable[int], reviewer: str) -> int:
        """Record that ``reviewer`` saw the reference photo of these candidates; returns how many are new.

        Called after the photo was served by an audited route; unknown ids are
        skipped (a candidate withdrawn meanwhile).
        """
        added = 0
        with self.catalog.session() as s:
            for cid in sorted(set(candidate_ids)):
                if s.get(StoredCandidate, cid) is None or self._revealed(s, cid, reviewer):
                    continue
                s.add(CandidateReveal(candidate_id=cid, reviewer=reviewer, at=utcnow()))
                added += 1
        return added

    def record_subject_reveal(self, subject_id: int, item_id: int, reviewer: str) -> int:
        """A reviewer saw photo ``item_id`` of a subject: every candidate against that photo counts."""
        with self.catalog.session() as s:
            ids = list(s.scalars(select(StoredCandidate.id).where(
                StoredCandidate.subject_id == subject_id, StoredCandidate.ref_item_id == item_id)))
        return self.record_reveal(ids, reviewer)

    def has_revealed(self, candidate_id: int, reviewer: str) -> bool:
        with self.catalog.session() as s:
            return self._revealed(s, candidate_id, reviewer)

    @staticmethod
    def _revealed(s: Session, candidate_id: int, reviewer: str) -> bool:
        return s.scalar(select(CandidateReveal.id).where(
            CandidateReveal.candidate_id == candidate_id, CandidateReveal.reviewer == reviewer)) is not None

    # --- deciding --------------------------------------------------------------
    def decide(self, candidate_id: int, reviewer: str, role: str, action: str,
               note: str = "") -> tuple[StoredCandidate, DecisionView]:
        """Apply ``action`` by ``reviewer``; raises NotFound, Conflict or ValueError.

        The new state is written only if the candidate is still at the state
        and version it was computed from (see the module's concurrency rule);
        otherwise Conflict ``decided_meanwhile`` and nothing is recorded.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
        if len(note) > MAX_NOTE:
            raise ValueError(f"a note may hold at most {MAX_NOTE} characters")
        text_rules.check(note, "note", multiline=True)  # BadText (a ValueError): HTTP 422 bad_text
        with self.catalog.session() as s:
            row, previous = _with_history(s, candidate_id)
            seen_state, seen_version = row.state, int(row.version or 0)
            new_state = self._transition(row, previous, reviewer, action)
            if action == "confirm" and self.reveal_required(row, s.get(Bank, row.bank_id)) \
                    and not self._revealed(s, row.id, reviewer):
                raise Conflict("reveal_required",
                               f"look at the reference photo of candidate {row.id} before confirming it "
                               "(a person is named only by someone who has seen both photos): "
                               "reveal it on the candidate page, or fetch GET /v1/subjects/"
                               "{pseudonym}/photos/{ref_item}, which is audited")
            now = utcnow()
            _advance(s, row.id, seen_state, seen_version, new_state, now)
            if new_state == CONFIRMED:  # the alert is stored with the confirmation or not at all
                outbox.enqueue_confirmed(s, row, now)
            decision = ReviewDecision(candidate_id=row.id, reviewer=reviewer, role=role,
                                      action=action, state_after=new_state,
                                      note=self._seal_note(row.id, note), at=now)
            s.add(decision)
            s.flush()
            s.refresh(row)
            view = self._view(decision)
        return row, view

    def reopen(self, candidate_id: int, actor: str, role: str, reason: str,
               now: dt.datetime | None = None) -> tuple[StoredCandidate, DecisionView]:
        """Undo the caller's own latest decision, or (an admin) reopen a decided candidate.

        A reviewer's undo puts the candidate back in the state before their
        decision, within :data:`UNDO_WINDOW`; an admin's reopen puts it back to
        pending at any time. ``reason`` is required (it is the decision's note,
        sealed like every note). Raises NotFound, NotAllowed (403), Conflict
        (409: nothing to undo, already open, alert already sent, or decided
        meanwhile) or ValueError (no reason).
        """
        reason = reason.strip()
        if not reason:
            raise ValueError("a reason is required to undo or reopen a decision")
        if len(reason) > MAX_NOTE:
            raise ValueError(f"a reason may hold at most {MAX_NOTE} characters")
        text_rules.check(reason, "reason", multiline=True)
        now = now or utcnow()
        with self.catalog.session() as s:
            row, previous = _with_history(s, candidate_id)
            action, new_state = self._reopen_target(row, previous, actor, role, now)
            seen_state, seen_version = row.state, int(row.version or 0)
            if seen_state == CONFIRMED and new_state != CONFIRMED and not outbox.withdraw_unsent(s, row.id):
                raise Conflict("alert_sent", f"the alert of candidate {row.id} has been sent or "
                               "acknowledged; its owner records the outcome on the alert instead")
            _advance(s, row.id, seen_state, seen_version, new_state, now)
            decision = ReviewDecision(candidate_id=row.id, reviewer=actor, role=role, action=action,
                                      state_after=new_state, note=self._seal_note(row.id, reason), at=now)
            s.add(decision)
            s.flush()
            s.refresh(row)
            view = self._view(decision)
        return row, view

    @staticmethod
    def _reopen_target(row: StoredCandidate, previous: list[ReviewDecision], actor: str, role: str,
                       now: dt.datetime) -> tuple[str, str]:
        """(action, state) of an undo or reopen, or the reason it is refused."""
        if role in REOPEN_ROLES:
            if row.state == PENDING:
                raise Conflict("already_open", f"candidate {row.id} is already pending")
            return REOPEN, PENDING
        last = previous[-1] if previous else None
        if last is None or last.action not in ACTIONS:
            raise Conflict("nothing_to_undo", f"candidate {row.id} has no decision to undo")
        if last.reviewer != actor:
            raise NotAllowed("not_your_decision", "only the reviewer who took the latest decision may "
                                                  "undo it; an admin may reopen the candidate")
        if now - last.at > UNDO_WINDOW:
            minutes = int(UNDO_WINDOW.total_seconds() // 60)
            raise NotAllowed("undo_window_passed", f"a decision can be undone within {minutes} minutes; "
                                                   "ask an admin to reopen the candidate")
        before = previous[-2].state_after if len(previous) > 1 else PENDING
        return UNDO, before

    @staticmethod
    def _transition(row: StoredCandidate, previous: list[ReviewDecision], reviewer: str,
                    action: str) -> str:
        if row.state in (CONFIRMED, REJECTED):
            raise Conflict("already_decided", f"candidate {row.id} is already {row.state}")
        if action == "escalate":
            if row.state == ESCALATED:
                raise Conflict("already_escalated", f"candidate {row.id} is already escalated")
            return ESCALATED
        if action == "reject":
            return ESCALATED if row.state == AWAITING_SECOND else REJECTED
        # confirm
        if row.required_reviews <= 1:
            return CONFIRMED
        if row.state == AWAITING_SECOND:
            first = next((d.reviewer for d in reversed(previous)
                          if d.state_after == AWAITING_SECOND and d.action == "confirm"), None)
            if first == reviewer:
                raise Conflict("second_reviewer_required",
                               "a different reviewer must give the second confirmation")
            return CONFIRMED
        return AWAITING_SECOND

    # --- consent withdrawal ------------------------------------------------------
    def purge_subject(self, s: Session, subject_id: int) -> list[str]:
        """Delete every candidate of a subject (and its decisions, notes and alerts) in ``s``.

        Returns the query-photo tokens no other candidate refers to any more,
        for the caller to delete after the commit.
        """
        rows = s.execute(select(StoredCandidate.id, StoredCandidate.query_photo)
                         .where(StoredCandidate.subject_id == subject_id)).all()
        ids = [int(r[0]) for r in rows]
        tokens = {str(r[1]) for r in rows if r[1]}
        if not ids:
            return []
        alert_ids = select(outbox.Alert.id).where(outbox.Alert.candidate_id.in_(ids))
        s.execute(delete(outbox.AlertDelivery).where(outbox.AlertDelivery.alert_id.in_(alert_ids)))
        s.execute(delete(outbox.Alert).where(outbox.Alert.candidate_id.in_(ids)))
        s.execute(delete(ReviewDecision).where(ReviewDecision.candidate_id.in_(ids)))
        s.execute(delete(CandidateRequester).where(CandidateRequester.candidate_id.in_(ids)))
        s.execute(delete(CandidateReveal).where(CandidateReveal.candidate_id.in_(ids)))
        s.execute(delete(StoredCandidate).where(StoredCandidate.id.in_(ids)))
        still_used = set(s.scalars(select(StoredCandidate.query_photo)
                                   .where(StoredCandidate.query_photo.in_(tokens)))) if tokens else set()
        return sorted(tokens - still_used)

    # --- notes ----------------------------------------------------------------
    def _seal_note(self, candidate_id: int, note: str) -> bytes:
        data = note.encode("utf-8")
        if self.cipher is None or not data:
            return data
        return self.cipher.encrypt(data, f"note:{candidate_id}".encode())

    def _view(self, d: ReviewDecision) -> DecisionView:
        blob = bytes(d.note or b"")
        if is_sealed(blob):
            try:
                text = self.cipher.decrypt(blob, f"note:{d.candidate_id}".encode()).decode("utf-8") \
                    if self.cipher is not None else "[sealed: no key configured]"
            except DecryptionFailed:
                text = "[sealed: does not open with the configured key]"
        else:
            text = blob.decode("utf-8", errors="replace")
        return DecisionView(reviewer=d.reviewer, role=d.role, action=d.action,
                            state_after=d.state_after, note=text, at=d.at)


def _advance(s: Session, candidate_id: int, seen_state: str, seen_version: int, new_state: str,
             now: dt.datetime) -> None:
    """Move a candidate on only if nobody else did since it was read (optimistic version check).

    The UPDATE's WHERE is the lock: of two reviewers deciding at once exactly one
    row is written, on SQLite and on PostgreSQL alike, and the other is told.
    """
    written = s.execute(
        update(StoredCandidate)
        .where(StoredCandidate.id == candidate_id, StoredCandidate.version == seen_version,
               StoredCandidate.state == seen_state)
        .values(state=new_state, version=seen_version + 1, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if written != 1:
        raise Conflict("decided_meanwhile", f"candidate {candidate_id} was decided by someone else "
                                            "meanwhile; look at its new state and decide again")


def _with_history(s: Session, candidate_id: int) -> tuple[StoredCandidate, list[ReviewDecision]]:
    """A candidate and its decisions, oldest first, read in the session that will change it."""
    row = s.get(StoredCandidate, candidate_id)
    if row is None:
        raise NotFound("candidate_not_found", f"no candidate {candidate_id}")
    previous = list(s.scalars(select(ReviewDecision).where(ReviewDecision.candidate_id == candidate_id)
                              .order_by(ReviewDecision.id)))
    return row, previous
