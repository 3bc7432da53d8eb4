"""What a reviewer does: sign in and out, reveal a reference photo, decide a candidate.

Decisions go through :meth:`matcher.review.queue.ReviewQueue.decide`, the same call
the API makes, so the lifecycle (the second reviewer for missing persons,
final states, sealed notes) is enforced in one place. After a decision the
next candidate of the same queue view opens, skipping those that only wait
for another reviewer, so a reviewer can work through the queue with one key
per candidate.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import visibility
from api.auth import authenticate
from api.http.routes.common import audit, service
from api.web.access import (
    SIGNIN_CSRF_COOKIE,
    SIGNIN_ROLES,
    WEB_ROLES,
    Refused,
    form_guard,
    lockout_message,
    prefix,
    public_page,
    refusal,
    safe_next,
    same_origin,
    sessions,
    signin_failed,
    signin_locked_for,
)
from api.web.pages import Filters, _context, _row_or_404, filters
from api.web.render import page, qs
from api.web.sessions import COOKIE, Session
from matcher.privacy import minors
from matcher.review import queue as review
from matcher.review import stats as review_stats

router = APIRouter(include_in_schema=False)
SIGNIN_CSRF_SECONDS = 3600
INVESTIGATOR_PAGES = ("/alerts", "/search", "/networks")


def _set_signin_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SIGNIN_CSRF_COOKIE, token, max_age=SIGNIN_CSRF_SECONDS, path=prefix(request) or "/",
                        secure=True, httponly=True, samesite="strict")


def _signin_page(request: Request, next_url: str, status: int = 200, error: str | None = None,
                 notice: str | None = None) -> HTMLResponse:
    token = request.cookies.get(SIGNIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = page(request, "signin.html", status=status, next_url=next_url, signin_token=token,
                    error=error, notice=notice,
                    insecure=request.url.scheme != "https" and request.url.hostname not in
                    ("127.0.0.1", "localhost", "::1"))
    _set_signin_token(request, response, token)
    return response


def _locked(response: Response, seconds: int) -> Response:
    response.headers["Retry-After"] = str(seconds)
    return response


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, _: Annotated[None, public_page()], next: str | None = None,
                signed_out: bool = False) -> Response:
    """The sign-in page: one field, the API key (skipped when this browser is already signed in)."""
    target = safe_next(request, next)
    if sessions(request).find(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(target, status_code=303)
    return _signin_page(request, target, notice="You are signed out." if signed_out else None)


@router.post("/signin", response_class=HTMLResponse)
def signin(request: Request, _: Annotated[None, public_page()],
           key: Annotated[str, Form(max_length=200)] = "",
           csrf: Annotated[str, Form(max_length=200)] = "",
           next: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Trade an API key for a session cookie; the key itself is never stored or logged."""
    request.state.audit_action = "web.signin"
    audit(request, "web", via="web")
    target = safe_next(request, next)
    expected = request.cookies.get(SIGNIN_CSRF_COOKIE)
    if not same_origin(request) or not expected or not secrets.compare_digest(expected, csrf):
        return _signin_page(request, target, status=403,
                            error="The sign-in form expired. Please enter the key again.")
    locked = signin_locked_for(request, key.strip())
    if locked is not None:
        return _locked(_signin_page(request, target, status=429, error=lockout_message(locked)), locked)
    principal = authenticate(service(request).store.catalog, key.strip())
    if principal is None:
        locked = signin_failed(request, key.strip())
        return _signin_page(request, target, status=401,
                            error="That key is not valid, or it has been revoked." if locked is None
                            else lockout_message(locked))
    request.state.principal = principal
    if principal.role not in SIGNIN_ROLES:
        return _signin_page(request, target, status=403, error=refusal(principal))
    if principal.role not in WEB_ROLES and not target.startswith(
            tuple(f"{prefix(request)}{p}" for p in INVESTIGATOR_PAGES)):
        target = f"{prefix(request)}/alerts"  # an investigator's pages: its alerts, search, networks
    token, expires = sessions(request).start(principal)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(sessions(request).lifetime.total_seconds()),
                        expires=expires.strftime("%a, %d %b %Y %H:%M:%S GMT"), path=prefix(request) or "/",
                        secure=True, httponly=True, samesite="strict")
    response.delete_cookie(SIGNIN_CSRF_COOKIE, path=prefix(request) or "/")
    return response


@router.post("/signout")
def signout(request: Request, session: Annotated[Session, form_guard("web.signout", SIGNIN_ROLES)]
            ) -> Response:
    """End the session on the server (a copied cookie stops working) and in the browser."""
    audit(request, "web", via="web")
    sessions(request).end(session)
    response = RedirectResponse(f"{prefix(request)}/signin?signed_out=true", status_code=303)
    response.delete_cookie(COOKIE, path=prefix(request) or "/", secure=True, httponly=True,
                           samesite="strict")
    return response


def _candidate_url(request: Request, candidate_id: int, params: dict[str, object]) -> str:
    return f"{prefix(request)}/candidates/{candidate_id}{qs(params)}"


@router.post("/candidates/{candidate_id}/reveal")
def reveal(candidate_id: int, request: Request,
           session: Annotated[Session, form_guard("subject.photo.reveal")],
           f: Annotated[Filters, Depends(filters)],
           reason: Annotated[str, Form(max_length=minors.MAX_REVEAL_REASON)] = "") -> Response:
    """The reviewer chose to see a missing person's reference photo: audited, then shown.

    Recorded with the review queue too: only a reviewer who revealed it may confirm
    (matcher.review.queue ``reveal_required``; the API's photo route counts the same).

    A protected child's photo (matcher.privacy.minors) needs a written reason, kept in the audit event.
    """
    svc = service(request)
    row = _row_or_404(svc, candidate_id)
    bank, subject, _item = _context(svc, row)
    audit(request, f"subject:{subject.pseudonym}" if subject else f"candidate:{candidate_id}",
          item=row.ref_item_id, candidate=candidate_id, via="web")
    child = bool(row.minor_policy) or minors.is_protected(subject)
    try:
        given = minors.reveal_reason(child, reason)
    except minors.ReasonRequired as exc:
        audit(request, minor_policy=True, error=exc.code)
        return RedirectResponse(_candidate_url(request, candidate_id, {**f.params(), "error": exc.code}),
                                status_code=303)
    audit(request, reason=given, minor_policy=True if child else None)
    if bank.kind in visibility.PEOPLE_KINDS or child:
        sessions(request).reveal(session, candidate_id)
        svc.review.record_reveal([candidate_id], session.principal.name)  # confirming needs it
    return RedirectResponse(_candidate_url(request, candidate_id, f.params()), status_code=303)


@router.post("/candidates/{candidate_id}/decision")
def decide(candidate_id: int, request: Request,
           session: Annotated[Session, form_guard("review.decide")],
           f: Annotated[Filters, Depends(filters)],
           action: Annotated[Literal["confirm", "reject", "escalate"], Form()],
           note: Annotated[str, Form(max_length=review.MAX_NOTE)] = "") -> Response:
    """Apply the decision, then open the next candidate of the same queue view."""
    svc = service(request)
    p = session.principal
    audit(request, f"candidate:{candidate_id}", decision=action, via="web")
    try:
        row, _view = svc.review.decide(candidate_id, p.name, p.role, action, note.strip())
    except review.NotFound:
        raise Refused(404, f"There is no candidate {candidate_id}.") from None
    except review.Conflict as exc:
        return RedirectResponse(_candidate_url(request, candidate_id, {**f.params(), "error": exc.code}),
                                status_code=303)
    audit(request, state=row.state)
    done = {"decided": candidate_id, "outcome": row.state}
    following = review_stats.neighbour(svc.store.catalog, f.queue_filter(svc), candidate_id,
                                       forward=True, reviewer=p.name) \
        or review_stats.neighbour(svc.store.catalog, f.queue_filter(svc), candidate_id,
                                  forward=False, reviewer=p.name)
    if following is None:
        return RedirectResponse(f"{prefix(request)}/{qs({**f.params(), **done})}", status_code=303)
    return RedirectResponse(_candidate_url(request, following, {**f.params(), **done}), status_code=303)
