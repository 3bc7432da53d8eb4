"""Children: a stricter regime for subjects under 18, applied inside the matcher.

Face models are weakest on minors, and a false match of a child is the most
harmful mistake this tool can make. So while a subject is protected:

- its candidates never reach ``match`` (at most ``review``): applied by
  :func:`apply_minor_policy` after every searcher, in
  :meth:`matcher.search.query.Matcher.match_query` and :func:`matcher.search.hashes.match_hashes`,
  beside the consent filter, so no caller (CLI, HTTP, web pages, batch jobs) can skip it;
- the candidate carries ``minor_policy=True``, which the review queue turns into
  two required reviewers and first place in the queue (:mod:`matcher.review.queue`), and
  the reveal of its reference photo into a mandatory written reason (api layer);
- answers say ``minor_policy: true``, never an age or a date.

How the matcher knows without the key: the coarse clear column
``Subject.protected_until``; the rule and its privacy trade-off are in :mod:`indexer.age`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from indexer import text as text_rules
from indexer.store.catalog import Subject
from indexer.store.store import Store
from matcher.search import decide

if TYPE_CHECKING:
    from matcher.search.query import Candidate


def is_protected(subject: Subject | None, today: dt.date | None = None) -> bool:
    """Whether a loaded subject is under the minors' regime on ``today`` (UTC by default)."""
    until = getattr(subject, "protected_until", None)
    return until is not None and _today(today) < until


def protected_subjects(store: Store, subject_ids: set[int], today: dt.date | None = None) -> set[int]:
    """Those of ``subject_ids`` that are protected on ``today`` (one query, no decryption)."""
    if not subject_ids:
        return set()
    day = _today(today)
    with store.catalog.session() as s:
        rows = store.catalog.subjects(s, subject_ids)
    return {sid for sid, subject in rows.items() if is_protected(subject, day)}


def apply_minor_policy(store: Store, candidates: list[Candidate],
                       today: dt.date | None = None) -> list[Candidate]:
    """``candidates`` with every protected subject's tier capped at ``review`` and flagged (order kept)."""
    protected = protected_subjects(store, {c.subject_id for c in candidates if c.subject_id is not None},
                                   today)
    for cand in candidates:
        if cand.subject_id in protected:
            cand.minor_policy = True
            if cand.decision == decide.MATCH:
                cand.decision = decide.REVIEW
    return candidates


def _today(today: dt.date | None) -> dt.date:
    return today or dt.datetime.now(dt.UTC).date()


MAX_REVEAL_REASON = 120  # the audit log keeps detail texts of at most 120 characters (api.audit)


class ReasonRequired(ValueError):
    """A protected child's reference photo was asked for without a written reason."""

    code = "reveal_reason_required"


def reveal_reason(protected: bool, reason: str | None) -> str | None:
    """The reason to record in the reveal's audit event; raises ReasonRequired or BadText.

    A child's photo is shown only with a written reason (why it must be seen now), which the
    audit event keeps, so that every look at a child's face can be accounted for later. The
    reason is checked like every other text (:mod:`indexer.text`) and bounded; it should say
    why, not who. For an adult the reason is optional and recorded when given.
    """
    text = (reason or "").strip()
    if len(text) > MAX_REVEAL_REASON:
        raise ValueError(f"a reveal reason may hold at most {MAX_REVEAL_REASON} characters")
    text_rules.check(text, "reason", multiline=True)
    if protected and not text:
        raise ReasonRequired("this subject is a protected child: revealing the photo needs a "
                             "written reason (the 'reason' field), which the audit log keeps")
    return text or None
