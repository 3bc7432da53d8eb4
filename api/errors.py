"""One error shape for every failure: ``{"error": code, "detail": text}``.

Clients branch on ``error`` (stable, machine-readable) and show ``detail`` to
people. FastAPI's own validation errors and Starlette's 404/405 are rewritten
into the same shape, and the OpenAPI schema documents it, so that generated
clients and schemathesis see what the server really sends. Details never echo
uploaded bytes or personal fields; server errors say nothing about internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.store.space import STORAGE_FULL_DETAIL, storage_full
from indexer.text import BadText

log = logging.getLogger("reunite.api")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
          422: "validation_error", 429: "rate_limited", 503: "unavailable", 507: "storage_full"}


class ApiError(Exception):
    """An expected failure with its HTTP status and stable code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers: dict[str, str] | None = None  # e.g. Retry-After on 429 (api.budgets)


class ErrorBody(BaseModel):
    """Every error response."""

    error: str
    detail: str


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    return {s: {"model": ErrorBody, "description": _CODES.get(s, "error")} for s in statuses}


# What any guarded route may answer besides its own errors (400: a body that cannot be parsed;
# 429: a budget of api.budgets is spent).
GUARDED = (400, 401, 403, 422, 429)


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the one shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.detail)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse({"error": code, "detail": detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(BadText)
    async def _bad_text(_request: Request, exc: BadText) -> JSONResponse:
        return error_response(422, "bad_text", str(exc))

    # A full disk is not an internal error: 507 tells the operator what to do (writes are atomic).
    @app.exception_handler(OSError)
    @app.exception_handler(SQLAlchemyError)
    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        if storage_full(exc):
            log.error("storage full on %s %s", request.method, request.scope.get("route_path", "?"))
            return error_response(507, "storage_full", STORAGE_FULL_DETAIL)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method,
                  request.scope.get("route_path", "?"))
        return error_response(500, "internal", "internal error; the incident was logged")
