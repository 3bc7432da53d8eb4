"""The administrator's pages: API keys, the audit log with its chain check, and bank policies.

Admins only (every route declares ``admin``; other roles are answered 403
with a page that shows nothing). Each change goes through the function the
CLI calls, under the same audit action: keys through :mod:`api.api_keys`
(``key.create``, ``key.revoke``), watches through
:func:`api.watching.set_watches` (``bank.watches``), the review requirement
through :func:`api.bank_policy.set_second_review` (``bank.policy``).

A new key is shown once, on the page that answers the creating POST: it is
never stored (the catalog keeps its hash), never put in a URL and the page
is not cached (``no-store``, as every page here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import bank_policy, watching
from api.api_keys import ROLES, create_key, list_keys, revoke_key
from api.application import Actor
from api.auth import ADMIN
from api.http.routes.common import audit, service
from api.web.access import Refused, form_guard, prefix, signed_in
from api.web.render import page, qs
from api.web.sessions import Session
from indexer.text import with_article
from matcher.review import queue as review

router = APIRouter(prefix="/admin", include_in_schema=False)
ADMINS = frozenset({ADMIN})
AUDIT_PAGE = 50
AUTO_VERIFY_EVENTS = 200_000  # walking this many takes a few seconds; larger logs verify on request
MESSAGES = {"revoked": "The key was revoked; its sessions ended.", "watches": "Watches saved.",
            "review": "Review requirement saved. It applies to candidates stored from now on."}


def _actor(session: Session) -> Actor:
    return Actor(session.principal.name, session.principal.role)


def _keys_page(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    keys = list_keys(service(request).store.catalog)
    return page(request, "admin_keys.html", status=status, keys=keys, roles=ROLES,
                **{"created": None, "error": None, "message": None, **context})


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, _s: Annotated[Session, signed_in("key.list", ADMINS)],
              done: str | None = Query(None, max_length=20)) -> HTMLResponse:
    """Every key: name, role, when it was made and revoked (never the key: only its hash is kept)."""
    audit(request, "keys", via="web")
    return _keys_page(request, message=MESSAGES.get(done or ""))


@router.post("/keys", response_class=HTMLResponse)
def create(request: Request, _s: Annotated[Session, form_guard("key.create", ADMINS)],
           name: Annotated[str, Form(max_length=200)] = "",
           role: Annotated[str, Form(max_length=32)] = "") -> HTMLResponse:
    """Issue a key and show it once, on this answer only."""
    audit(request, f"key:{name.strip()[:120]}", role=role[:32], via="web")
    try:
        key = create_key(service(request).store.catalog, role, name)
    except ValueError as exc:
        audit(request, error="bad_key_request")
        return _keys_page(request, status=422, error=str(exc), name=name, role=role)
    return _keys_page(request, status=201, created={"name": name.strip(), "role": role, "key": key,
                                                    "role_words": with_article(role)})


@router.post("/keys/revoke")
def revoke(request: Request, session: Annotated[Session, form_guard("key.revoke", ADMINS)],
           name: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Revoke a key by name; every request and browser session of it fails from now on."""
    audit(request, f"key:{name[:120]}", via="web")
    if name == session.principal.name:
        audit(request, error="own_key")
        return _keys_page(request, status=409, error="That is the key you are signed in with. Sign in with "
                                                     "another admin key to revoke it.")
    if not revoke_key(service(request).store.catalog, name):
        audit(request, error="no_active_key")
        return _keys_page(request, status=404, error=f"There is no active key named \u201c{name}\u201d.")
    return RedirectResponse(f"{prefix(request)}/admin/keys{qs({'done': 'revoked'})}", status_code=303)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, _s: Annotated[Session, signed_in("audit.read", ADMINS)],
               action: str | None = Query(None, max_length=64),
               actor: str | None = Query(None, max_length=120),
               before: int | None = Query(None, ge=1), verify: bool = Query(False)) -> HTMLResponse:
    """The newest events first, filtered by action or actor, and whether the hash chain holds.

    The chain is walked on every visit while the log is small enough for that to be quick
    (:data:`AUTO_VERIFY_EVENTS`); above it, on request (``verify=1``), as ``GET /v1/audit/verify``.
    """
    svc = service(request)
    total = svc.audit.count()
    report = svc.audit.verify() if verify or total <= AUTO_VERIFY_EVENTS else None
    audit(request, "audit", via="web",
          chain=None if report is None else ("ok" if report.ok else "broken"))
    events = svc.audit.recent(AUDIT_PAGE + 1, before, action or None, actor or None)
    more = len(events) > AUDIT_PAGE
    events = events[:AUDIT_PAGE]
    return page(request, "admin_audit.html", events=events, report=report, actions=svc.audit.actions(),
                action=action or "", actor=actor or "", total=total,
                older=events[-1].seq if more and events else None)


def _bank_rows(request: Request) -> list[dict[str, Any]]:
    svc = service(request)
    from matcher.search.watch import WATCHER_KINDS, WATCHES_KEY

    ads = [b.name for b in svc.store.catalog.banks() if b.kind == "ads"]
    rows = []
    for b in svc.store.catalog.banks():
        policy = dict(b.policy or {})
        rows.append({"bank": b, "count": svc.store.catalog.count_items(b.id), "policy": policy,
                     "second_review": review.second_review_required(
                         b, svc.review.second_review_missing_person),
                     "second_review_set": policy.get("second_review"),
                     "watcher": b.kind in WATCHER_KINDS, "watches": policy.get(WATCHES_KEY), "ads": ads})
    return rows


@router.get("/banks", response_class=HTMLResponse)
def banks_page(request: Request, _s: Annotated[Session, signed_in("bank.list", ADMINS)],
               done: str | None = Query(None, max_length=20)) -> HTMLResponse:
    """Every bank with its policy: who reviews, which ads banks it watches, what it keeps."""
    audit(request, "banks", via="web")
    return page(request, "admin_banks.html", rows=_bank_rows(request), message=MESSAGES.get(done or ""),
                error=None)


def _banks_error(request: Request, message: str, status: int) -> HTMLResponse:
    return page(request, "admin_banks.html", status=status, rows=_bank_rows(request), message=None,
                error=message)


@router.post("/banks/{bank}/watches")
def set_watches(bank: str, request: Request, session: Annotated[Session, form_guard("bank.watches", ADMINS)],
                mode: Annotated[str, Form(max_length=10)] = "all",
                watches: Annotated[list[str], Form()] = []) -> Response:  # noqa: B006
    """Watch every ads bank, none, or the ticked ones (the CLI's ``reunite watches``)."""
    request.state.audit_action = None  # api.watching.set_watches records the event
    names = None if mode == "all" else ([] if mode == "none" else watches)
    try:
        watching.set_watches(service(request), _actor(session), bank, names, via="web")
    except watching.WatchPolicyError as exc:
        return _banks_error(request, str(exc), 422)
    return RedirectResponse(f"{prefix(request)}/admin/banks{qs({'done': 'watches'})}", status_code=303)


@router.post("/banks/{bank}/review")
def set_review(bank: str, request: Request, session: Annotated[Session, form_guard("bank.policy", ADMINS)],
               second_review: Annotated[str, Form(max_length=10)] = "default") -> Response:
    """Two reviewers, one, or the kind's default, for candidates stored from now on."""
    request.state.audit_action = None  # api.bank_policy records the event
    value = {"yes": True, "no": False, "default": None}.get(second_review, "bad")
    if value == "bad":
        raise Refused(400, "Choose yes, no or the default.")
    try:
        bank_policy.set_second_review(service(request), _actor(session), bank, value,  # type: ignore[arg-type]
                                      via="web")
    except bank_policy.PolicyError as exc:
        return _banks_error(request, str(exc), 404)
    return RedirectResponse(f"{prefix(request)}/admin/banks{qs({'done': 'review'})}", status_code=303)
