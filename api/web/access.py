"""Who is this browser, may it use the review pages, and did this form come from us?

The pages admit the roles that may see identities and decide candidates
(reviewer, admin: :data:`api.visibility.IDENTITY_ROLES`); everyone else is
refused with a page that shows nothing of the queue. Every dependency carries
the same role declaration as :func:`api.auth.guard`, so
:func:`api.http.app.check_declarations` can check the web routes too, and names
its audit action, so the service middleware writes the audit event exactly
as it does for the API (denied attempts included).

Forms are protected twice: the session cookie is ``SameSite=Strict`` (a
cross-site request carries no session at all) and every POST must echo the
session's CSRF token; a request whose ``Origin`` is another site is refused
before either is looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, Request

from api import budgets
from api.auth import ADMIN, INVESTIGATOR, REVIEWER, Principal
from api.web.sessions import COOKIE, Session, Sessions

WEB_ROLES = frozenset({REVIEWER, ADMIN})
# Investigators sign in too, for the alert pages of their own cases only (api/web/alerts.py);
# every other page keeps WEB_ROLES and answers them 403.
SIGNIN_ROLES = WEB_ROLES | {INVESTIGATOR}
SIGNIN_CSRF_COOKIE = "reunite_signin"


class SignInRequired(Exception):
    """No live session: the handler redirects to the sign-in page, coming back to ``next_url``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class Refused(Exception):
    """A signed-in (or signing-in) caller may not do this; shown as a page without data."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def prefix(request: Request) -> str:
    """Where the pages are mounted (``/review``)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def sessions(request: Request) -> Sessions:
    return request.app.state.sessions


def safe_next(request: Request, target: str | None) -> str:
    """``target`` when it is a path of these pages, else the queue: sign-in never redirects away."""
    base = prefix(request)
    if target and target.startswith(base + "/") and not target.startswith("//") and "\\" not in target \
            and not urlsplit(target).netloc:
        return target
    return base + "/"


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser on same-origin requests; the CSRF token still is
        return True
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin == expected


def _declare(fn: Callable[..., Any], roles: frozenset[str], action: str | None) -> Any:
    fn.allowed_roles = roles  # type: ignore[attr-defined]
    fn.audit_action = action  # type: ignore[attr-defined]
    return Depends(fn)


def signed_in(action: str | None, roles: frozenset[str] = WEB_ROLES) -> Any:
    """A dependency returning the live :class:`Session` of a reviewer or admin (or of ``roles``).

    ``action`` names the audit event of the request (None: not audited).
    """

    def dependency(request: Request) -> Session:
        request.state.audit_action = action
        found = sessions(request).find(request.cookies.get(COOKIE))
        if found is None:
            request.state.audit_action = None  # nobody to attribute it to; the redirect shows nothing
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target)
        request.state.principal = found.principal
        request.state.web_session = found
        if found.principal.role not in roles:
            raise Refused(403, refusal(found.principal))
        return found

    return _declare(dependency, roles, action)


def form_guard(action: str, roles: frozenset[str] = WEB_ROLES) -> Any:
    """:func:`signed_in` for POST forms: also checks the origin and the session's CSRF token."""

    session_dependency = signed_in(action, roles)  # a default, not an annotation: annotations are strings

    def dependency(request: Request, csrf: Annotated[str, Form(max_length=200)] = "",
                   session: Session = session_dependency) -> Session:
        if not same_origin(request) or not session.csrf_ok(csrf):
            raise Refused(403, "This form has expired or did not come from these pages. "
                               "Reload the page and try again.")
        return session

    return _declare(dependency, roles, action)


def public_page() -> Any:
    """The sign-in page and the static files: open to everyone, declared as such."""

    def dependency() -> None:
        return None

    return _declare(dependency, frozenset({"public"}), None)


def signin_locked_for(request: Request, key: str) -> int | None:
    """Seconds until sign-in may be tried again from this address or with this key, or None.

    The same lockout as the API's (:mod:`api.budgets`): wrong keys presented
    here and there count against one budget per address and one per key.
    """
    try:
        budgets.refuse_if_locked_out(request, key)
    except budgets.RateLimited as exc:
        return exc.retry_after
    return None


def signin_failed(request: Request, key: str) -> int | None:
    """Count a wrong key (one aggregated audit event, not one per try); seconds locked, or None."""
    try:
        budgets.record_failed_key(request, key, via="web")
    except budgets.RateLimited as exc:
        return exc.retry_after
    return signin_locked_for(request, key)


def lockout_message(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return (f"Too many wrong keys were tried from this address. Sign-in is locked for "
            f"{minutes} minute{'s' if minutes != 1 else ''}; try again later.")


def refusal(principal: Principal) -> str:
    return (f"The key \u201c{principal.name}\u201d has the {principal.role} role. The review pages "
            f"are for reviewers and administrators; ask an administrator for a reviewer key.")


def signin_url(request: Request, next_url: str) -> str:
    return f"{prefix(request)}/signin?next={quote(next_url, safe='/')}"
