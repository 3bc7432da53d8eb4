"""What happens around every request: the address budget, the body size limit, no-store, metrics
and the audit event.

A client address over its request budget (:mod:`api.budgets`) is answered 429
before anything else is done; every answer but a static asset carries
``Cache-Control: no-store``.

Written as plain ASGI (no BaseHTTPMiddleware) so that it adds microseconds,
not milliseconds, to a match. The body is read up to the configured limit
before the app sees it: a larger upload is refused with 413 whether or not it
declared a Content-Length, and is never spooled to a temporary file (uploads
may be photos of missing persons).

The audit event is appended *before* the response starts, so a client never
sees the result of an action that left no trace; a request that ends in an
unhandled error (500) is audited too, with result "error". A route may append
its own 200 event inside its write's transaction (a hash lookup, with the hits
it queues: :func:`planned_event` describes it the same way); the middleware then
appends nothing for that answer, and its event for any other. Routes declare their audit
action through :func:`api.auth.guard`; routes without one (health probes,
metrics, whoami) are not audited.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio

from api import budgets
from api.audit import PlannedEvent
from api.http.metrics import Metrics
from api.service import Service

log = logging.getLogger("reunite.api")
Scope = dict[str, Any]
_METHODS_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


# Path parameters that name the object of a request, most specific first.
_OBJECT_PARAMS = (("pseudonym", "subject"), ("candidate_id", "candidate"), ("bank", "bank"))


def default_object(path_params: dict[str, Any], path: str) -> str:
    """The audit object of a request whose handler did not name one (refused before it ran)."""
    for param, kind in _OBJECT_PARAMS:
        if param in path_params:
            return f"{kind}:{path_params[param]}"
    return path


def result_of(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict"}.get(
        status, "rejected" if status < 500 else "error")


class ServiceMiddleware:
    def __init__(self, app: Any, svc: Service, metrics: Metrics) -> None:
        self.app = app
        self.svc = svc
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        refused = budgets.admit_address(self.svc.budgets, budgets.client_address(scope))
        if refused is not None:  # before the body is read: a flood costs no upload buffering
            await _send_error(send, 429, refused.code, refused.detail, refused.headers)
            self.metrics.observe(scope["method"], "address_budget", 429, time.perf_counter() - start)
            return
        send = _no_store(scope, send)
        limit = self.svc.config.max_upload_bytes
        if scope["method"] in _METHODS_WITH_BODY:
            body = await _read_body(scope, receive, limit)
            if body is None:
                # Read (and drop) the rest of a moderately oversized body first:
                # answering mid-upload makes the server close a socket the client
                # is still writing to, and the client sees "connection reset"
                # instead of our 413. Beyond the drain cap we answer at once.
                await _drain(scope, receive, limit * 16)
                await _send_error(send, 413, "too_large", f"the request body exceeds {limit:,} bytes")
                self.metrics.observe(scope["method"], "body_limit", 413, time.perf_counter() - start)
                return
            receive = _replay(body)
        status_holder = {"status": 500}
        audited = {"done": False}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
                audited["done"] = True
                await self._audit(scope, status_holder["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # An unhandled error is answered 500 by the outermost error handler, after
            # this middleware: record the event (result "error") before it does.
            if not audited["done"]:
                audited["done"] = True
                await self._audit(scope, 500)
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status_holder["status"],
                                 time.perf_counter() - start)

    async def _audit(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        if state.get(APPENDED) == status:
            return  # the route appended this very event in its own write's transaction
        event = planned_event(scope, status)
        if event is None:
            return
        try:
            # On the event loop, not in a worker thread: the hop there and back cost more CPU than
            # the append (~0.6 ms a request on two loaded cores, BENCHMARKS.md). The append is a
            # read of the chain's last link and one INSERT; it may wait for another writer's short
            # transaction (SQLite's lock), which holds up this worker's other requests that long.
            self.svc.audit.append(event.actor, event.role, event.action, event.obj, event.result,
                                  event.detail)
        except Exception:
            log.exception("audit append failed for %s", event.action)
            raise


# request.state key: the status whose event a route appended itself (api.hash_matching.lookup
# appends it with the queue write, in one transaction). Answered with another status (an error
# after that commit), the request gets the middleware's event as well.
APPENDED = "audit_appended_for"


def planned_event(scope: Scope, status: int) -> PlannedEvent | None:
    """The audit event of a request answered ``status`` (None: the route is not audited).

    The one description of a request's event: the middleware appends it as the response
    starts, and a route that appends it inside its own transaction makes it here too.
    """
    state = scope.get("state") or {}
    action = state.get("audit_action")
    if not action:
        return None
    principal = state.get("principal")
    path_params = scope.get("path_params") or {}
    obj = state.get("audit_object") or default_object(path_params, scope.get("path", ""))
    detail = {k: v for k, v in (state.get("audit_detail") or {}).items() if v is not None}
    detail["status"] = status
    return PlannedEvent(principal.name if principal else "anonymous", principal.role if principal else "none",
                        action, str(obj), result_of(status), detail)


async def _drain(scope: Scope, receive: Any, cap: int) -> None:
    """Consume the rest of the request body, up to ``cap`` bytes in all."""
    if (scope.get("state") or {}).get("body_complete"):
        return  # nothing left: another receive() would wait for the disconnect
    for name, value in scope.get("headers") or []:
        if name == b"content-length" and value.isdigit() and int(value) > cap:
            return
    seen = 0
    while seen <= cap:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _read_body(scope: Scope, receive: Any, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed ``limit``."""
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return None
            except ValueError:
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if not message.get("more_body", False):
                scope.setdefault("state", {})["body_complete"] = True
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        return {"type": "http.disconnect"}  # pragma: no cover

    return receive


async def _send_error(send: Any, status: int, code: str, detail: str,
                      extra_headers: dict[str, str] | None = None) -> None:
    payload = json.dumps({"error": code, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close"), *_NO_STORE,
                            *((k.lower().encode(), v.encode()) for k, v in (extra_headers or {}).items())]})
    await send({"type": "http.response.body", "body": payload})


# Answers may carry personal fields, photos or review state: no browser or proxy keeps them.
# Only static assets (stylesheets, scripts) may be cached.
_NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
_CACHEABLE_PREFIXES = ("/review/static/", "/docs/assets/")


def _no_store(scope: Scope, send: Any) -> Any:
    """``send`` adding Cache-Control: no-store and Pragma: no-cache unless the path is a static asset."""
    if str(scope.get("path", "")).startswith(_CACHEABLE_PREFIXES):
        return send

    async def send_no_store(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", [])
                       if k.lower() not in (b"cache-control", b"pragma")]
            message = {**message, "headers": [*headers, *_NO_STORE]}
        await send(message)

    return send_no_store
