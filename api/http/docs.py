"""The API documentation page (``/docs``): Swagger UI served from this server, nothing from a CDN.

FastAPI's own page loads Swagger UI from a CDN without subresource
integrity, on the page where people paste API keys, and shows nothing on a
machine without internet access. Here the assets come from the
``fastapi-offline`` package (a pinned Swagger UI 5 build, installed like any
dependency) and one start-up script of ours, under a Content-Security-Policy
that admits scripts, styles and requests of this origin only, so neither a
CDN nor an injected inline script can read a pasted key. The schema itself
stays at ``/openapi.json``; ReDoc is not offered (its bundle needs inline
styles and blob workers).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.auth import public

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS = Path(__file__).resolve().parent / "docs_assets"
ASSET_PACKAGE = ("fastapi_offline", "static")  # swagger-ui-bundle.js, swagger-ui.css, favicon.png

HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


class _WithHeaders:
    """Adds :data:`HEADERS` to every answer of the wrapped asset app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k.encode(), v.encode()) for k, v in HEADERS.items())]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets on ``app`` (built with ``docs_url=None, redoc_url=None``)."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False, dependencies=[public()])
    def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        html = PAGE.format(title=escape(app.title), assets=escape(root + ASSETS_URL),
                           openapi=escape(root + openapi_url))
        return HTMLResponse(html, headers=HEADERS)

    app.mount(ASSETS_URL, _WithHeaders(StaticFiles(directory=ASSETS, packages=[ASSET_PACKAGE])),
              name="docs-assets")
