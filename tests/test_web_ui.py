"""The reviewer pages in a real browser: Debian's Chromium driven by Playwright, the real app on loopback.

The candidates come from the real pipeline: missing-person references are
enrolled over the API from fixtures/ and edited copies are matched as an
investigator would, so the queue holds what the matcher really stores (face
boxes, hash distances). A screenshot of a candidate page is written to
test-artifacts/ for people to look at.

Chromium is a requirement, not an option: without it these tests fail with
the command that installs it (`make browser`), because a UI that is never
driven by a browser is a UI nobody checked.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_support import ROOT, LiveApi, consent_record, encryption_key, live_api
from conftest import jpeg_bytes, photo, png_bytes
from PIL import Image, ImageEnhance
from sqlalchemy import update

from api.auth import ApiKey
from api.enrollment import PHOTO_ATTR
from indexer.store.catalog import Item
from indexer.store.photos import bank_namespace

CHROMIUM = os.environ.get("REUNITE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
NAME_A = "Quillon Examplechild"
NAME_B = "Marisol Testperson"
CASE_A = "CASE-WEB-A-7781"
VIEWPORT = {"width": 1366, "height": 768}

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the browser fixture
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail("Playwright for Python is missing: run `make test` (or pip install -e '.[test]').")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium was not found at {CHROMIUM}: run `make browser` (apt-get install chromium) "
                    "or set REUNITE_CHROMIUM to its path. The reviewer UI tests need a real browser.")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def _face(side: int = 200) -> Image.Image:
    return photo("astronaut.png").crop((130, 20, 370, 260)).resize((side, side))


def _enroll(api: LiveApi, label: str, image: Image.Image, name: str) -> dict[str, Any]:
    record = {**consent_record(label), "case_ref": f"CASE-WEB-{label}", "personal": {"name": name}}
    if label == "a":
        record["case_ref"] = CASE_A
    r = api.as_("admin").post("/v1/banks/families/subjects", data={"record": json.dumps(record)},
                              files=[("photos", ("p.png", png_bytes(image), "image/png"))])
    assert r.status_code == 201, r.text
    return r.json()["subject"]


def _match(api: LiveApi, image: Image.Image) -> int:
    r = api.as_("investigator").post("/v1/match", data={"banks": "families"},
                                     files={"image": ("ad.jpg", jpeg_bytes(image, 82), "image/jpeg")})
    assert r.status_code == 200, r.text
    queued = [c for c in r.json()["candidates"] if c["candidate_id"]]
    assert queued, r.text
    return int(queued[0]["candidate_id"])


@dataclass
class Queued:
    """The running service and what the pipeline put in its queue: candidate ids and subjects by name."""

    api: LiveApi
    candidates: dict[str, int]
    subjects: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queued]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("web") / "data") as running:
        r = running.as_("admin").post("/v1/banks", json={"name": "families", "kind": "missing_person"})
        assert r.status_code == 201, r.text
        a = _enroll(running, "a", _face(), NAME_A)
        b = _enroll(running, "b", photo("coffee.png").resize((200, 150)), NAME_B)
        # Edited copies, as they turn up in ads: brightened and re-encoded, trimmed at the edges.
        # (b shows no face: only its hashes find it, and a missing-person bank's hash thresholds
        # are strict, matcher/defaults.json: a few pixels trimmed is a review, not a match.)
        brighter = ImageEnhance.Brightness(_face(220)).enhance(1.15)
        cropped = photo("coffee.png").resize((200, 150)).crop((4, 3, 196, 147))
        candidates = {"a": _match(running, brighter), "b": _match(running, cropped)}
        candidates["ad"] = _copied_ad(running)
        yield Queued(running, candidates, {"a": a, "b": b})


def _copied_ad(api: LiveApi) -> int:
    """An ad photo reposted as a crop pasted into a larger picture: found by local features."""
    assert api.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads"}).status_code == 201
    ad = photo("chelsea.png")
    r = api.as_("ingest").post("/v1/banks/ads/items", data={"label": "ad-1"},
                               files={"image": ("ad.png", png_bytes(ad), "image/png")})
    assert r.status_code == 201, r.text
    repost = Image.new("RGB", (700, 520), (240, 240, 240))
    repost.paste(ad.crop((60, 30, 400, 280)), (200, 150))
    r = api.as_("investigator").post("/v1/match", data={"banks": "ads"},
                                     files={"image": ("q.jpg", jpeg_bytes(repost, 85), "image/jpeg")})
    [hit] = [c for c in r.json()["candidates"] if c["candidate_id"]]
    assert hit["evidence"]["local_inliers"] > 50, hit
    return int(hit["candidate_id"])


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=VIEWPORT)
    yield ctx
    ctx.close()


def _sign_in(page: Page, api: LiveApi, key: str, path: str = "/review/") -> None:
    page.goto(api.url + path)
    expect(page).to_have_url(re.compile(r"/review/signin\?next="))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def _events(api: LiveApi, action: str) -> list[Any]:
    return [e for e in api.service.audit.events(limit=100_000) if e.action == action]


def _sharpness(data: bytes, size: tuple[int, int]) -> float:
    """Mean absolute Laplacian: the fine detail a face is recognised by."""
    g = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize(size), dtype=np.float64)
    laplacian = g[1:-1, 2:] + g[1:-1, :-2] + g[2:, 1:-1] + g[:-2, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(np.abs(laplacian).mean())


def test_anonymous_visit_goes_to_sign_in(world: Queued, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    page.goto(api.url + "/review/dashboard")
    expect(page).to_have_url(re.compile(r"/review/signin\?next=/review/dashboard$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the review queue")
    assert page.request.get(api.url + f"/review/candidates/{world.candidates['a']}/query-image",
                            max_redirects=0).status == 303


def test_reviewer_works_through_the_queue(world: Queued, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["reviewer"])
    expect(page).to_have_url(api.url + "/review/")
    expect(page.locator("#queue-total")).to_have_text("3")
    expect(page.locator("table.queue")).not_to_contain_text(NAME_A)  # no names in the list
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "queue-signed-in.png"))  # (queue.png: test_web_workbench's)

    a, b = world.candidates["a"], world.candidates["b"]
    pseudonym = world.subjects["a"]["pseudonym"]
    page.get_by_role("link", name=f"#{a}", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/review/candidates/{a}$"))

    # The evidence, in words and drawn: the compared face is boxed on the query.
    evidence = page.locator("#evidence")
    expect(evidence).to_contain_text(re.compile(r"PDQ distance \d+ of 256 bits"))
    expect(evidence).to_contain_text("Face distance")
    assert page.locator("#query-photo rect.face").count() == 1
    expect(page.locator("#personal")).to_contain_text(NAME_A)

    # Blurred until revealed, and the sharp photo cannot be fetched around the button.
    photo_el = page.locator("#reference-photo")
    expect(photo_el).to_have_attribute("data-revealed", "false")
    expect(photo_el).to_have_attribute("data-src", re.compile(r"/reference-blurred$"))
    sharp_url = api.url + f"/review/candidates/{a}/reference-image"
    assert page.request.get(sharp_url).status == 403
    blurred = page.request.get(api.url + f"/review/candidates/{a}/reference-blurred").body()
    with api.service.store.catalog.session() as s:
        item = s.get(Item, world.subjects["a"]["photos"][0]["item"])
        original = api.service.photos.get(bank_namespace(item.bank_id), item.attributes[PHOTO_ATTR])
    assert _sharpness(blurred, (200, 200)) < 0.15 * _sharpness(original, (200, 200))
    assert not _events(api, "subject.photo.reveal")
    page.screenshot(path=str(ARTIFACTS / "candidate-blurred.png"))

    page.keyboard.press("v")
    expect(photo_el).to_have_attribute("data-revealed", "true")
    expect(photo_el).to_have_attribute("data-src", sharp_url.removeprefix(api.url))
    shown = page.request.get(sharp_url)
    assert shown.status == 200 and Image.open(io.BytesIO(shown.body())).size == (200, 200)
    reveals = _events(api, "subject.photo.reveal")
    assert [(e.actor, e.result, e.object, e.detail.get("candidate")) for e in reveals] == [
        ("test-reviewer", "ok", f"subject:{api.service.audit.subject_ref(pseudonym)}", a)]
    assert NAME_A not in json.dumps([e.to_json() for e in api.service.audit.events(limit=100_000)])
    page.screenshot(path=str(ARTIFACTS / "candidate-page.png"))

    # One key decides, and the next candidate opens.
    page.keyboard.press("c")
    expect(page).to_have_url(re.compile(rf"/review/candidates/{b}\?decided={a}&outcome=awaiting_second$"))
    expect(page.locator("#flash")).to_have_text(f"Candidate {a} is now awaiting a second reviewer.")
    row, decisions = api.service.review.get(a)
    assert row.state == "awaiting_second" and [(d.reviewer, d.action) for d in decisions] == [
        ("test-reviewer", "confirm")]
    page.keyboard.press("k")  # back to the one just confirmed: its first confirmation is shown
    expect(page).to_have_url(re.compile(rf"/review/candidates/{a}$"))
    expect(page.get_by_text("You gave the first confirmation")).to_be_visible()

    page.get_by_role("link", name="Dashboard").click()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    day = page.locator(f"#day-table tr[data-day='{today}']")
    expect(day.locator("td").nth(0)).to_have_text("1")  # confirmed
    expect(day.locator("td.total")).to_have_text("1")
    expect(page.locator("#bank-table")).to_contain_text("families")
    expect(page.locator("#median-first")).not_to_have_text("no decisions yet")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_session_cookie_is_opaque_secure_and_signout_ends_it(world: Queued, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    key = api.keys["admin"]
    _sign_in(page, api, key)
    expect(page).to_have_url(api.url + "/review/")
    [cookie] = [c for c in context.cookies() if c["name"] == "reunite_review"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/review" and cookie["expires"] > dt.datetime.now().timestamp() + 3600
    assert key not in cookie["value"] and key[3:20] not in cookie["value"]
    assert "reunite_review" not in page.evaluate("document.cookie")

    # A form without the session's CSRF token is refused and changes nothing.
    b = world.candidates["b"]
    r = page.request.post(api.url + f"/review/candidates/{b}/decision",
                          form={"action": "reject", "csrf": "forged"}, max_redirects=0)
    assert r.status == 403 and api.service.review.get(b)[0].state == "pending"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/review/signin\?signed_out=true$"))
    context.add_cookies([{**cookie}])  # a copied cookie is worthless after sign-out
    page.goto(api.url + "/review/")
    expect(page).to_have_url(re.compile(r"/review/signin"))


# Investigators sign in to the alert pages of their own cases only (tests/test_web_alerts.py).
@pytest.mark.parametrize("role", ["ingest", "partner"])
def test_other_roles_are_refused_and_see_nothing_personal(world: Queued, context: BrowserContext,
                                                          role: str) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys[role], f"/review/candidates/{world.candidates['a']}")
    expect(page.get_by_role("alert")).to_contain_text(f"has the {role} role")
    assert not [c for c in context.cookies() if c["name"] == "reunite_review"]
    page.goto(api.url + f"/review/candidates/{world.candidates['a']}")
    expect(page).to_have_url(re.compile(r"/review/signin"))
    for text in (page.content(), page.request.get(api.url + "/review/dashboard").text()):
        assert NAME_A not in text and NAME_B not in text and CASE_A not in text
    denied = [e for e in _events(api, "web.signin") if e.actor == f"test-{role}"]
    assert denied and denied[-1].result == "denied"


def test_revoked_key_or_changed_role_ends_the_session(world: Queued, context: BrowserContext) -> None:
    api = world.api
    key = api.key("reviewer", "reviewer-changing-role")
    page = context.new_page()
    _sign_in(page, api, key)
    expect(page).to_have_url(api.url + "/review/")
    with api.service.store.catalog.session() as s:
        s.execute(update(ApiKey).where(ApiKey.name == "reviewer-changing-role").values(role="investigator"))
    response = page.goto(api.url + f"/review/candidates/{world.candidates['a']}")
    assert response is not None and response.status == 403
    assert NAME_A not in page.content() and CASE_A not in page.content()
    with api.service.store.catalog.session() as s:
        s.execute(update(ApiKey).where(ApiKey.name == "reviewer-changing-role")
                  .values(role="reviewer", revoked_at=dt.datetime(2026, 1, 1)))
    page.goto(api.url + "/review/")
    expect(page).to_have_url(re.compile(r"/review/signin"))


def test_pages_are_accessible_on_a_laptop_screen(world: Queued, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["admin"])
    paths = ["/review/", f"/review/candidates/{world.candidates['b']}", "/review/dashboard",
             f"/review/candidates/{world.candidates['ad']}"]
    for path in paths:
        page.goto(api.url + path)
        problems = page.evaluate("""() => {
          const out = [];
          for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
            if (!(el.labels && el.labels.length)) out.push('unlabelled ' + el.name);
          }
          for (const img of document.querySelectorAll('img')) if (!img.alt) out.push('image without alt');
          for (const pic of document.querySelectorAll('svg.picture'))
            if (pic.getAttribute('role') !== 'img' || !pic.getAttribute('aria-label')) out.push('unnamed');
          if (document.documentElement.scrollWidth > window.innerWidth) out.push('horizontal scroll');
          if (document.querySelectorAll('h1').length !== 1) out.push('not one h1');
          return out;
        }""")
        assert problems == [], f"{path}: {problems}"
    # The queue is keyboard-driven too: j moves to the first candidate, Enter opens it.
    page.goto(api.url + "/review/")
    page.keyboard.press("j")
    first = page.locator("a.row-link").first
    expect(first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/review/candidates/\d+$"))
    # The signal filter keeps the face match only, the bank filter the ad.
    page.goto(api.url + "/review/?signal=faces")
    expect(page.locator("#queue-total")).to_have_text("1")
    page.get_by_label("Bank").select_option("ads")
    page.get_by_label("Signal").select_option("")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#queue-total")).to_have_text("1")
    page.get_by_role("link", name=f"#{world.candidates['ad']}", exact=True).click()
    # A copy: the matched region is drawn on both pictures; an ad is not blurred.
    expect(page.locator("#evidence")).to_contain_text(re.compile(r"\d+ geometric inliers of \d+ keypoint"))
    assert page.locator("#query-photo polygon.region").count() == 1  # the mapped outline
    assert page.locator("#reference-photo polygon.region").count() == 1
    expect(page.locator("#reference-photo")).to_have_attribute("data-revealed", "true")
    expect(page.get_by_role("link", name="Back to the queue")).to_have_attribute("href", "/review/?bank=ads")
    page.screenshot(path=str(ARTIFACTS / "candidate-copy.png"))
    # Decision buttons are on screen without scrolling, and keyboard focus is visible.
    page.goto(api.url + f"/review/candidates/{world.candidates['b']}")
    button = page.get_by_role("button", name="Reject")
    box = button.bounding_box()
    assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"]
    page.locator("#note").focus()
    page.keyboard.press("Tab")  # Confirm waits for the reveal (disabled), so focus goes to Reject
    expect(page.get_by_role("button", name="Confirm")).to_be_disabled()
    expect(page.get_by_role("button", name="Reject")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    # Typing a note does not trigger shortcuts.
    page.locator("#note").fill("checked the tiles; c and r inside a note are text")
    page.locator("#note").press("r")
    assert api.service.review.get(world.candidates["b"])[0].state == "pending"
