"""The audit trail: an append-only, keyed hash chain in the catalog.

Every request that reads or changes reference data, every match (HTTP or CLI),
every key issued or revoked, every export and every review decision appends
one event: who (key name, or ``cli:<unix user>``), role, action, object, time,
result. Each event carries an HMAC-SHA256, under the *audit key*, of its
predecessor's and its own canonical content, so that editing any event breaks
its own MAC and deleting one breaks the chain (sequence numbers are
contiguous). The head (sequence number, hash, and a MAC over both) is written
to ``<data>/audit-head`` after every append, so that deleting the *newest*
events is caught too; a missing head file is reported. A writer that opens a
log whose head is missing, unsigned, edited or ahead of the log first appends
an ``audit.head_mismatch`` event, so that a later write cannot paper over a
truncation: verify reports that event for good.

The audit key lives outside the catalog: ``$REUNITE_AUDIT_KEY`` (32 bytes,
urlsafe base64), else the file named by ``$REUNITE_AUDIT_KEY_FILE``, else
``<data>/keys/audit.key`` (0600, made on first use; an operator should move it
off the data folder's disk and point ``REUNITE_AUDIT_KEY_FILE`` at it).
Threat model: whoever can write the catalog and the head file but cannot read
the key cannot edit, delete, truncate or rewrite events without `reunite audit
verify` failing, because every later MAC and the head's MAC would have to be
recomputed. Whoever holds both the catalog and the key can rewrite history
consistently; only heads copied somewhere the server cannot write (a ticket, a
partner's inbox) reveal that. Restoring an old head together with the log cut
back to it (a rollback) is likewise caught only by such copies.

Catalogs written by the earlier plain SHA-256 chain stay verifiable: their
events are checked as a plain chain, and the first writer that opens the log
with a key appends an ``audit.seal`` event whose MAC covers the old chain's
last hash, after which the old part cannot be rewritten without the key.

Privacy: events name objects by opaque ids (bank names, candidate ids, content
hashes) and never hold image bytes, names, personal fields or review notes;
:func:`append` refuses long or nested detail values so that nothing of the kind
slips in by accident. A subject's pseudonym never reaches the log: every
pseudonym in an object or detail is replaced by :meth:`AuditLog.subject_ref`,
an HMAC under the audit key, so that once the subject is withdrawn nothing in
the log links back to them without both the pseudonym and the key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import JSON, Integer, String, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column

from indexer.crypto import KeyProblem
from indexer.store.catalog import Base, Catalog, lost_a_race

GENESIS = "0" * 64
HEAD_FILE = "audit-head"
KEY_ENV = "REUNITE_AUDIT_KEY"
KEY_FILE_ENV = "REUNITE_AUDIT_KEY_FILE"
KEYS_DIR = "keys"
KEY_FILE = "audit.key"
SEAL_ACTION = "audit.seal"
HEAD_MISMATCH_ACTION = "audit.head_mismatch"
_MAX_DETAIL_TEXT = 120
# The form of indexer.store.catalog.new_pseudonym(); tests check that the two agree.
T = TypeVar("T")
PSEUDONYM = re.compile(r"S-[0-9a-f]{16}(?![0-9a-f])")


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


# AuditLog's append (indexer.store.prepared: the same SQL on SQLite and PostgreSQL).
_LAST_LINK_SQL = f"SELECT seq, hash FROM {AuditEvent.__tablename__} ORDER BY seq DESC LIMIT 1"
_EVENT_COLUMNS = ("seq", "at", "actor", "role", "action", "object", "result", "detail", "prev_hash", "hash")
_INSERT_EVENT_SQL = (f"INSERT INTO {AuditEvent.__tablename__} ({', '.join(_EVENT_COLUMNS)}) "
                     f"VALUES ({', '.join(':' + c for c in _EVENT_COLUMNS)})")
APPEND_ATTEMPTS = 20


def _body(seq: int, at: str, actor: str, role: str, action: str, obj: str, result: str,
          detail: dict[str, Any]) -> str:
    return json.dumps([seq, at, actor, role, action, obj, result, detail],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def event_hash(prev_hash: str, seq: int, at: str, actor: str, role: str, action: str,
               obj: str, result: str, detail: dict[str, Any]) -> str:
    """The plain SHA-256 link of the chain before it was keyed (kept to verify old catalogs)."""
    body = _body(seq, at, actor, role, action, obj, result, detail)
    return hashlib.sha256((prev_hash + body).encode("ascii")).hexdigest()


def _plain_link_holds(ev: AuditEvent) -> bool:
    """Whether ``ev`` carries a hash of the plain (unkeyed) chain."""
    return event_hash(ev.prev_hash, ev.seq, ev.at, ev.actor, ev.role, ev.action, ev.object, ev.result,
                      ev.detail or {}) == ev.hash


class AuditKey:
    """The secret of the chain: one key, separate subkeys for links, heads and subject refs."""

    def __init__(self, raw: bytes) -> None:
        self._chain = hmac.new(raw, b"reunite audit chain", hashlib.sha256).digest()
        self._head = hmac.new(raw, b"reunite audit head", hashlib.sha256).digest()
        self._subject = hmac.new(raw, b"reunite audit subject", hashlib.sha256).digest()

    def link(self, prev_hash: str, seq: int, at: str, actor: str, role: str, action: str,
             obj: str, result: str, detail: dict[str, Any]) -> str:
        body = _body(seq, at, actor, role, action, obj, result, detail)
        return hmac.new(self._chain, (prev_hash + body).encode("ascii"), hashlib.sha256).hexdigest()

    def event_link(self, ev: AuditEvent) -> str:
        return self.link(ev.prev_hash, ev.seq, ev.at, ev.actor, ev.role, ev.action, ev.object,
                         ev.result, ev.detail or {})

    def head(self, seq: int, digest: str) -> str:
        return hmac.new(self._head, f"{seq} {digest}".encode("ascii"), hashlib.sha256).hexdigest()

    def subject_ref(self, pseudonym: str) -> str:
        return "T-" + hmac.new(self._subject, pseudonym.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def _parse_key(text: str, where: str) -> AuditKey:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise KeyProblem(f"the audit key in {where} is not urlsafe base64") from None
    if len(raw) != 32:
        raise KeyProblem(f"the audit key in {where} must decode to 32 bytes, not {len(raw)}")
    return AuditKey(raw)


def own_key_file(data_dir: Path) -> Path:
    """Where the audit key is made when the environment names none."""
    return Path(data_dir) / KEYS_DIR / KEY_FILE


def load_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> AuditKey | None:
    """The configured audit key, or None when there is none yet (raises KeyProblem if malformed)."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV, "").strip():
        return _parse_key(env[KEY_ENV], KEY_ENV)
    path = Path(env[KEY_FILE_ENV]) if env.get(KEY_FILE_ENV, "").strip() else own_key_file(data_dir)
    try:
        return _parse_key(path.read_text(encoding="ascii"), str(path))
    except FileNotFoundError:
        if env.get(KEY_FILE_ENV, "").strip():
            raise KeyProblem(f"{KEY_FILE_ENV} names {path}, which does not exist") from None
        return None


def _make_key_file(data_dir: Path) -> AuditKey:
    path = own_key_file(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
    with contextlib.suppress(FileExistsError):  # another process was first: use its key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text + "\n")
    return _parse_key(path.read_text(encoding="ascii"), str(path))


def _missing_key_message(data_dir: Path) -> str:
    return (f"the audit log is signed with an audit key that is not available: set {KEY_ENV} or "
            f"{KEY_FILE_ENV}, or restore {own_key_file(data_dir)}")


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


@dataclass(frozen=True)
class PlannedEvent:
    """An event to append in another write's transaction (:meth:`AuditLog.append_after`).

    ``detail`` is what the caller records of the action so far (an HTTP request: the
    status it answers); the write that runs with it may add its own (a lookup: how many
    candidates it found and queued).
    """

    actor: str
    role: str
    action: str
    obj: str
    result: str
    detail: dict[str, Any]


class AuditLog:
    """Appends and verifies the events of one catalog.

    Opening it is a write: it makes the data folder's audit key when none is
    configured (only while the log holds nothing signed), seals a log written
    by the plain chain, and writes a signed head for an empty log. It raises
    :class:`indexer.crypto.KeyProblem` when the log is signed and the key is
    not available, since appending under a new key would orphan the old chain.
    """

    def __init__(self, catalog: Catalog, data_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.catalog = catalog
        self.data_dir = Path(data_dir)
        self.head_path = self.data_dir / HEAD_FILE
        self._lock = threading.Lock()
        last = self._last_event()
        key = load_key(self.data_dir, environ)
        unkeyed_tail = last is None or _plain_link_holds(last)
        if key is None:
            if not unkeyed_tail:
                raise KeyProblem(_missing_key_message(self.data_dir))
            key = _make_key_file(self.data_dir)
        elif last is not None and not unkeyed_tail \
                and not hmac.compare_digest(key.event_link(last), last.hash):
            raise KeyProblem("the configured audit key is not the one the audit log was signed with "
                             "(or its newest event was altered); `reunite audit verify` tells which")
        self.key = key
        head_problem = self._head_problem()
        if head_problem is not None:
            # The next append rewrites the head; record first what it showed, so that a truncation
            # followed by any write still fails `reunite audit verify`.
            self.append("system", "system", HEAD_MISMATCH_ACTION, "audit", "error", head_problem)
        elif last is None:
            if not self.head_path.exists():
                self._write_head(0, GENESIS)
        elif unkeyed_tail:
            self.append("system", "system", SEAL_ACTION, "audit", "ok", {"unkeyed_events": last.seq})

    def _head_problem(self) -> dict[str, Any] | None:
        """What is wrong with the saved head as this writer finds it (None: nothing).

        The head is read before the newest event, since another process appends
        (commit, then head) meanwhile; a problem must show twice to count, so that
        a first-ever head being written right then is not taken for damage.
        """
        problem = None
        for _attempt in range(2):
            problem = self._observe_head()
            if problem is None:
                return None
        return problem

    def _observe_head(self) -> dict[str, Any] | None:
        try:
            head = read_head(self.head_path)
        except ValueError:
            head = ()
        last = self._last_event()
        last_seq = last.seq if last is not None else 0
        if head == ():
            return {"problem": "head_malformed", "last_seq": last_seq}
        if head is None:
            return {"problem": "head_missing", "last_seq": last_seq} if last is not None else None
        seq, digest, mac = head
        if mac is None:
            if last is not None and not _plain_link_holds(last):
                return {"problem": "head_unsigned", "head_seq": seq, "last_seq": last_seq}
        elif not hmac.compare_digest(self.key.head(seq, digest), mac):
            return {"problem": "head_signature", "head_seq": seq, "last_seq": last_seq}
        if seq > last_seq:
            return {"problem": "head_ahead_of_log", "head_seq": seq, "last_seq": last_seq}
        return None

    def _last_event(self) -> AuditEvent | None:
        with self.catalog.session() as s:
            return s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))

    def subject_ref(self, pseudonym: str) -> str:
        """How the log names the subject ``pseudonym`` (stable, unlinkable without the key)."""
        return self.key.subject_ref(pseudonym)

    def _scrub(self, text: str) -> str:
        return PSEUDONYM.sub(lambda m: self.key.subject_ref(m.group(0)), text)

    def append(self, actor: str, role: str, action: str, obj: str, result: str,
               detail: dict[str, Any] | None = None) -> AuditEvent:
        """Append one event; safe across threads and processes sharing the catalog."""
        _none, event = self.append_after(None, actor, role, action, obj, result, lambda _out: detail or {})
        return event

    def append_after(self, write: Callable[[Connection], T] | None, actor: str, role: str, action: str,
                     obj: str, result: str, detail_of: Callable[[T | None], dict[str, Any]]
                     ) -> tuple[T | None, AuditEvent]:
        """Run ``write(conn)`` and append the event that records it in ONE transaction: (its result, event).

        Why: a lookup that queues a hit wrote its candidates and then its event, two
        transactions and two commits (on SQLite each commit is a WAL write); here they are
        committed together, so neither is ever kept without the other. ``detail_of`` makes the
        event's detail from what ``write`` returned. A transaction that lost a race with another
        writer (the event's sequence number, a queue row: :func:`indexer.store.catalog.lost_a_race`)
        is rolled back whole and run again. The head file is written after the commit, as by
        :meth:`append`.
        """
        obj = self._scrub(obj)[:200]
        actor, role, action, result = actor[:120], role[:32], action[:64], result[:32]
        with self._lock:
            for _attempt in range(APPEND_ATTEMPTS):
                try:
                    with self.catalog.writing() as conn:
                        out = write(conn) if write is not None else None
                        clean = {k: self._scrub(v) if isinstance(v, str) else v
                                 for k, v in _clean_detail(detail_of(out)).items()}
                        event = self._append_on(conn, actor, role, action, obj, result, clean)
                except DBAPIError as exc:  # another process took this sequence number (or a queue row)
                    if lost_a_race(exc):
                        continue
                    raise
                self._write_head(event.seq, event.hash)
                return out, event
        raise RuntimeError("could not append to the audit log (contention)")

    def _append_on(self, conn: Connection, actor: str, role: str, action: str, obj: str, result: str,
                   detail: dict[str, Any]) -> AuditEvent:
        # Prepared statements on a connection of the catalog (inside a unit, the unit's transaction):
        # one event per request, and an ORM session's bookkeeping, then Core's per-statement work,
        # cost more than the INSERT itself.
        prep = self.catalog.prepared
        last = prep.run(conn, _LAST_LINK_SQL)
        seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        row = {"seq": seq, "at": at, "actor": actor, "role": role, "action": action, "object": obj,
               "result": result, "detail": detail, "prev_hash": prev,
               "hash": self.key.link(prev, seq, at, actor, role, action, obj, result, detail)}
        prep.run(conn, _INSERT_EVENT_SQL, {**row, "detail": prep.dump("json", detail)})
        return AuditEvent(**row)

    def _write_head(self, seq: int, digest: str) -> None:
        """Record the newest event as the head (unless another process already wrote a newer one).

        The head has a fixed width (sequence number zero-padded), so once a file
        of that form exists each append overwrites it in place with one
        ``pwrite``; a temporary file and a rename per request cost more than the
        rest of a hash lookup (BENCHMARKS.md). A head of another form (older
        releases, a hand edit) or none is replaced atomically as before.
        """
        line = f"{seq:0{_HEAD_SEQ_DIGITS}d} {digest} {self.key.head(seq, digest)}\n".encode("ascii")
        if self._overwrite_head(seq, line):
            return
        try:
            current = read_head(self.head_path)
        except ValueError:
            current = None
        if current is not None and current[0] >= seq and seq > 0:
            return  # another process wrote a newer head
        fd, tmp = tempfile.mkstemp(prefix=".audit-head.", dir=self.head_path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(line)
        os.replace(tmp, self.head_path)

    def _overwrite_head(self, seq: int, line: bytes) -> bool:
        """Overwrite a fixed-width head in place; False when the file is missing or of another form."""
        try:
            fd = os.open(self.head_path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            old = os.pread(fd, len(line) + 1, 0)
            width = _HEAD_SEQ_DIGITS
            if len(old) != len(line) or not old[:width].isdigit() or old[width:width + 1] != b" " \
                    or not old.endswith(b"\n"):
                return False
            if int(old[:width]) >= seq and seq > 0:
                return True  # another process wrote a newer head
            os.pwrite(fd, line, 0)
            return True
        finally:
            os.close(fd)

    def events(self, offset: int = 0, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
        with self.catalog.session() as s:
            q = select(AuditEvent).order_by(AuditEvent.seq)
            if action:
                q = q.where(AuditEvent.action == action)
            return list(s.scalars(q.offset(offset).limit(limit)))

    def recent(self, limit: int = 50, before: int | None = None, action: str | None = None,
               actor: str | None = None) -> list[AuditEvent]:
        """The newest events first (older than seq ``before``), optionally of one action or actor."""
        with self.catalog.session() as s:
            q = select(AuditEvent).order_by(AuditEvent.seq.desc())
            if before is not None:
                q = q.where(AuditEvent.seq < before)
            if action:
                q = q.where(AuditEvent.action == action)
            if actor:
                q = q.where(AuditEvent.actor == actor)
            return list(s.scalars(q.limit(limit)))

    def actions(self) -> list[str]:
        """Every action name the log holds (for a filter's choices)."""
        with self.catalog.session() as s:
            return sorted(str(a) for a in s.scalars(select(AuditEvent.action).distinct()))

    def count(self) -> int:
        with self.catalog.session() as s:
            return int(s.scalar(select(func.count(AuditEvent.seq))) or 0)

    def verify(self) -> VerifyReport:
        return verify(self.catalog, self.head_path, key=self.key,
                      own_key=own_key_file(self.data_dir).exists())


@dataclass
class VerifyReport:
    """The outcome of walking the chain: ``ok`` and, when not, what broke where."""

    events: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_HEAD_SEQ_DIGITS = 20  # the head's sequence number, zero-padded: every head has one width


def read_head(path: Path) -> tuple[int, str, str | None] | None:
    """(seq, hash, MAC or None for a head of the plain chain); None when there is no file.

    Raises ValueError for a file that is not a head.
    """
    try:
        fields = path.read_text(encoding="ascii").split()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ValueError("not a head") from None
    if len(fields) not in (2, 3) or not fields[0].isdigit():
        raise ValueError("not a head")
    return int(fields[0]), fields[1], fields[2] if len(fields) == 3 else None


def verify_folder(catalog: Catalog, data_dir: Path, environ: Mapping[str, str] | None = None) -> VerifyReport:
    """Verify the log of a data folder with the configured key, changing nothing."""
    try:
        key = load_key(data_dir, environ)
    except KeyProblem as exc:
        return VerifyReport(problems=[str(exc)])
    return verify(catalog, Path(data_dir) / HEAD_FILE, key=key, own_key=own_key_file(data_dir).exists())


def verify(catalog: Catalog, head_path: Path | None = None, batch: int = 5000, *,
           key: AuditKey | None = None, own_key: bool = False) -> VerifyReport:
    """Walk every event: MACs (or plain hashes of a sealed old prefix), links, contiguous
    sequence numbers, and the signed head.

    ``own_key``: the data folder holds its own key file, which is made together
    with the first head, so that a missing head file is reported even for an
    emptied log.
    """
    report = VerifyReport()
    expected_seq, prev = 1, GENESIS
    hashes: dict[int, str] = {0: GENESIS}
    keyed_seen = False
    unkeyed = unverifiable = 0
    try:
        head = read_head(head_path) if head_path is not None else None
        bad_head = False
    except ValueError:
        head, bad_head = None, True
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
            if key is not None and hmac.compare_digest(key.event_link(ev), ev.hash):
                keyed_seen = True
            elif not keyed_seen and event_hash(ev.prev_hash, ev.seq, ev.at, ev.actor, ev.role, ev.action,
                                               ev.object, ev.result, ev.detail or {}) == ev.hash:
                unkeyed += 1
            elif key is None:
                unverifiable += 1
            else:
                report.problems.append(f"event {ev.seq} was edited (its hash does not match)")
            if ev.action == HEAD_MISMATCH_ACTION and ev.actor == "system":
                report.problems.append(f"event {ev.seq} records that a writer found the saved head "
                                       f"damaged ({(ev.detail or {}).get('problem')}, log at event "
                                       f"{(ev.detail or {}).get('last_seq')}): events may have been deleted")
            if head is not None and ev.seq == head[0]:
                hashes[ev.seq] = ev.hash
            prev, expected_seq = ev.hash, ev.seq + 1
            report.events += 1
    if unverifiable:
        report.problems.append(f"{unverifiable} events are signed with an audit key that is not "
                               f"available: set {KEY_ENV} or {KEY_FILE_ENV}, or restore the data folder's "
                               f"{KEYS_DIR}/{KEY_FILE}")
    if unkeyed:
        report.notes.append(f"{unkeyed} events were written before the keyed chain"
                            + (" and are sealed by the keyed events after them" if keyed_seen
                               else "; the next command that writes to the log seals them"))
    where = head_path.name if head_path is not None else HEAD_FILE
    last_seq = expected_seq - 1
    if head_path is None:
        return report
    if bad_head:
        report.problems.append(f"the head file {where} is not a head (edited)")
    elif head is None:
        if report.events or own_key:
            report.problems.append(f"the head file {where} is missing: the newest events cannot be "
                                   "checked and may have been deleted")
    else:
        seq, digest, mac = head
        if mac is None:
            if keyed_seen or key is not None:
                report.problems.append(f"the saved head in {where} is not signed with the audit key "
                                       "(a log from before the keyed chain is sealed by the next command "
                                       "that writes to it)")
        elif key is None:
            if not unverifiable:
                report.problems.append(f"the saved head in {where} is signed with an audit key that is not "
                                       f"available: set {KEY_ENV} or {KEY_FILE_ENV}")
        elif not hmac.compare_digest(key.head(seq, digest), mac):
            report.problems.append(f"the saved head in {where} was edited (its signature does not match)")
        if seq > last_seq:
            report.problems.append(f"the log ends at event {last_seq} but the saved head is at "
                                   f"{seq}: newest events were deleted")
        elif hashes.get(seq) != digest:
            report.problems.append(f"event {seq} differs from the saved head")
    return report
