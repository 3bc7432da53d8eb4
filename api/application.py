"""The application layer: the rules every front end obeys, held by one object.

The CLI verbs, the HTTP service (:class:`api.service.Service` extends this
class), the reviewer pages and batch jobs all open an :class:`Application`
over a data folder and go through it for what must not drift between them:

- encryption at rest: :meth:`Application.require_key` is the one check that a
  bank holding missing persons is never written or searched without
  ``REUNITE_ENCRYPTION_KEY`` (fail closed; the service runs it for every bank
  at start, a CLI verb for the banks it touches);
- the audit trail: every action ends in :meth:`Application.record` (the HTTP
  middleware records each request through the same ``AuditLog.append``), and
  :meth:`Application.audited` wraps a CLI action so that it leaves an event
  whether it succeeds, is refused or fails, as a request does;
- consent: expired subjects are dropped inside the matcher
  (:mod:`matcher.privacy.consent`), so every caller of :attr:`Application.matcher`
  gets the same answer.

A CLI action is attributed to ``cli:<unix user>`` with role ``admin``: whoever
can reach the data folder is its admin of last resort.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.audit import AuditLog
from indexer.crypto import KEY_ENV, Cipher, MissingKey
from indexer.store.catalog import Bank
from indexer.store.photos import PhotoStore, needs_encryption
from indexer.store.store import Store
from indexer.text import with_article

if TYPE_CHECKING:  # imported on first use: a crawl's `reunite index` queues nothing where no bank watches
    from matcher.review.outbox import AlertBook
    from matcher.review.queue import ReviewQueue
    from matcher.search.query import Matcher

ADMIN_ROLE = "admin"
MAX_BULK = 200  # one queue page is 25; a bulk action is a page or a few, never "everything"


@dataclass(frozen=True)
class BulkOutcome:
    """One candidate of a bulk action: its new state, or the code it was refused with."""

    candidate_id: int
    state: str | None
    error: str | None


@dataclass(frozen=True)
class Actor:
    """Who an audit event names: a key's name (HTTP) or ``cli:<user>`` (command line)."""

    name: str
    role: str


def cli_actor() -> Actor:
    """The actor of a command-line action (the convention shared by every verb)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = f"uid-{os.getuid()}"
    return Actor(f"cli:{user}", ADMIN_ROLE)


@dataclass
class AuditNote:
    """What an action adds to its event while it runs: the object, details, the result."""

    obj: str
    detail: dict[str, Any] = field(default_factory=dict)
    result: str | None = None

    def refuse(self, code: str) -> None:
        """Mark the action refused (bad input, missing key); the event is still written."""
        self.result = "rejected"
        self.detail["error"] = code


class Application:
    """Store, cipher, audit log, review queue, photo store and matcher of one data folder."""

    def __init__(self, data_dir: Path, catalog_url: str | None = None,
                 environ: Mapping[str, str] | None = None, *,
                 second_review_missing_person: bool = True) -> None:
        import api.api_keys  # noqa: F401 - registers the api_keys table on Base (no FastAPI: a CLI start)

        self.data_dir = Path(data_dir)
        self.environ = dict(os.environ if environ is None else environ)
        self.cipher = Cipher.from_env(self.environ)
        # The catalog: the caller's URL, else $REUNITE_CATALOG_URL, else the SQLite file in the folder.
        # The vectors: $REUNITE_VECTORS_URL (milvus://HOST:PORT), else FAISS files in the folder.
        self.store = Store(self.data_dir, catalog_url or self.environ.get("REUNITE_CATALOG_URL") or None,
                           self.environ.get("REUNITE_VECTORS_URL") or None)
        self.audit = AuditLog(self.store.catalog, self.data_dir, self.environ)
        self.second_review_missing_person = second_review_missing_person
        self.photos = PhotoStore(self.data_dir, self.cipher)

    @cached_property
    def review(self) -> ReviewQueue:
        """The review queue (:mod:`matcher.review.queue`), made on first use: its tables and rules are
        not imported by the runs that never queue (a crawl no bank watches, ``banks``)."""
        from matcher.review.queue import ReviewQueue

        return ReviewQueue(self.store.catalog, self.cipher, self.second_review_missing_person)

    @cached_property
    def matcher(self) -> Matcher:
        from matcher.search.query import Matcher

        return Matcher(self.store)

    @cached_property
    def alerts(self) -> AlertBook:
        """Cases' alerts, their deliveries and subscribers (the outbox of :mod:`matcher.review.outbox`)."""
        from matcher.review.outbox import AlertBook

        return AlertBook(self.store.catalog, self.cipher)

    # --- the one path into the review queue ------------------------------------------

    def match_image(self, data: bytes, sha256: str, banks: list[Bank], top: int,
                    requested_by: str) -> tuple[list[Any], dict[int, int]]:
        """Match one image against ``banks`` and queue what needs a person: (candidates, queued).

        ``POST /v1/match``, the search page of the reviewer web pages and
        ``reunite match`` take this one call, so a search from the browser
        queues exactly what the API would. Raises :class:`indexer.images.ImageError`.
        """
        candidates = self.matcher.match(data, banks, top=top)  # consent: matcher.privacy.consent
        queued = self.queue_candidates(candidates, banks, sha256, data, requested_by)
        return candidates, queued

    def queue_candidates(self, candidates: list[Any], banks: list[Bank], query_sha256: str,
                         query_data: bytes, requested_by: str,
                         context: dict[str, Any] | None = None) -> dict[int, int]:
        """Put a query's candidates at match or review into the queue; {position: candidate id}.

        HTTP match, ``reunite match``, the watch of a crawl and the back-search of an
        enrolment all come here, so they cannot drift: the query image is kept (sealed
        when a key is configured) only when something is queued, once per image, and
        :meth:`matcher.review.queue.ReviewQueue.record` keeps one row per image x subject.
        """
        from matcher.review.queue import QUEUED_TIERS

        if not any(c.decision in QUEUED_TIERS for c in candidates):
            return {}
        token = self.query_photo(query_sha256, query_data)
        return self.review.record(candidates, {b.name: b for b in banks}, query_sha256, requested_by,
                                  token, context)

    def query_photo(self, sha256: str, data: bytes) -> str:
        """The photo-store token of a query image: the one kept earlier for it, else a new one."""
        from sqlalchemy import select

        from indexer.store.photos import QUERY_NAMESPACE
        from matcher.review.queue import StoredCandidate

        with self.store.catalog.session() as s:
            token = s.scalar(select(StoredCandidate.query_photo).where(
                StoredCandidate.query_sha256 == sha256, StoredCandidate.query_photo.is_not(None)).limit(1))
        if token and self.photos.exists(QUERY_NAMESPACE, token):
            return token
        return self.photos.put(QUERY_NAMESPACE, data, encrypt=self.cipher is not None)

    # --- decisions several at once, undo and reopen, export --------------------------

    def bulk_reject(self, actor: Actor, candidate_ids: list[int], note: str = "",
                    via: str | None = None) -> list[BulkOutcome]:
        """Reject each candidate in turn: one decision and one audit event per candidate.

        A protected child's candidate (matcher.privacy.minors) is never rejected in bulk:
        it is refused with ``minor_policy`` and must be decided on its own page.
        Each candidate succeeds or fails alone (a conflict on one leaves the others
        decided); the outcomes come back in the order asked.
        """
        from matcher.review import queue as review

        if len(candidate_ids) > MAX_BULK:
            raise ValueError(f"at most {MAX_BULK} candidates at once")
        out: list[BulkOutcome] = []
        for cid in dict.fromkeys(candidate_ids):
            with self.audited(actor, "review.decide", f"candidate:{cid}", decision="reject", bulk=True,
                              via=via) as event:
                try:
                    row, _decisions = self.review.get(cid)
                    if row.minor_policy:
                        raise review.Conflict("minor_policy", "a protected child's candidate is decided "
                                                              "on its own page, not in bulk")
                    row, _view = self.review.decide(cid, actor.name, actor.role, "reject", note)
                except review.ReviewError as exc:
                    event.refuse(exc.code)
                    out.append(BulkOutcome(cid, None, exc.code))
                    continue
                event.detail["state"] = row.state
                out.append(BulkOutcome(cid, row.state, None))
        return out

    def reopen(self, actor: Actor, candidate_id: int, reason: str, via: str | None = None) -> Any:
        """Undo one's own latest decision (reviewers, within the window) or reopen (admins); audited.

        The reason is sealed with the decision (it is a case note) and never
        written into the audit event, which records who, which candidate and
        the new state. Raises what :meth:`matcher.review.queue.ReviewQueue.reopen` raises.
        """
        from matcher.review import queue as review

        refused: Exception | None = None
        with self.audited(actor, "review.reopen", f"candidate:{candidate_id}", via=via) as event:
            try:
                row, view = self.review.reopen(candidate_id, actor.name, actor.role, reason)
            except (review.ReviewError, ValueError) as exc:
                event.refuse(getattr(exc, "code", "bad_reason"))
                refused = exc
            else:
                event.detail.update(transition=view.action, state=row.state)
        if refused is not None:
            raise refused
        return row

    def export_confirmed(self, actor: Actor, fmt: str, bank: Bank | None = None,
                         via: str | None = None) -> tuple[str, str, int]:
        """(body, media type, rows) of the confirmed matches (:mod:`matcher.review.export`); audited."""
        from matcher.review import export as review_export

        with self.audited(actor, "review.export", f"bank:{bank.name}" if bank else "queue", format=fmt,
                          via=via) as event:
            if fmt in review_export.FORMATS:
                matches = review_export.confirmed(self.store.catalog, bank.id if bank else None)
                body, media = review_export.render(matches, fmt)
                event.detail["rows"] = len(matches)
            else:
                event.refuse("bad_format")
        if event.result == "rejected":
            raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(review_export.FORMATS)})")
        return body, media, len(matches)

    # --- encryption at rest -------------------------------------------------------

    def require_key(self, kind: str, policy: dict | None = None, bank: str | None = None) -> None:
        """Raise MissingKey (one line naming the variable) when this bank needs the key and none is set."""
        if self.cipher is None and needs_encryption(kind, policy):
            which = f"bank {bank!r}" if bank else f"{with_article(kind)} bank"
            raise MissingKey(f"{which} holds missing-person data that is encrypted at rest, and {KEY_ENV} "
                             f"is not set; set it to the key the data is written with (32 bytes, urlsafe "
                             f"base64; `reunite keys generate-encryption-key` makes one)")

    def require_keys(self, banks: list[Bank]) -> None:
        for bank in banks:
            self.require_key(bank.kind, bank.policy, bank.name)

    def refuse_without_key(self) -> None:
        """The service's start: refuse when any bank needs the key and none is set."""
        if self.cipher is not None:
            return
        needing = [b.name for b in self.store.catalog.banks() if needs_encryption(b.kind, b.policy)]
        if needing:
            raise MissingKey(
                f"refusing to start: bank(s) {', '.join(needing)} hold missing-person data that is "
                f"encrypted at rest, and {KEY_ENV} is not set. Set it to the key the data was "
                f"written with (32 bytes, urlsafe base64).")

    # --- the audit trail ------------------------------------------------------------

    def record(self, actor: Actor, action: str, obj: str, result: str = "ok", **detail: Any) -> None:
        """Append one event (subjects are named by keyed refs, see :mod:`api.audit`)."""
        self.audit.append(actor.name, actor.role, action, obj, result,
                          {k: v for k, v in detail.items() if v is not None})

    @contextmanager
    def audited(self, actor: Actor, action: str, obj: str, **detail: Any) -> Iterator[AuditNote]:
        """Run an action and record it: "ok", the result it set, or "error" when it raised.

        An exit raised on purpose (a CLI ``typer.Exit`` with a non-zero code) counts as a
        refusal, like a 4xx answer.
        """
        note = AuditNote(obj, dict(detail))
        try:
            yield note
        except KeyboardInterrupt:
            self.record(actor, action, note.obj, "interrupted", **note.detail)
            raise
        except Exception as exc:
            code = getattr(exc, "exit_code", None)
            if code == 0:
                result = note.result or "ok"
            elif code is not None:
                result = note.result or "rejected"
            else:
                result = "error"
                note.detail.setdefault("error", type(exc).__name__)
            self.record(actor, action, note.obj, result, **note.detail)
            raise
        self.record(actor, action, note.obj, note.result or "ok", **note.detail)
