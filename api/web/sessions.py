"""Browser sessions for the reviewer pages: a random token in a cookie, its hash in the catalog.

The API key a reviewer signs in with never goes into the cookie: sign-in
trades it for a 256-bit session token, and the catalog keeps only the token's
SHA-256 (like the keys themselves), the key it stands for, an expiry, the
per-session CSRF token and which reference photos this session has revealed.
Every request looks the key up again, so revoking a key or changing its role
ends its browser sessions at once; signing out deletes the row, so a copied
cookie is useless afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import JSON, DateTime, ForeignKey, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from api.api_keys import note_use
from api.auth import ApiKey, Principal
from indexer.store.catalog import Base, Catalog, utcnow

COOKIE = "reunite_review"
LIFETIME = dt.timedelta(hours=8)  # one shift; the reviewer signs in again the next day
MAX_REVEALED = 500


class WebSession(Base):
    """One signed-in browser."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    revealed: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


@dataclass(frozen=True)
class Session:
    """A live session: who, its CSRF token, and the candidates whose reference it revealed."""

    token_hash: str
    principal: Principal
    csrf: str
    revealed: frozenset[int]
    expires_at: dt.datetime

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf, str(sent))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Sessions:
    """Creates, finds and ends sessions in one catalog."""

    def __init__(self, catalog: Catalog, lifetime: dt.timedelta = LIFETIME) -> None:
        self.catalog = catalog
        self.lifetime = lifetime

    def start(self, principal: Principal) -> tuple[str, dt.datetime]:
        """A new session for ``principal``: the cookie value (shown once) and its expiry."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + self.lifetime
        with self.catalog.session() as s:
            s.execute(delete(WebSession).where(WebSession.expires_at < now))
            s.add(WebSession(token_hash=_digest(token), key_id=principal.key_id,
                             csrf=secrets.token_urlsafe(32), revealed=[], created_at=now,
                             expires_at=expires))
        return token, expires

    def find(self, token: str | None) -> Session | None:
        """The live session of a cookie value; None when unknown, expired or its key is revoked."""
        if not token or len(token) > 100:
            return None
        with self.catalog.session() as s:
            found = s.execute(select(WebSession, ApiKey).join(ApiKey, ApiKey.id == WebSession.key_id)
                              .where(WebSession.token_hash == _digest(token))).first()
            if found is None:
                return None
            row, key = found
            if row.expires_at <= utcnow() or key.revoked_at is not None:
                s.delete(row)
                return None
            note_use(key)  # a page view is a use of the key the session was opened with
            return Session(row.token_hash, Principal(key.id, key.name, key.role), row.csrf,
                           frozenset(int(x) for x in row.revealed or []), row.expires_at)

    def reveal(self, session: Session, candidate_id: int) -> None:
        """Remember that this session chose to see the reference photo of ``candidate_id``."""
        with self.catalog.session() as s:
            row = s.get(WebSession, session.token_hash)
            if row is None:
                return
            seen = [int(x) for x in row.revealed or [] if int(x) != candidate_id]
            row.revealed = [*seen, candidate_id][-MAX_REVEALED:]

    def end(self, session: Session) -> None:
        with self.catalog.session() as s:
            s.execute(delete(WebSession).where(WebSession.token_hash == session.token_hash))
