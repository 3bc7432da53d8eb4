"""The webhook deliverer: sends the alert outbox (:mod:`matcher.review.outbox`) to the owners' receivers.

One pass (:meth:`Deliverer.run_once`, also ``reunite alerts deliver`` for cron)
takes every due delivery, claims it with a compare-and-set lease (so two
deliverers, e.g. the service's thread and a cron pass, never send one row at
the same moment), POSTs the signed payload and marks the row delivered with a
compare-and-set on its state. A failure (no answer, a non-2xx status) puts
the row back with an exponential backoff (``REUNITE_ALERT_BACKOFF_S`` x 2^n,
at most an hour) and after :data:`matcher.review.outbox.MAX_ATTEMPTS` the row is
``failed`` and stays visible until an operator retries it
(``reunite alerts retry``). The outbox is in the catalog: a crash or restart
loses nothing; a lease left by a killed process runs out and the row is sent
by the next pass.

Signature (what a receiver checks)::

    X-Reunite-Timestamp: <unix seconds>
    X-Reunite-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    Idempotency-Key: <event_id>       (the same on every retry of the same alert)

The timestamp is inside the MAC, so a captured request cannot be replayed
later (receivers refuse a timestamp older than a few minutes:
:func:`verify_signature`), and the body cannot be changed. The payload holds
pseudonyms and opaque ids only; a receiver fetches details with its own key.
Redirects are not followed: a receiver's URL is what the operator registered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update

from api.application import Actor, Application
from indexer.store.catalog import utcnow
from matcher.review import outbox
from matcher.review.outbox import AlertDelivery, WebhookSubscriber

log = logging.getLogger("reunite.alerts")
SIGNATURE_HEADER = "X-Reunite-Signature"
TIMESTAMP_HEADER = "X-Reunite-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT = "match.confirmed"
LEASE_S = 60.0
MAX_BACKOFF_S = 3600.0
DELIVERER = Actor("system:deliverer", "admin")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, header: str, body: bytes, now: float | None = None,
                     tolerance_s: float = 300.0) -> bool:
    """A receiver's check: the MAC matches and the timestamp is within ``tolerance_s`` of now."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def payload(view: outbox.AlertView) -> dict[str, Any]:
    """What the receiver learns: opaque ids, the pseudonym and times; never labels or personal fields."""
    return {"event": EVENT, "event_id": view.event_id, "alert_id": view.id,
            "candidate_id": view.candidate_id, "case": view.case_ref, "pseudonym": view.pseudonym,
            "bank": view.bank, "kind": view.kind,
            "confirmed_at": view.confirmed_at.replace(tzinfo=dt.UTC).isoformat(),
            "links": {"alert": f"/v1/alerts/{view.id}", "evidence": f"/v1/alerts/{view.id}/evidence"}}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass
class PassReport:
    delivered: int = 0
    failed: int = 0
    gave_up: int = 0


def backoff_s(attempts: int, base_s: float) -> float:
    return min(MAX_BACKOFF_S, base_s * 2 ** max(0, attempts - 1))


class Deliverer:
    """Sends due deliveries of one application's catalog; ``start``/``stop`` run it as a thread."""

    def __init__(self, app: Application, *, backoff_base_s: float | None = None,
                 poll_s: float | None = None, timeout_s: float = 10.0) -> None:
        env = app.environ
        self.app = app
        self.book = outbox.AlertBook(app.store.catalog, app.cipher)
        self.backoff_base_s = backoff_base_s if backoff_base_s is not None else float(
            env.get("REUNITE_ALERT_BACKOFF_S", "5"))
        self.poll_s = poll_s if poll_s is not None else float(env.get("REUNITE_ALERT_POLL_S", "2"))
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one pass -------------------------------------------------------------------
    def run_once(self) -> PassReport:
        report = PassReport()
        now = utcnow()
        with self.app.store.catalog.session() as s:
            due = list(s.scalars(select(AlertDelivery.id).where(
                AlertDelivery.state == outbox.PENDING, AlertDelivery.next_attempt_at <= now,
                or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now))
                .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id).limit(100)))
        for delivery_id in due:
            if self._stop.is_set():
                break
            self._deliver(delivery_id, report)
        return report

    def _claim(self, delivery_id: int) -> tuple[AlertDelivery, WebhookSubscriber] | None:
        now = utcnow()
        with self.app.store.catalog.session() as s:
            won = s.execute(update(AlertDelivery).where(
                AlertDelivery.id == delivery_id, AlertDelivery.state == outbox.PENDING,
                or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now))
                .values(claimed_until=now + dt.timedelta(seconds=LEASE_S),
                        attempts=AlertDelivery.attempts + 1)
                .execution_options(synchronize_session=False)).rowcount
            if won != 1:
                return None
            row = s.get(AlertDelivery, delivery_id)
            assert row is not None
            s.refresh(row)
            sub = s.get(WebhookSubscriber, row.subscriber_id)
            assert sub is not None
            s.expunge_all()
            return row, sub

    def _deliver(self, delivery_id: int, report: PassReport) -> None:
        claimed = self._claim(delivery_id)
        if claimed is None:
            return  # another deliverer holds it, or it was delivered meanwhile
        row, sub = claimed
        try:
            view = self.book.get(row.alert_id)
        except outbox.AlertError:
            return  # purged meanwhile (consent withdrawn): its deliveries went with it
        body = json.dumps(payload(view), separators=(",", ":"), sort_keys=True).encode()
        status, error = self._post(sub, view.event_id, body)
        now = utcnow()
        with self.app.store.catalog.session() as s:
            if status is not None and 200 <= status < 300:
                s.execute(update(AlertDelivery).where(AlertDelivery.id == row.id,
                                                      AlertDelivery.state == outbox.PENDING)
                          .values(state=outbox.DELIVERED, delivered_at=now, claimed_until=None,
                                  last_status=status, last_error=None))
                report.delivered += 1
            else:
                gave_up = row.attempts >= outbox.MAX_ATTEMPTS
                s.execute(update(AlertDelivery).where(AlertDelivery.id == row.id,
                                                      AlertDelivery.state == outbox.PENDING)
                          .values(state=outbox.FAILED if gave_up else outbox.PENDING, claimed_until=None,
                                  next_attempt_at=now + dt.timedelta(
                                      seconds=backoff_s(row.attempts, self.backoff_base_s)),
                                  last_status=status, last_error=(error or "")[:300]))
                report.failed += 1
                report.gave_up += int(gave_up)
        result = "ok" if status is not None and 200 <= status < 300 else "error"
        if result == "ok" or row.attempts == 1 or row.attempts >= outbox.MAX_ATTEMPTS:
            # The first failure, the give-up and the success are events; retries in between are not.
            self.app.record(DELIVERER, "alert.deliver", f"alert:{view.id}", result,
                            subscriber=sub.id, attempt=row.attempts, status=status)

    def _post(self, sub: WebhookSubscriber, event_id: str, body: bytes) -> tuple[int | None, str | None]:
        try:
            secret = self.book.secret_of(sub)
        except Exception as exc:  # a sealed secret without the key: not sendable, say why
            return None, f"secret: {type(exc).__name__}"
        timestamp = int(time.time())
        request = urllib.request.Request(sub.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "reunite-alerts/1",
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body),
            IDEMPOTENCY_HEADER: event_id, "X-Reunite-Event": EVENT})
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                return int(response.status), None
        except urllib.error.HTTPError as exc:
            return int(exc.code), f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"{type(exc).__name__}: {reason}"[:300]

    # --- as a thread of the service ------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="reunite-deliverer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the loop must outlive one bad pass (a locked catalog, a full disk)
                log.exception("alert delivery pass failed; retrying")
            self._stop.wait(self.poll_s)
