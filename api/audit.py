"""The audit trail: an append-only, hash-chained log in the catalog.

Every request that reads or changes reference data, every match and every
review decision appends one event: who (key name), role, action, object,
time, result. Each event carries the SHA-256 of its predecessor and of its
own canonical content, so that editing any event breaks its own hash and
deleting one breaks the chain (sequence numbers are contiguous). Deleting the
*newest* events leaves a valid shorter chain, so the head (sequence number and
hash) is also written to ``<data>/audit-head`` after every append; `reunite
audit verify` compares the two. Copying that head somewhere the server cannot
write (a ticket, a partner's inbox) makes the whole log tamper-evident.

Privacy: events name objects by opaque ids (bank names, pseudonyms, candidate
ids, content hashes) and never hold image bytes, names, personal fields or
review notes; :func:`append` refuses long or nested detail values so that
nothing of the kind slips in by accident.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Integer, String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from indexer.store.catalog import Base, Catalog

GENESIS = "0" * 64
HEAD_FILE = "audit-head"
_MAX_DETAIL_TEXT = 120


class AuditEvent(Base):
    """One event; ``seq`` is contiguous from 1 and ``hash`` chains to ``prev_hash``."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object: Mapped[str] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "role": self.role,
                "action": self.action, "object": self.object, "result": self.result,
                "detail": self.detail, "hash": self.hash}


def event_hash(prev_hash: str, seq: int, at: str, actor: str, role: str, action: str,
               obj: str, result: str, detail: dict[str, Any]) -> str:
    body = json.dumps([seq, at, actor, role, action, obj, result, detail],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + body).encode("ascii")).hexdigest()


def _clean_detail(detail: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in detail.items():
        if value is None or isinstance(value, bool | int | float):
            out[str(key)] = value
        elif isinstance(value, str):
            if len(value) > _MAX_DETAIL_TEXT:
                raise ValueError(f"audit detail {key!r} is too long to be an identifier")
            out[str(key)] = value
        else:
            raise ValueError(f"audit detail {key!r} must be a scalar")
    return out


class AuditLog:
    """Appends and verifies the events of one catalog."""

    def __init__(self, catalog: Catalog, data_dir: Path) -> None:
        self.catalog = catalog
        self.head_path = Path(data_dir) / HEAD_FILE
        self._lock = threading.Lock()
        Base.metadata.create_all(catalog.engine, tables=[AuditEvent.__table__])

    def append(self, actor: str, role: str, action: str, obj: str, result: str,
               detail: dict[str, Any] | None = None) -> AuditEvent:
        """Append one event; safe across threads and processes sharing the catalog."""
        clean = _clean_detail(detail or {})
        obj = obj[:200]
        with self._lock:
            for _attempt in range(20):
                try:
                    event = self._append_once(actor[:120], role[:32], action[:64], obj,
                                              result[:32], clean)
                except IntegrityError:  # another process took this sequence number
                    continue
                self._write_head(event.seq, event.hash)
                return event
        raise RuntimeError("could not append to the audit log (contention)")

    def _append_once(self, actor: str, role: str, action: str, obj: str, result: str,
                     detail: dict[str, Any]) -> AuditEvent:
        with self.catalog.session() as s:
            last = s.execute(select(AuditEvent.seq, AuditEvent.hash)
                             .order_by(AuditEvent.seq.desc()).limit(1)).first()
            seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
            at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            event = AuditEvent(seq=seq, at=at, actor=actor, role=role, action=action, object=obj,
                               result=result, detail=detail, prev_hash=prev,
                               hash=event_hash(prev, seq, at, actor, role, action, obj, result, detail))
            s.add(event)
            s.flush()
            return event

    def _write_head(self, seq: int, digest: str) -> None:
        current = read_head(self.head_path)
        if current is not None and current[0] >= seq:
            return  # another process wrote a newer head
        fd, tmp = tempfile.mkstemp(prefix=".audit-head.", dir=self.head_path.parent)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{seq} {digest}\n")
        os.replace(tmp, self.head_path)

    def events(self, offset: int = 0, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
        with self.catalog.session() as s:
            q = select(AuditEvent).order_by(AuditEvent.seq)
            if action:
                q = q.where(AuditEvent.action == action)
            return list(s.scalars(q.offset(offset).limit(limit)))

    def count(self) -> int:
        with self.catalog.session() as s:
            return int(s.scalar(select(func.count(AuditEvent.seq))) or 0)

    def verify(self) -> VerifyReport:
        return verify(self.catalog, self.head_path)


@dataclass
class VerifyReport:
    """The outcome of walking the chain: ``ok`` and, when not, what broke where."""

    events: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_head(path: Path) -> tuple[int, str] | None:
    try:
        seq, digest = path.read_text(encoding="ascii").split()
        return int(seq), digest
    except (FileNotFoundError, ValueError):
        return None


def verify(catalog: Catalog, head_path: Path | None = None, batch: int = 5000) -> VerifyReport:
    """Walk every event: hashes, links, contiguous sequence numbers, and the saved head."""
    report = VerifyReport()
    expected_seq, prev = 1, GENESIS
    hashes_at_head: dict[int, str] = {}
    head = read_head(head_path) if head_path is not None else None
    while True:
        with catalog.session() as s:
            rows = list(s.scalars(select(AuditEvent).where(AuditEvent.seq >= expected_seq)
                                  .order_by(AuditEvent.seq).limit(batch)))
        if not rows:
            break
        for ev in rows:
            if ev.seq != expected_seq:
                report.problems.append(f"events {expected_seq}..{ev.seq - 1} are missing (deleted)")
                prev = ev.prev_hash  # keep walking to report further damage
            if ev.prev_hash != prev:
                report.problems.append(f"event {ev.seq} does not link to event {ev.seq - 1}")
            digest = event_hash(ev.prev_hash, ev.seq, ev.at, ev.actor, ev.role, ev.action, ev.object,
                                ev.result, ev.detail or {})
            if digest != ev.hash:
                report.problems.append(f"event {ev.seq} was edited (its hash does not match)")
            if head is not None and ev.seq == head[0]:
                hashes_at_head[ev.seq] = ev.hash
            prev, expected_seq = ev.hash, ev.seq + 1
            report.events += 1
    if head is not None:
        last_seq = expected_seq - 1
        if head[0] > last_seq:
            report.problems.append(f"the log ends at event {last_seq} but the saved head is at "
                                   f"{head[0]}: newest events were deleted")
        elif hashes_at_head.get(head[0]) != head[1]:
            report.problems.append(f"event {head[0]} differs from the saved head")
    return report
