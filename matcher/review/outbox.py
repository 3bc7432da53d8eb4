"""The alert outbox: a confirmed match becomes an alert row in the catalog, in the confirming transaction.

Why an outbox: a webhook sent from the request that confirmed a match is lost
when the process dies between the commit and the send, and sent twice when it
dies between the send and the bookkeeping. Here the confirmation and its alert
(plus one delivery row per subscriber of the case owner) are written in the
*same* transaction as the state change (:func:`enqueue_confirmed`, called by
:meth:`matcher.review.queue.ReviewQueue.decide`): either the candidate is confirmed
and its alert is stored, or neither. A deliverer (:mod:`api.delivery`) then
sends each due delivery, and marks it delivered with a compare-and-set; a
crash after the send but before the mark is the one case that repeats a send,
and every send carries the alert's idempotency key (``event_id``) so that the
receiver drops the repeat.

Alerts are made for confirmed candidates of banks somebody watches for
(missing persons, venues, imported partner lists: :data:`ALERT_KINDS`), not for
ad-to-ad reposts. A confirmed candidate whose subject has no case, or whose
owner has no subscriber, still gets its alert row: it shows as undeliverable
in the API and the reviewer pages rather than vanishing.

The owner acknowledges an alert and records an outcome (:data:`OUTCOMES`);
both are kept here with who and when, for the timeline and the response-time
figures (:mod:`matcher.review.stats`). This module knows nothing of HTTP.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from indexer import text as text_rules
from indexer.crypto import Cipher, is_sealed
from indexer.store.catalog import Bank, Base, Catalog, Item, Subject, utcnow
from matcher.review.cases import Case, Cases, check_owner

ALERT_KINDS = frozenset({"missing_person", "venue", "hashes"})
OUTCOMES = ("action_taken", "not_actionable", "duplicate")
# Delivery states: pending (due at next_attempt_at), delivered, failed (gave up after MAX_ATTEMPTS).
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_ATTEMPTS = 12
MAX_URL = 2000
SECRET_AD = b"webhook-secret"


class WebhookSubscriber(Base):
    """A URL an operator registered for an owner, with its signing secret (sealed when a key is set)."""

    __tablename__ = "webhook_subscribers"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(130), index=True)
    url: Mapped[str] = mapped_column(String(MAX_URL))
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Alert(Base):
    """One confirmed match to tell its case owner about, and what the owner did with it."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: uuid.uuid4().hex)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), unique=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(130), nullable=True, index=True)
    confirmed_at: Mapped[dt.datetime] = mapped_column(DateTime)
    acked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    outcome_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    outcome_by: Mapped[str | None] = mapped_column(String(120), nullable=True)


class AlertDelivery(Base):
    """One alert to one subscriber: the outbox row the deliverer works through."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "subscriber_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscribers.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)


TABLES = [WebhookSubscriber.__table__, Alert.__table__, AlertDelivery.__table__]


class AlertError(ValueError):
    """An alert operation that cannot be done; ``code`` is stable for clients."""

    def __init__(self, code: str, detail: str, status: int = 409) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


def check_url(url: str) -> str:
    """An operator's webhook URL: http(s) with a host, nothing else (no file:, no credentials in it)."""
    url = url.strip()
    text_rules.check(url, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        raise AlertError("bad_url", "a webhook URL must be http:// or https:// with a host", 422)
    if parts.username or parts.password:
        raise AlertError("bad_url", "a webhook URL may not carry credentials; the secret signs it", 422)
    return url


def enqueue_confirmed(s: Session, candidate: Any, now: dt.datetime) -> Alert | None:
    """Store the alert of a candidate that has just become confirmed, inside the caller's transaction.

    Called by ``ReviewQueue.decide`` between its compare-and-set and its commit;
    returns None for banks nobody is alerted about (ads).
    """
    bank = s.get(Bank, candidate.bank_id)
    if bank is None or bank.kind not in ALERT_KINDS:
        return None
    case = Cases.case_of_subject(s, candidate.subject_id)
    alert = Alert(candidate_id=candidate.id, bank_id=bank.id, case_id=case.id if case else None,
                  owner=case.owner if case else None, confirmed_at=now)
    s.add(alert)
    s.flush()
    if alert.owner is not None:
        for sub_id in s.scalars(select(WebhookSubscriber.id).where(
                WebhookSubscriber.owner == alert.owner, WebhookSubscriber.active.is_(True))):
            s.add(AlertDelivery(alert_id=alert.id, subscriber_id=sub_id, next_attempt_at=now))
    return alert


def withdraw_unsent(s: Session, candidate_id: int) -> bool:
    """Delete a confirmed candidate's alert while nobody can have been told; False once someone may have.

    Called by ``ReviewQueue.reopen`` inside its transaction. "Told" fails
    closed: a delivery that was attempted at all (the receiver may have it),
    is claimed by a deliverer right now, or an alert the owner acknowledged or
    closed, keeps the alert and refuses the reopen.
    """
    alert = s.scalar(select(Alert).where(Alert.candidate_id == candidate_id))
    if alert is None:
        return True
    if alert.acked_at is not None or alert.outcome is not None:
        return False
    told = s.scalar(select(func.count(AlertDelivery.id)).where(
        AlertDelivery.alert_id == alert.id,
        or_(AlertDelivery.attempts > 0, AlertDelivery.state != PENDING,
            AlertDelivery.claimed_until.is_not(None))))
    if told:
        return False
    s.execute(AlertDelivery.__table__.delete().where(AlertDelivery.alert_id == alert.id))
    s.delete(alert)
    s.flush()
    return True


def failing_condition() -> ColumnElement[bool]:
    """SQL for :attr:`AlertView.failing`: no owner, no delivery, or none delivered and one tried."""
    deliveries = select(AlertDelivery.id).where(AlertDelivery.alert_id == Alert.id)
    delivered = deliveries.where(AlertDelivery.state == DELIVERED)
    tried = deliveries.where(or_(AlertDelivery.attempts > 0, AlertDelivery.state == FAILED))
    return or_(Alert.owner.is_(None), ~deliveries.exists(),
               and_(~delivered.exists(), tried.exists()))


@dataclass(frozen=True)
class DeliveryView:
    subscriber: int
    url_host: str
    state: str
    attempts: int
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True)
class AlertView:
    """An alert with its case, subject pseudonym, deliveries and the times of its timeline."""

    id: int
    event_id: str
    candidate_id: int
    bank: str
    kind: str
    case_ref: str | None
    owner: str | None
    pseudonym: str | None
    query_sha256: str
    ref_item: int
    first_seen_at: dt.datetime | None
    candidate_at: dt.datetime
    confirmed_at: dt.datetime
    delivered_at: dt.datetime | None
    acked_at: dt.datetime | None
    acked_by: str | None
    outcome: str | None
    outcome_at: dt.datetime | None
    outcome_by: str | None
    deliveries: list[DeliveryView]

    @property
    def delivery(self) -> str:
        """One word for the list pages: delivered, pending, failing, failed, no_owner, no_subscriber."""
        if self.owner is None:
            return "no_owner"
        if not self.deliveries:
            return "no_subscriber"
        if any(d.state == DELIVERED for d in self.deliveries):
            return "delivered"
        if any(d.state == FAILED for d in self.deliveries):
            return "failed"
        return "failing" if any(d.attempts > 0 for d in self.deliveries) else "pending"

    @property
    def failing(self) -> bool:
        return self.delivery in ("failing", "failed", "no_owner", "no_subscriber")


def first_seen(s: Session, query_sha256: str) -> dt.datetime | None:
    """When the matched photo was first indexed anywhere in the catalog (its first sighting in an ad)."""
    return s.scalar(select(func.min(Item.created_at)).join(Bank, Bank.id == Item.bank_id)
                    .where(Item.sha256 == query_sha256, Bank.kind == "ads"))


class AlertBook:
    """Reading, acknowledging and closing alerts; subscribers for the admin."""

    def __init__(self, catalog: Catalog, cipher: Cipher | None = None) -> None:
        self.catalog = catalog
        self.cipher = cipher
        self.cases = Cases(catalog)

    # --- subscribers (admin) --------------------------------------------------------
    def subscribe(self, owner: str, url: str) -> tuple[int, str]:
        """Register ``url`` for ``owner``; returns (id, secret). The secret is shown once."""
        owner, url = check_owner(owner), check_url(url)
        secret = "whsec_" + secrets.token_urlsafe(32)
        blob = secret.encode()
        if self.cipher is not None:
            blob = self.cipher.encrypt(blob, SECRET_AD)
        with self.catalog.session() as s:
            sub = WebhookSubscriber(owner=owner, url=url, secret=blob)
            s.add(sub)
            s.flush()
            return sub.id, secret

    def unsubscribe(self, subscriber_id: int) -> bool:
        with self.catalog.session() as s:
            return bool(s.execute(update(WebhookSubscriber).where(WebhookSubscriber.id == subscriber_id)
                                  .values(active=False)).rowcount)

    def subscribers(self) -> list[WebhookSubscriber]:
        with self.catalog.session() as s:
            return list(s.scalars(select(WebhookSubscriber).order_by(WebhookSubscriber.id)))

    def secret_of(self, sub: WebhookSubscriber) -> bytes:
        blob = bytes(sub.secret)
        if is_sealed(blob):
            if self.cipher is None:
                raise AlertError("missing_key", "the webhook secret is sealed and no key is set", 500)
            return self.cipher.decrypt(blob, SECRET_AD)
        return blob

    # --- reading ----------------------------------------------------------------
    def list(self, owned_by: str | None = None, failing: bool = False, limit: int = 200) -> list[AlertView]:
        """Newest first; with ``owned_by`` only the alerts of cases that key owns (itself or a team)."""
        with self.catalog.session() as s:
            query = select(Alert).order_by(Alert.id.desc()).limit(limit)
            if owned_by is not None:
                query = query.where(Alert.owner.in_(Cases.owners_of(s, owned_by)))
            if failing:
                query = query.where(failing_condition())
            return [self._view(s, a) for a in s.scalars(query)]

    def get(self, alert_id: int, owned_by: str | None = None) -> AlertView:
        with self.catalog.session() as s:
            alert = self._alert(s, alert_id, owned_by)
            return self._view(s, alert)

    def all_views(self) -> list[AlertView]:
        with self.catalog.session() as s:
            return [self._view(s, a) for a in s.scalars(select(Alert).order_by(Alert.id))]

    def failing_count(self) -> int:
        with self.catalog.session() as s:
            return int(s.scalar(select(func.count(Alert.id)).where(failing_condition())) or 0)

    # --- the owner's steps -------------------------------------------------------
    def acknowledge(self, alert_id: int, by: str, owned_by: str | None) -> AlertView:
        """Mark the alert seen by ``by``; a second acknowledgement is refused (409 already_acknowledged)."""
        with self.catalog.session() as s:
            alert = self._alert(s, alert_id, owned_by)
            now = utcnow()
            done = s.execute(update(Alert).where(Alert.id == alert.id, Alert.acked_at.is_(None))
                             .values(acked_at=now, acked_by=by)
                             .execution_options(synchronize_session=False)).rowcount
            if done != 1:
                raise AlertError("already_acknowledged", f"alert {alert_id} was already acknowledged")
            s.refresh(alert)
            return self._view(s, alert)

    def record_outcome(self, alert_id: int, outcome: str, by: str, owned_by: str | None) -> AlertView:
        """Close the alert with ``outcome`` (acknowledging it too when not yet); once only."""
        if outcome not in OUTCOMES:
            raise AlertError("bad_outcome", f"outcome must be one of {', '.join(OUTCOMES)}", 422)
        with self.catalog.session() as s:
            alert = self._alert(s, alert_id, owned_by)
            now = utcnow()
            done = s.execute(update(Alert).where(Alert.id == alert.id, Alert.outcome.is_(None))
                             .values(outcome=outcome, outcome_at=now, outcome_by=by)
                             .execution_options(synchronize_session=False)).rowcount
            if done != 1:
                raise AlertError("outcome_recorded", f"alert {alert_id} already has an outcome")
            s.execute(update(Alert).where(Alert.id == alert.id, Alert.acked_at.is_(None))
                      .values(acked_at=now, acked_by=by).execution_options(synchronize_session=False))
            s.refresh(alert)
            return self._view(s, alert)

    def retry_failed(self) -> int:
        """Put every delivery that gave up back in the queue (after the operator fixed the receiver)."""
        with self.catalog.session() as s:
            return int(s.execute(update(AlertDelivery).where(AlertDelivery.state == FAILED)
                                 .values(state=PENDING, attempts=0, next_attempt_at=utcnow(),
                                         claimed_until=None)).rowcount)

    # --- helpers -------------------------------------------------------------------
    @staticmethod
    def _alert(s: Session, alert_id: int, owned_by: str | None) -> Alert:
        alert = s.get(Alert, alert_id)
        if alert is None or (owned_by is not None and alert.owner not in Cases.owners_of(s, owned_by)):
            raise AlertError("alert_not_found", f"no alert {alert_id}", 404)
        return alert

    @staticmethod
    def _view(s: Session, alert: Alert) -> AlertView:
        from matcher.review.queue import StoredCandidate

        cand = s.get(StoredCandidate, alert.candidate_id)
        bank = s.get(Bank, alert.bank_id)
        assert cand is not None and bank is not None
        subject = s.get(Subject, cand.subject_id) if cand.subject_id is not None else None
        case = s.get(Case, alert.case_id) if alert.case_id is not None else None
        rows = s.execute(select(AlertDelivery, WebhookSubscriber.url)
                         .join(WebhookSubscriber, WebhookSubscriber.id == AlertDelivery.subscriber_id)
                         .where(AlertDelivery.alert_id == alert.id).order_by(AlertDelivery.id)).all()
        deliveries = [DeliveryView(d.subscriber_id, urlsplit(url).hostname or "", d.state, d.attempts,
                                   d.next_attempt_at if d.state == PENDING else None, d.delivered_at,
                                   d.last_status, d.last_error) for d, url in rows]
        delivered = [d.delivered_at for d in deliveries if d.delivered_at is not None]
        return AlertView(
            id=alert.id, event_id=alert.event_id, candidate_id=cand.id, bank=bank.name, kind=bank.kind,
            case_ref=case.ref if case else None, owner=alert.owner,
            pseudonym=subject.pseudonym if subject else None, query_sha256=cand.query_sha256,
            ref_item=cand.ref_item_id, first_seen_at=first_seen(s, cand.query_sha256),
            candidate_at=cand.created_at, confirmed_at=alert.confirmed_at,
            delivered_at=min(delivered) if delivered else None, acked_at=alert.acked_at,
            acked_by=alert.acked_by, outcome=alert.outcome, outcome_at=alert.outcome_at,
            outcome_by=alert.outcome_by, deliveries=deliveries)
