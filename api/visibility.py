"""Who may see what: the one place that turns catalog rows into role-specific answers.

Visibility table (``-`` = never sent to that role)::

    field                               admin  reviewer  investigator  ingest  partner
    bank name, kind                       y       y          y           y       y (searched banks only)
    subject pseudonym (S-...)             y       y          y           -       -
    subject label (ads, venues)           y       y          y           -       -
    subject label (missing_person: a      y       y          -           -       -
      case code, never a name)
    personal fields (case reference,      y       y          -           -       -
      consent record, name, notes)
    date_of_birth, minor (sealed, read    -       -          -           -       -
      by nobody: minor_policy says it)
    consent expiry                        y       y          -           -       -
    venue details (name, address, room)   y       y          y           -       -
    item ids, evidence, scores            y       y          y      own ingests  evidence + scores
    reference photo bytes (audited)       y       y          -           -       -
    query image of a candidate (audited)  y       y          -           -       -
    review decisions: who, when, state    y       y          y (outcome, -       -
                                                           own queries)
    review notes                          y       y          -           -       -
      (blind second review: while a
      candidate awaits its second
      reviewer, a reviewer or admin who
      has not decided it sees no earlier
      decision, reviewer or note)
    opaque partner ref (R-...)            -       -          -           -       y
    HMA bank_content_id                 item      -        item          -    opaque integer
      (api/http/routes/hma.py)                 id                 id                (53 bits of the ref)
    HMA index status (hash count and      y       -          y           -    y (searchable banks only)
      newest indexed time per signal)
    alerts of confirmed matches (case     y       y          y (cases    -       -
      ref, pseudonym, timeline, webhook                     it owns)
      delivery state)
    evidence report (hashes, evidence,    y       y          y (cases    -       -
      reviews, audit chain; reviewer      (names)  (names)    it owns,
      names as for review decisions)                        no names)
    cases (title, owner, subjects)        y       -          y (own)     -       -
    privacy releases (noisy tables,       y       -          -           -       -
      the budget ledger: routes/stats.py)
    minors' regime (minor_policy flag)    y       y          y           -       -
      (never an age or a date of birth)
    ads carrying a contact (GET           y       -          y           -       -
      /v1/search: ad labels, item ids,
      text read and its box; ads banks
      only, never a reference bank)
    which ads banks a watcher bank        y       -          -           -       -
      watches (GET/PUT /v1/banks/{bank}/
      watches: routes/watches.py)

An HMA client expects an integer ``bank_content_id``; a partner's is the top
53 bits of its R- ref (a JSON-safe integer, stable, and the same subject as
the ref), so it names nothing in the catalog and cannot be counted up.

Why: investigators act on *that* a case matched, reviewers must see *who* to
decide, partners only learn that a hash they hold is known to us (and contact
us with the opaque ref). A missing person's label is a case code (stored in
clear, unique per bank, as `reunite enroll` stores it); everything personal is
in the sealed fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from api.auth import ADMIN, INVESTIGATOR, REVIEWER
from indexer import age, privacy
from indexer.crypto import DecryptionFailed, MissingKey
from indexer.store.catalog import Bank, Item, Subject
from matcher.privacy import minors
from matcher.review.queue import AWAITING_SECOND, DecisionView, ReviewQueue, StoredCandidate
from matcher.search.query import Candidate

IDENTITY_ROLES = frozenset({ADMIN, REVIEWER})
PSEUDONYM_ROLES = frozenset({ADMIN, REVIEWER, INVESTIGATOR})
PEOPLE_KINDS = frozenset({"missing_person"})
# Roles that read only the candidates their own matches produced (others answer 404):
# candidate ids are sequential, and the outcome of another case's query is not theirs to see.
OWN_CANDIDATES_ROLES = frozenset({INVESTIGATOR})


def reads_own_candidates_only(role: str) -> bool:
    return role in OWN_CANDIDATES_ROLES


def may_see_identity(role: str) -> bool:
    return role in IDENTITY_ROLES


def partner_may_search(bank: Bank) -> bool:
    """Whether partners' hash lookups search ``bank``: its policy ``partner_lookup``, else by kind.

    Fails closed for banks of people: a hit would tell a partner "this hash is
    a missing person", so a missing-person bank is searched by partners only
    when its policy says ``partner_lookup: true``.
    """
    configured = (bank.policy or {}).get("partner_lookup")
    if configured is not None:
        return bool(configured)
    return bank.kind not in PEOPLE_KINDS


def _label(bank_kind: str, label: str | None, role: str) -> str | None:
    if label is None or role not in PSEUDONYM_ROLES:
        return None
    if bank_kind in PEOPLE_KINDS and role not in IDENTITY_ROLES:
        return None
    return label


def iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value is not None else None


def personal_fields(subject: Subject) -> dict[str, Any]:
    """The subject's personal fields, or a marker when they cannot be opened.

    ``date_of_birth`` and ``minor`` stay sealed in every read, for every role:
    answers carry the regime as the ``minor_policy`` flag only (issue 20), so
    no front end can show an age. They are dropped here, the one place
    personal fields are opened for display, and nowhere else.
    """
    try:
        opened = privacy.unseal(subject.personal)
    except (MissingKey, DecryptionFailed):
        return {"_sealed": "the configured key does not open these fields"}
    return {k: v for k, v in opened.items() if k not in age.COLUMNS}


def subject_view(subject: Subject, bank: Bank, role: str, items: list[Item]) -> dict[str, Any]:
    identity = may_see_identity(role)
    return {
        "pseudonym": subject.pseudonym,
        "bank": bank.name,
        "kind": bank.kind,
        "label": _label(bank.kind, subject.label, role),
        "attributes": dict(subject.attributes or {}),
        "personal": personal_fields(subject) if identity else None,
        "consent_expires": iso(subject.consent_expires) if identity else None,
        # The minors' regime as a flag on the day of the read (never an age or a date of birth).
        "minor_policy": minors.is_protected(subject),
        "photos": [{"item": it.id, "width": it.width, "height": it.height, "format": it.format}
                   for it in items],
        "created_at": iso(subject.created_at),
    }


def match_view(cand: Candidate, bank_kind: str, role: str, candidate_id: int | None) -> dict[str, Any]:
    """A ranked candidate for investigators / admins (the CLI's format, minus identities)."""
    return {
        "bank": cand.bank,
        "pseudonym": cand.pseudonym if role in PSEUDONYM_ROLES else None,
        "label": _label(bank_kind, cand.label, role),
        "item": cand.item,
        "score": round(cand.score, 4),
        "decision": cand.decision,
        "evidence": cand.evidence,
        "candidate_id": candidate_id,
        "minor_policy": cand.minor_policy,  # a protected child (matcher.privacy.minors): a flag, never an age
    }


def partner_view(cand: Candidate, opaque_ref: str) -> dict[str, Any]:
    return {"ref": opaque_ref, "bank": cand.bank, "score": round(cand.score, 4),
            "decision": cand.decision, "evidence": cand.evidence}


OPAQUE_INT_BITS = 53  # the largest integers JSON clients (JavaScript) read exactly


def opaque_int(opaque_ref: str) -> int:
    """The top 53 bits of an ``R-<hex>`` partner ref, as an integer."""
    digits = opaque_ref.removeprefix("R-")
    return int(digits, 16) >> (4 * len(digits) - OPAQUE_INT_BITS)


def hma_content_id(cand: Candidate, role: str, opaque_ref: Callable[[], str]) -> int:
    """HMA's ``bank_content_id`` of a candidate: the item id for roles that may see item ids,
    an opaque integer for everyone else (partners). ``opaque_ref`` makes the candidate's opaque
    reference (an HMAC), only for the roles that get it."""
    if role in PSEUDONYM_ROLES:
        return cand.item
    return opaque_int(opaque_ref())


def decision_view(d: DecisionView, role: str) -> dict[str, Any]:
    return {"reviewer": d.reviewer if may_see_identity(role) else None, "action": d.action,
            "state_after": d.state_after, "note": d.note if may_see_identity(role) else None,
            "at": iso(d.at)}


# Roles that decide candidates: while a candidate awaits its second reviewer they review blind.
DECIDING_ROLES = IDENTITY_ROLES


def blind_review(row: StoredCandidate, role: str, viewer: str | None,
                 decisions: list[DecisionView]) -> bool:
    """Whether ``viewer`` must decide without seeing the earlier decisions of ``row``.

    Why: a second reviewer who reads "confirmed by a senior colleague: same
    scar" confirms what they were told, and the two-reviewer rule for missing
    persons is only worth something when the second look is independent. So,
    while a candidate awaits its second reviewer, a reviewer or admin who has
    not decided it yet is shown no decision, reviewer or note (they are shown
    again once that viewer decided, or the candidate moved on: confirmed,
    or escalated because the two disagreed, when the history is what the
    person resolving it needs). Fails closed: an unknown viewer is blind.
    The state itself still says that one confirmation was given (the
    lifecycle reaches ``awaiting_second`` no other way); who gave it, when and
    why stay hidden.
    """
    if row.state != AWAITING_SECOND or role not in DECIDING_ROLES:
        return False
    return viewer is None or all(d.reviewer != viewer for d in decisions)


def candidate_view(row: StoredCandidate, bank: Bank, subject: Subject | None, role: str,
                   decisions: list[DecisionView] | None = None, *, viewer: str | None = None,
                   revealed: bool | None = None) -> dict[str, Any]:
    """A stored candidate as ``role`` (the principal ``viewer``) may see it.

    ``revealed``: whether ``viewer`` has revealed the reference photo (None: not asked).
    """
    identity = may_see_identity(role)
    decisions = list(decisions or [])
    blind = blind_review(row, role, viewer, decisions)
    return {
        "id": row.id,
        "bank": bank.name,
        "kind": bank.kind,
        "pseudonym": subject.pseudonym if subject is not None else None,
        "label": _label(bank.kind, subject.label if subject else None, role),
        # A review shows the minors' regime as a flag (minor_policy), never the age behind it.
        "personal": personal_fields(subject)
        if identity and subject is not None and bank.kind in PEOPLE_KINDS else None,
        "ref_item": row.ref_item_id,
        "query_sha256": row.query_sha256,
        "has_query_image": bool(row.query_photo),
        "score": round(row.score, 4),
        "tier": row.tier,
        "evidence": row.evidence or {},
        "context": row.context,  # the watched ad this came from (a public ad, never a person)
        "state": row.state,
        "required_reviews": row.required_reviews,
        "minor_policy": bool(row.minor_policy),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "decisions": [] if blind else [decision_view(d, role) for d in decisions],
        "blind_review": blind,
        "decisions_hidden": len(decisions) if blind else 0,
        # Confirming needs the reference photo revealed by the one confirming (matcher.review.queue).
        "reveal_before_confirm": ReviewQueue.reveal_required(row, bank),
        "revealed": revealed,
    }
