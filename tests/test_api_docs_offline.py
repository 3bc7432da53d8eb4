"""/docs in a real browser without internet: Swagger UI renders from this server's own assets.

People paste API keys into this page, so it may load nothing from elsewhere (FastAPI's default
pulls Swagger UI from a CDN without integrity, and shows a blank page offline). Debian's Chromium,
driven by Playwright as in test_web_ui.py, opens /docs with every request leaving 127.0.0.1
aborted and recorded; the page must build the Swagger UI DOM from the schema, and its
Content-Security-Policy must admit this origin only and still let Swagger UI work.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from api_support import LiveApi, encryption_key, live_api

CHROMIUM = os.environ.get("REUNITE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

try:
    from playwright.sync_api import Route, expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the test
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("docs") / "data") as running:
        yield running


def test_docs_page_names_only_local_assets_under_a_strict_policy(api: LiveApi) -> None:
    page = httpx.get(f"{api.url}/docs")
    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text  # no CDN, no other origin
    assert "<script>" not in page.text  # no inline script: the policy can forbid them
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    bundle = httpx.get(f"{api.url}/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 500_000  # the real Swagger UI bundle, served from here


def test_swagger_ui_renders_offline_in_chromium(api: LiveApi) -> None:
    if sync_playwright is None:
        pytest.fail("Playwright for Python is missing: run `make test` (or pip install -e '.[test]').")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium was not found at {CHROMIUM}: run `make browser` (apt-get install chromium) "
                    "or set REUNITE_CHROMIUM to its path.")
    left: list[str] = []
    loaded: list[str] = []
    console: list[str] = []

    def offline(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK or url.startswith(("data:", "blob:")):
            loaded.append(url)
            route.continue_()
        else:
            left.append(url)
            route.abort("internetdisconnected")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.route("**/*", offline)
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation',"
                                 " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
            page.goto(f"{api.url}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("reunite", timeout=30_000)
            expect(page.locator(".opblock").first).to_be_visible()
            assert page.locator(".opblock").count() >= 20  # every operation of the schema
            page.locator(".opblock-summary").first.click()  # an operation opens (the UI is live)
            expect(page.locator(".opblock-body").first).to_be_visible()
            violations = page.evaluate("window.__csp")
        finally:
            browser.close()
    assert left == [], f"requests left loopback: {left}"
    assert any(u.endswith("/openapi.json") for u in loaded)
    assert violations == [], f"the Content-Security-Policy blocked what Swagger UI needs: {violations}"
    assert not [c for c in console if c.startswith("error")], console
