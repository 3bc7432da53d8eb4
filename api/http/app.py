"""The FastAPI application: ``create_app(data_dir)`` builds one service over one data folder.

Every API route lives under ``/v1`` (HMA's ``/m`` and ``/h`` at the root) and declares its roles; the
factory refuses to build an app with an undeclared route, so a new route
cannot be reachable by accident. The service refuses to start over a bank
that needs the encryption key when no key is set (see
:class:`api.service.Service`). OpenAPI is served at ``/openapi.json`` and
``/docs`` (Swagger UI from local assets: :mod:`api.http.docs`). The alert deliverer
(:mod:`api.delivery`) runs as a thread from the app's start to its stop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.formparsers import MultiPartParser

from api import errors, web
from api.auth import declared_roles
from api.delivery import Deliverer
from api.http import docs
from api.http.metrics import Metrics
from api.http.middleware import ServiceMiddleware
from api.http.routes import (
    admin,
    alerts,
    banks,
    cases,
    ingest,
    match,
    networks,
    review,
    search,
    stats,
    subjects,
    watches,
)
from api.http.routes.hma import router as hma_router
from api.service import Service, ServiceConfig

log = logging.getLogger("reunite.api")
# FastAPI's documentation routes are the only ones without a role declaration.
DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def create_app(data_dir: Path | str, *, catalog_url: str | None = None,
               max_upload_bytes: int | None = None, second_review_missing_person: bool | None = None,
               config: ServiceConfig | None = None) -> FastAPI:
    """Build the service over ``data_dir`` (raises MissingKey when a bank needs a key and none is set)."""
    config = config or ServiceConfig.from_env(
        Path(data_dir), catalog_url=catalog_url, max_upload_bytes=max_upload_bytes,
        second_review_missing_person=second_review_missing_person)
    svc = Service(config)
    svc.warm()
    # Uploads stay in memory (bounded by the body limit) instead of spilling to /tmp in clear.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, config.max_upload_bytes + 1)

    deliverer = Deliverer(svc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        deliverer.start()  # sends the alert outbox (api.delivery); `reunite alerts deliver` does one pass
        yield
        deliverer.stop()
        svc.store.checkpoint()  # save the indexes changed since the last checkpoint

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # api.http.docs serves /docs from local assets, not a CDN
        title="reunite",
        version="1",
        description="Image hashing and missing-person matching. Send an API key in the X-API-Key "
                    "header; errors are JSON {\"error\": code, \"detail\": text}.",
    )
    app.state.service = svc
    app.state.deliverer = deliverer
    app.state.metrics = Metrics(svc)
    errors.install(app)
    # The match routes first, reunite's and HMA's: a request is matched against the routes in
    # order, and a partner's hash lookup (the busiest route) walked some twenty others first
    # (~0.3 ms a request; HMA's lookup came after all of them and the docs). No other route's path
    # lies under /v1/match, /m or /h, so the order changes nothing else.
    app.include_router(match.router)
    app.include_router(hma_router)  # HMA's /m and /h paths at the root ("Coming from HMA", README)
    for module in (admin, banks, subjects, ingest, review, networks, cases, alerts, stats, search, watches):
        app.include_router(module.router)
    docs.install(app)
    check_declarations(app)
    app.mount(web.MOUNT, web.build(svc))  # the reviewer pages (api/web)
    app.add_middleware(ServiceMiddleware, svc=svc, metrics=app.state.metrics)

    return app


def api_routes(app: FastAPI) -> list[tuple[str, frozenset[str], frozenset[str] | None]]:
    """(path, methods, declared roles) of every API route, routers included."""
    try:  # FastAPI >= 0.13x keeps included routers as nodes; this walks their routes
        from fastapi.routing import iter_route_contexts
        contexts = [(c.path, c.methods, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:  # pragma: no cover - older FastAPI: a flat list
        contexts = [(r.path, getattr(r, "methods", None), r) for r in app.routes]
    return [(str(path), frozenset(methods or ()), declared_roles(route))
            for path, methods, route in contexts if isinstance(route, APIRoute)]


def check_declarations(app: FastAPI) -> None:
    """Every route must declare its roles (guard or public); raise otherwise."""
    undeclared = [f"{sorted(methods)} {path}" for path, methods, roles in api_routes(app)
                  if roles is None]
    if undeclared:
        raise RuntimeError(f"routes without a role declaration: {', '.join(undeclared)}")
