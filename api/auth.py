"""API keys and roles: who is calling, and may they call this route?

Keys are 256-bit random tokens shown once, at creation; the catalog stores
only their SHA-256 (a slow password hash buys nothing for keys with this much
entropy, and a fast one keeps every request cheap). Revoking a key takes
effect on the next request: keys are looked up on every call, never cached.

Every route declares the roles it admits with :func:`guard` (or :func:`public`
for health probes); the declaration travels on the dependency so that
``create_app`` refuses to build an app with an undeclared route and the tests
can walk the full route x role matrix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import DateTime, String, select
from sqlalchemy.orm import Mapped, mapped_column

from api import budgets
from api.errors import ApiError
from indexer import text
from indexer.store.catalog import Base, Catalog, utcnow

ADMIN, INVESTIGATOR, REVIEWER, INGEST, PARTNER = "admin", "investigator", "reviewer", "ingest", "partner"
ROLES = (ADMIN, INVESTIGATOR, REVIEWER, INGEST, PARTNER)
KEY_PREFIX = "rk_"
HEADER = "X-API-Key"


class ApiKey(Base):
    """One issued key: its name, role and hash (never the key itself)."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


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
    with catalog.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
        if row is None or row.revoked_at is not None:
            return None
        return Principal(key_id=row.id, name=row.name, role=row.role)


# --- FastAPI side -------------------------------------------------------------

_scheme = APIKeyHeader(name=HEADER, auto_error=False, description="An API key from `reunite keys create`.")
# The same key as `Authorization: Bearer <key>`, the header HMA clients and most HTTP tooling send.
_bearer = HTTPBearer(auto_error=False, description="An API key from `reunite keys create`, as bearer token.")

PUBLIC = "public"


def guard(action: str | None, *roles: str) -> Any:
    """A dependency admitting ``roles``; ``action`` names the audit event (None: not audited).

    Returns the :class:`Principal`. 401 without a valid key, 403 for another role
    (recorded in the audit log as a denied attempt), 429 when a budget of
    :mod:`api.budgets` is spent (wrong keys lock their address out).
    """
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"bad role declaration: {roles}")

    def dependency(request: Request, key: str | None = Security(_scheme),
                   bearer: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Principal:
        request.state.audit_action = action
        budgets.refuse_if_locked_out(request, key)
        if key is None and bearer is not None:
            key = bearer.credentials
        principal = authenticate(request.app.state.service.store.catalog, key)
        if principal is None:
            budgets.record_failed_key(request, key)  # one aggregated audit event, not one per guess
            raise ApiError(401, "unauthorized",
                           f"send a valid API key in the {HEADER} header or as Authorization: Bearer")
        request.state.principal = principal
        budgets.charge_key(request, principal)
        if principal.role not in roles:
            raise ApiError(403, "forbidden", f"the {principal.role} role may not call this route")
        return principal

    return _declared(dependency, frozenset(roles), action)


def public() -> Any:
    """A dependency declaring a route open to everyone (health probes, metrics)."""

    def dependency() -> None:
        return None

    return _declared(dependency, frozenset({PUBLIC}), None)


def _declared(fn: Callable[..., Any], roles: frozenset[str], action: str | None) -> Any:
    fn.allowed_roles = roles  # type: ignore[attr-defined]
    fn.audit_action = action  # type: ignore[attr-defined]
    return Depends(fn)


def declared_roles(route: Any) -> frozenset[str] | None:
    """The roles a FastAPI route declares through :func:`guard` / :func:`public`, or None."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, "allowed_roles", None)
        if roles is not None:
            return roles
        stack.extend(dep.dependencies)
    return None
