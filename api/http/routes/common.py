"""Small helpers every route module shares: the service, 404s, audit annotations."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from sqlalchemy import select

from api.errors import ApiError
from api.service import Service
from indexer import text as text_rules
from indexer.store.catalog import Bank, Subject


def service(request: Request) -> Service:
    return request.app.state.service


def audit(request: Request, obj: str | None = None, **detail: Any) -> None:
    """Name the object of this request's audit event and add non-personal detail."""
    if obj is not None:
        request.state.audit_object = obj
    current = getattr(request.state, "audit_detail", None) or {}
    request.state.audit_detail = {**current, **detail}


def bank_or_404(svc: Service, name: str) -> Bank:
    bank = svc.store.catalog.bank(name)
    if bank is None:
        raise ApiError(404, "bank_not_found", "no bank by that name")
    return bank


def subject_or_404(svc: Service, pseudonym: str) -> tuple[Subject, Bank]:
    with svc.store.catalog.session() as s:
        subject = s.scalar(select(Subject).where(Subject.pseudonym == pseudonym))
        if subject is None:
            raise ApiError(404, "subject_not_found", "no subject by that pseudonym")
        bank = s.get(Bank, subject.bank_id)
        assert bank is not None
        return subject, bank


def parse_json_field(text: str | None, field: str, expect: type) -> Any:
    """A form field holding JSON (multipart requests carry metadata this way).

    The nesting is bounded before parsing (json.loads recurses once per level:
    thousands of ``[`` were a RecursionError, a 500) and every string in the
    value, keys included, goes through :mod:`indexer.text`.
    """
    if text is None or not text.strip():
        return expect()
    depth = text_rules.json_depth(text)
    if depth > text_rules.MAX_DEPTH:
        raise ApiError(422, "validation_error",
                       f"{field}: JSON nested {depth} levels deep (at most {text_rules.MAX_DEPTH})")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "validation_error", f"{field}: not valid JSON ({exc.msg})") from None
    text_rules.check_tree(value, field)
    if not isinstance(value, expect):
        raise ApiError(422, "validation_error", f"{field}: must be a JSON {expect.__name__}")
    return value


def _declared(dependant: Dependant) -> tuple[set[str], set[str]]:
    """The query and body field names of a route and of every dependency it uses."""
    query: set[str] = set()
    body: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        query.update(f.alias for f in current.query_params)
        body.update(f.alias for f in current.body_params)
        pending.extend(current.dependencies)
    return query, body


async def _refuse_unknown_fields(request: Request) -> None:
    """422 naming every form or query field the route does not declare.

    Why: FastAPI drops undeclared fields without a word, so a typo such as
    ``-F bank=ads`` (for ``banks``) searched every bank. The declared names
    come from the route itself, so the rule cannot drift from the signature.
    Starlette caches the parsed form, so reading it here costs no second parse.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    declared_query, declared_body = _declared(dependant)
    unknown = [k for k in request.query_params if k not in declared_query]
    if declared_body and "multipart/form-data" in request.headers.get("content-type", ""):
        unknown += [k for k in (await request.form()) if k not in declared_body]
    if unknown:
        names = ", ".join(dict.fromkeys(unknown))
        raise ApiError(422, "unknown_field", f"unknown field(s): {names}")


def known_fields_only() -> Any:
    """The dependency for multipart routes; declare it after the guard, so 401/403 come first."""
    return Depends(_refuse_unknown_fields)
