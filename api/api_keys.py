"""API keys: the catalog table, issuing, revoking, listing and looking a key up.

Keys are 256-bit random tokens shown once, at creation; the catalog stores
only their SHA-256 (a slow password hash buys nothing for keys with this much
entropy, and a fast one keeps every request cheap). Revoking a key takes
effect on the next request: keys are looked up on every call, never cached.

Each key records when it was last used (``keys list``, ``/admin/keys``: an
admin revoking keys nobody uses, or noticing a key used after its holder
left). Writing on every request would turn each read-only call into a write
transaction, so the time is kept to :data:`LAST_USE_RESOLUTION`: a key's row is
written at most once a minute, whatever its request rate.

Kept apart from :mod:`api.auth` (the FastAPI guards) so that the CLI, which
needs the table and the key functions but never a route, does not import
FastAPI and Starlette (about 0.25 s) at every start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import DateTime, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from indexer import text
from indexer.store.catalog import Base, Catalog, utcnow

ADMIN, INVESTIGATOR, REVIEWER, INGEST, PARTNER = "admin", "investigator", "reviewer", "ingest", "partner"
ROLES = (ADMIN, INVESTIGATOR, REVIEWER, INGEST, PARTNER)
KEY_PREFIX = "rk_"
HEADER = "X-API-Key"
# A key's last use is written at most this often (the time shown is this precise).
LAST_USE_RESOLUTION = dt.timedelta(seconds=60)


class ApiKey(Base):
    """One issued key: its name, role and hash (never the key itself)."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as the audit log names it."""

    key_id: int
    name: str
    role: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(catalog: Catalog, role: str, name: str) -> str:
    """Issue a key for ``role``; returns the key (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    name = name.strip()
    if not name or len(name) > 120:
        raise ValueError("a key name must be 1 to 120 characters")
    text.check(name, "key name")  # shown in the audit log and `keys list`: BadText is a ValueError
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with catalog.session() as s:
        if s.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
            raise ValueError(f"a key named {name!r} already exists")
        s.add(ApiKey(name=name, role=role, key_hash=hash_key(key)))
    return key


def revoke_key(catalog: Catalog, name: str) -> bool:
    """Revoke the key called ``name``; False when there is no active key by that name."""
    with catalog.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.name == name))
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        return True


def list_keys(catalog: Catalog) -> list[ApiKey]:
    with catalog.session() as s:
        return list(s.scalars(select(ApiKey).order_by(ApiKey.id)))


def authenticate(catalog: Catalog, key: str | None) -> Principal | None:
    """The principal of an active key, or None."""
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    # Read on every request (revocation takes effect on the next one); a few columns with a
    # prepared statement (indexer.store.prepared), not an ORM session nor Core: this runs before
    # every authenticated route.
    prep = catalog.prepared
    with catalog.engine.connect() as conn:
        row = prep.run(conn, _KEY_SQL, {"key_hash": hash_key(key)})
        if row is None:
            return None
        key_id, name, role, revoked_at, last_used_at = row
        if revoked_at is not None:
            return None
        now = utcnow()
        if use_is_stale(prep.load("datetime", last_used_at), now):
            conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
            conn.commit()
    return Principal(key_id=int(key_id), name=str(name), role=str(role))


_KEY_SQL = (f"SELECT id, name, role, revoked_at, last_used_at FROM {ApiKey.__tablename__} "
            "WHERE key_hash = :key_hash")


def use_is_stale(last_used_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a use at ``now`` should be written: only when the stored time is
    :data:`LAST_USE_RESOLUTION` old or more, so a busy key costs one small UPDATE a
    minute, not one per request."""
    return last_used_at is None or now - last_used_at >= LAST_USE_RESOLUTION


def note_use(row: ApiKey, now: dt.datetime | None = None) -> bool:
    """Record that ``row`` (loaded in an open session) was used now; True when that is a write."""
    now = now or utcnow()
    if not use_is_stale(row.last_used_at, now):
        return False
    row.last_used_at = now
    return True
