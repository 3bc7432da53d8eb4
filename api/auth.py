"""API keys and roles: who is calling, and may they call this route?

The keys themselves (table, issue, revoke, look-up) live in :mod:`api.api_keys`,
re-exported here; this module adds the FastAPI side.

Every route declares the roles it admits with :func:`guard` (or :func:`public`
for health probes); the declaration travels on the dependency so that
``create_app`` refuses to build an app with an undeclared route and the tests
can walk the full route x role matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api import budgets
from api.api_keys import (  # noqa: F401 - re-exported: routes, web pages and tests import them from here
    ADMIN,
    HEADER,
    INGEST,
    INVESTIGATOR,
    KEY_PREFIX,
    PARTNER,
    REVIEWER,
    ROLES,
    ApiKey,
    Principal,
    authenticate,
    create_key,
    hash_key,
    list_keys,
    revoke_key,
)
from api.errors import ApiError

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

    # A coroutine, so FastAPI runs it on the event loop: a sync dependency is a hop to a worker
    # thread and back, which cost more CPU than the key's look-up itself (~0.6 ms a request,
    # BENCHMARKS.md). The look-up is one unique-index read (in WAL a reader never waits for a
    # writer); the key's last use is written at most once a minute (api.api_keys).
    async def dependency(request: Request, key: str | None = Security(_scheme),
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

    async def dependency() -> None:  # on the event loop: no hop to a worker thread for nothing
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
