"""Templates and the response headers every reviewer page carries.

Pages hold personal data, so none may be cached, framed by another site, or
leak its address to another site in a Referer; the Content-Security-Policy admits only this
server's own scripts, styles and images (nothing is fetched from a CDN).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.web.access import prefix
from api.web.sessions import Session

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make browsers send "Origin: null"
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)


def qs(params: dict[str, Any]) -> str:
    """A query string of the non-empty ``params`` (with its ``?``), or nothing."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


def when(value: str | dt.datetime | None) -> str:
    """A timestamp as reviewers read it: UTC, to the minute."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    """Seconds in the largest units that keep it readable ("3 h 12 min")."""
    if seconds is None:
        return "no decisions yet"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


env.filters["when"] = when
env.filters["duration"] = duration
env.globals["qs"] = qs
env.globals["dict"] = dict


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the shared context (where the pages live, who is signed in)."""
    session: Session | None = getattr(request.state, "web_session", None)
    html = env.get_template(template).render(
        base=prefix(request), user=session.principal if session else None,
        csrf=session.csrf if session else "", path=request.url.path, **context)
    return HTMLResponse(html, status_code=status)
