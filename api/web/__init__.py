"""The reviewer web pages, a small app mounted at ``/review`` by :func:`api.http.app.create_app`.

Server-rendered HTML (Jinja2) with one stylesheet and one script served from
here: no build step, nothing fetched from elsewhere at run time. It is a
mounted sub-application rather than more ``/v1`` routes because its answers
are pages and redirects, not the API's JSON errors, and it stays out of the
OpenAPI schema. It shares the service object, so sessions, decisions and the
audit trail (written by the service middleware around the whole app) are the
API's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.service import Service
from api.web import actions, admin, alerts, networks, pages, queue, search
from api.web.access import Refused, SignInRequired, signin_url
from api.web.render import SECURITY_HEADERS, STATIC, page
from api.web.sessions import Sessions

MOUNT = "/review"


def build(svc: Service) -> FastAPI:
    """The pages over ``svc``; every route must declare its roles, as in the API."""
    from api.http.app import check_declarations  # api.http.app imports this module

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, title="reunite review")
    app.state.service = svc
    app.state.sessions = Sessions(svc.store.catalog)
    app.include_router(queue.router)
    app.include_router(search.router)
    app.include_router(networks.router)
    app.include_router(admin.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(alerts.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    check_declarations(app)
    _handlers(app)
    return SecurityHeaders(app)  # type: ignore[return-value]


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def to_signin(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(signin_url(request, exc.next_url), status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> HTMLResponse:
        title = "Not allowed" if exc.status == 403 else "Not found"
        return page(request, "message.html", status=exc.status, title=title, message=exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, _exc: RequestValidationError) -> HTMLResponse:
        return page(request, "message.html", status=400, title="Bad request",
                    message="The request was not understood. Go back and try again.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        return page(request, "message.html", status=exc.status_code, title="Not found"
                    if exc.status_code == 404 else "Error", message="There is no such page.")


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` (and no-store outside /static) to every response."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope.get("path", "").startswith(f"{MOUNT}/static/")

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode("latin-1").lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if not cacheable and not any(k.lower() == b"cache-control" for k, _v in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
