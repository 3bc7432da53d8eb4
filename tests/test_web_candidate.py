"""The candidate page in a real browser: evidence drawn for every kind, reveal before a face is
confirmed, blind second review, and the reference's context (the ad, the venue).

The real app runs on loopback (uvicorn) and Debian's Chromium is driven by
Playwright, as in tests/test_web_ui.py. Every candidate comes from the real
pipeline over HTTP: an ad reposted rotated (found by local features), a room
photographed again with a person in front (found by the venue search), and a
missing person's face. The drawing is checked against geometry the test
knows: the rotated copy's outline must land on the rotated picture's corners.
Screenshots go to test-artifacts/ (docs/screenshots/ holds copies for the README).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api
from conftest import jpeg_bytes, photo, png_bytes
from PIL import Image, ImageEnhance

from tests.test_scene import view, with_person
from tests.test_web_ui import ARTIFACTS, VIEWPORT, _face, _sign_in, browser  # noqa: F401  (fixture)

with contextlib.suppress(ImportError):  # the browser fixture reports a missing Playwright
    from playwright.sync_api import Browser, BrowserContext, Page, expect

ROTATION = 20.0  # degrees, counter-clockwise: a repost turned to dodge exact-match filters
AD_URL = "https://classifieds.example/ads/77-new-in-town"
PHONE = "+12125550143"
ROOMS = {"cafe": ("coffee.png", "Cafe Aurora", "12 Harbour Street, Portsmouth"),
         "launch_hall": ("rocket.jpg", "Hotel Meridian", "3 Dock Road, Southampton"),
         "cat_room": ("chelsea.png", "Guesthouse Linden", "40 Mill Lane, Winchester")}


@dataclass
class World:
    api: LiveApi
    face: int
    face_again: int
    copy: int
    venue: int
    pseudonym: str
    ref_item: int


def _queued(r: httpx.Response) -> int:
    assert r.status_code == 200, r.text
    queued = [c for c in r.json()["candidates"] if c["candidate_id"]]
    assert queued, r.text
    return int(queued[0]["candidate_id"])


def _match(api: LiveApi, bank: str, data: bytes) -> int:
    return _queued(api.as_("investigator").post("/v1/match", data={"banks": bank},
                                                files={"image": ("q.jpg", data, "image/jpeg")}))


def _ads(api: LiveApi) -> int:
    """Two ads sharing a phone (one network), then the first reposted rotated: a copy candidate."""
    admin = api.as_("admin")
    assert admin.post("/v1/banks", json={"name": "ads", "kind": "ads"}).status_code == 201
    first = {"url": AD_URL, "site": "classifieds.example", "posted_at": "2026-03-14T09:30:00Z"}
    for label, picture, extra in (("ad-77", photo("chelsea.png"), first),
                                  ("ad-78", photo("coffee.png"), {"site": "other.example"})):
        r = api.as_("ingest").post("/v1/banks/ads/items", data={
            "label": label, "attributes": json.dumps({**extra, "phones": "+1 212-555-0143"})},
            files={"image": (f"{label}.png", png_bytes(picture), "image/png")})
        assert r.status_code == 201, r.text
    assert api.as_("investigator").get("/v1/networks", params={"bank": "ads"}).status_code == 200  # links
    rotated = photo("chelsea.png").rotate(ROTATION, expand=True, resample=Image.BICUBIC,
                                          fillcolor=(255, 255, 255))
    return _match(api, "ads", jpeg_bytes(rotated, 88))


def _venues(api: LiveApi) -> int:
    """Three rooms, two reference views each, enrolled with name and address; a new view of one."""
    admin = api.as_("admin")
    assert admin.post("/v1/banks", json={"name": "hotels", "kind": "venue"}).status_code == 201
    for label, (name, venue, address) in ROOMS.items():
        record = {"label": label, "name": venue, "address": address, "room": "2"}
        r = admin.post("/v1/banks/hotels/subjects", data={"record": json.dumps(record)},
                       files=[("photos", (f"{label}-{seed}.jpg", jpeg_bytes(view(photo(name), seed)),
                                          "image/jpeg")) for seed in (1, 2)])
        assert r.status_code == 201, r.text
    occluded, _box = with_person(view(photo("coffee.png"), 7, strength=0.1), where=0.4)
    return _match(api, "hotels", jpeg_bytes(occluded))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("candidate") / "data") as api:
        admin = api.as_("admin")
        assert admin.post("/v1/banks", json={"name": "families", "kind": "missing_person"}).status_code == 201
        record = {**consent_record("a"), "case_ref": "CASE-CAND-1", "personal": {"name": "Quillon Example"}}
        r = admin.post("/v1/banks/families/subjects", data={"record": json.dumps(record)},
                       files=[("photos", ("p.png", png_bytes(_face()), "image/png"))])
        assert r.status_code == 201, r.text
        subject = r.json()["subject"]
        face = _match(api, "families", jpeg_bytes(ImageEnhance.Brightness(_face(220)).enhance(1.15), 82))
        face_again = _match(api, "families", jpeg_bytes(ImageEnhance.Contrast(_face(210)).enhance(1.2), 80))
        yield World(api, face, face_again, _ads(api), _venues(api), subject["pseudonym"],
                    int(subject["photos"][0]["item"]))


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811
    ctx = browser.new_context(viewport=VIEWPORT)
    yield ctx
    ctx.close()


def _shot(page: Page, name: str) -> None:
    """A small PNG of the page (256 colours), for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    img = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    img.save(ARTIFACTS / name, optimize=True)


def _polygon(page: Page, selector: str) -> list[tuple[float, float]]:
    text = page.locator(selector).first.get_attribute("points") or ""
    return [(float(x), float(y)) for x, y in (p.split(",") for p in text.split())]


def _rotated_corners(size: tuple[int, int], degrees: float) -> list[tuple[float, float]]:
    """Where PIL's ``rotate(degrees, expand=True)`` puts the corners of a ``size`` picture."""
    w, h = size
    t = math.radians(degrees)
    cos, sin = math.cos(t), math.sin(t)
    new_w, new_h = abs(w * cos) + abs(h * sin), abs(w * sin) + abs(h * cos)
    out = []
    for x, y in ((0, 0), (w, 0), (w, h), (0, h)):
        dx, dy = x - w / 2, y - h / 2
        out.append((new_w / 2 + dx * cos + dy * sin, new_h / 2 - dx * sin + dy * cos))
    return out


def test_a_rotated_copy_is_drawn_as_a_rotated_box_with_its_correspondences(
        world: World, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["reviewer"], f"/review/candidates/{world.copy}")
    expect(page.locator("#evidence")).to_contain_text(re.compile(r"\d+ geometric inliers of \d+ keypoint "
                                                                 r"matches agree on one mapping"))
    # The reference's outline on the query is the rotated picture's outline, corner for corner.
    quad = _polygon(page, "#query-photo polygon.region")
    expected = _rotated_corners(photo("chelsea.png").size, ROTATION)
    assert len(quad) == 4
    for x, y in expected:
        assert min(math.dist((x, y), q) for q in quad) < 8, (quad, expected)
    assert len({round(y) for _x, y in quad}) == 4  # no edge is horizontal: not an axis-aligned box
    assert page.locator("#query-photo rect.region").count() == 0
    # The query's outline on the reference covers the whole reference (the repost shows all of it).
    assert len(_polygon(page, "#reference-photo polygon.region")) == 4
    # Keypoints on both pictures and one line per correspondence, at most 50 of them.
    row, _decisions = api.service.review.get(world.copy)
    pairs = row.evidence["local_pairs"]
    assert 10 <= len(pairs) <= 50 and row.evidence["local_inliers"] >= len(pairs)
    assert page.locator("#query-photo .keypoints circle").count() == len(pairs)
    assert page.locator("#reference-photo .keypoints circle").count() == len(pairs)
    assert page.locator("#pairs-drawing line").count() == len(pairs)
    # Each pair maps through the rotation: the query point is the rotated reference point.
    w, h = photo("chelsea.png").size
    t = math.radians(ROTATION)
    cx = (abs(w * math.cos(t)) + abs(h * math.sin(t))) / 2
    cy = (abs(w * math.sin(t)) + abs(h * math.cos(t))) / 2
    for qx, qy, rx, ry in pairs:
        dx, dy = rx - w / 2, ry - h / 2
        assert math.dist((qx, qy), (cx + dx * math.cos(t) + dy * math.sin(t),
                                    cy - dx * math.sin(t) + dy * math.cos(t))) < 4
    # Only the signals that spoke; the silent hashes share one line.
    expect(page.locator("#signals")).to_contain_text("Local features (keypoints verified by a homography)")
    expect(page.locator("#signals")).not_to_contain_text("Perceptual hash")
    expect(page.locator("#evidence")).not_to_contain_text("not similar by this hash")
    expect(page.locator("#quiet-signals")).to_contain_text("Not similar by the perceptual hashes")
    # The ad behind the reference: URL, site, phone, first seen, and its network.
    facts = page.locator("#ad-facts")
    expect(facts).to_contain_text(AD_URL)
    expect(facts).to_contain_text("classifieds.example")
    expect(facts).to_contain_text(PHONE)
    expect(facts).to_contain_text("2026-03-14 09:30 UTC")
    network = re.compile(r"N-[0-9a-f]{12}:\s+2 ads, 1 link\s+\(1 phone\)")
    expect(page.locator("#ad-network")).to_contain_text(network)
    expect(page.locator("#ad-network")).to_contain_text("ad-78")
    _shot(page, "candidate-rotated-copy.png")


def test_a_venue_match_draws_its_inliers_and_names_the_venue(world: World, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["reviewer"], f"/review/candidates/{world.venue}")
    row, _decisions = api.service.review.get(world.venue)
    inliers = row.evidence["scene_inliers"]
    assert inliers >= 20
    expect(page.locator("#evidence")).to_contain_text(f"{inliers} geometric inliers")
    expect(page.locator("#evidence")).to_contain_text("one 3-D scene")
    expect(page.locator("#evidence")).to_contain_text("Room descriptor (VLAD")
    signals = page.locator("#signals")
    expect(signals).to_contain_text("Room: room descriptor (VLAD)")
    expect(signals).to_contain_text("geometric inliers")
    expect(signals).not_to_contain_text("Perceptual hash")
    # The verified region and the agreeing keypoints on both photos, lines between the pairs.
    assert page.locator("#query-photo polygon.hull").count() == 1
    assert page.locator("#reference-photo polygon.hull").count() == 1
    shown = min(inliers, 50)
    assert page.locator("#query-photo .keypoints circle").count() == shown
    assert page.locator("#pairs-drawing line").count() == shown
    # Every drawn point lies on its own photo (original pixels, whatever size features were taken at).
    def size(selector: str) -> tuple[float, float]:
        w, h = (page.locator(selector).get_attribute("viewBox") or "").split()[2:]
        return float(w), float(h)
    (qw, qh), (rw, rh) = size("#query-photo"), size("#reference-photo")
    for qx, qy, rx, ry in row.evidence["scene_pairs"]:
        assert 0 <= qx <= qw and 0 <= qy <= qh and 0 <= rx <= rw and 0 <= ry <= rh
    # The venue in plain words, not a raw dict among "other evidence values".
    facts = page.locator("#subject-facts")
    expect(facts.locator("dd.venue-venue")).to_have_text("Cafe Aurora")
    expect(facts.locator("dd.venue-address")).to_have_text("12 Harbour Street, Portsmouth")
    assert "{'name'" not in page.content()
    assert not any("Harbour Street" in text for text in page.locator("details").all_inner_texts())
    _shot(page, "candidate-venue.png")


def _csrf(page: Page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value") or ""


def _circles(page: Page, selector: str) -> list[tuple[float, float]]:
    return [(float(c.get_attribute("cx") or "nan"), float(c.get_attribute("cy") or "nan"))
            for c in page.locator(selector).all()]


def test_a_face_match_draws_both_faces_with_their_five_landmarks(world: World,
                                                                  context: BrowserContext) -> None:
    """Boxes and landmarks on both pictures; the query is the reference scaled by 220/200, so its
    landmarks must be the reference's scaled alike (issue 15: landmarks drawn, not only boxes)."""
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["admin"], f"/review/candidates/{world.face}")
    expect(page.locator("#legend")).to_contain_text("face landmarks (eyes, nose, mouth corners)")
    query = _circles(page, "#query-photo g.landmarks circle")
    reference = _circles(page, "#reference-photo g.landmarks circle")
    assert len(query) == len(reference) == 5
    for svg, points in (("#query-photo", query), ("#reference-photo", reference)):
        box = page.locator(f"{svg} rect.face").first
        x, y = float(box.get_attribute("x") or 0), float(box.get_attribute("y") or 0)
        w, h = float(box.get_attribute("width") or 0), float(box.get_attribute("height") or 0)
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in points), (svg, points, (x, y, w, h))
        assert max(points[0][1], points[1][1]) < points[2][1] < min(points[3][1], points[4][1])
    assert all(abs(q - 1.1 * r) <= 6 for qp, rp in zip(query, reference, strict=True)
               for q, r in zip(qp, rp, strict=True)), (query, reference)
    label = page.locator("#query-photo").get_attribute("aria-label") or ""
    assert "5 face landmarks" in label
    _shot(page, "candidate-face-landmarks.png")


def test_a_face_is_confirmed_only_after_the_reveal_and_the_second_look_is_blind(
        world: World, browser: Browser) -> None:  # noqa: F811
    api = world.api
    first_ctx = browser.new_context(viewport=VIEWPORT)
    page = first_ctx.new_page()
    _sign_in(page, api, api.keys["reviewer"], f"/review/candidates/{world.face}")
    confirm = page.get_by_role("button", name="Confirm")
    expect(confirm).to_be_disabled()
    expect(page.locator("#reveal-first")).to_contain_text("Reveal the reference photo before confirming")
    _shot(page, "candidate-face-reveal-first.png")
    page.keyboard.press("c")  # the shortcut does nothing while the button is disabled
    assert api.service.review.get(world.face)[0].state == "pending"
    # Around the button, straight to the form: refused by the review queue, nothing recorded.
    r = page.request.post(api.url + f"/review/candidates/{world.face}/decision",
                          form={"action": "confirm", "csrf": _csrf(page)}, max_redirects=0)
    assert r.status == 303 and "error=reveal_required" in r.headers["location"]
    row, decisions = api.service.review.get(world.face)
    assert row.state == "pending" and decisions == []
    page.goto(api.url + r.headers["location"])
    expect(page.get_by_role("alert")).to_contain_text("Reveal the reference photo before confirming")

    page.keyboard.press("v")
    expect(page.locator("#reference-photo")).to_have_attribute("data-revealed", "true")
    expect(confirm).to_be_enabled()
    page.locator("#note").fill("same mole under the left eye")
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(re.compile(rf"decided={world.face}&outcome=awaiting_second"))

    # The second reviewer: neither the first decision nor its note, until they decide.
    second_key = api.key("reviewer", "second-reviewer")
    second_ctx = browser.new_context(viewport=VIEWPORT)
    other = second_ctx.new_page()
    _sign_in(other, api, second_key, f"/review/candidates/{world.face}")
    expect(other.locator("#blind-review")).to_contain_text("1 earlier decision and its note are hidden")
    assert "same mole" not in other.content() and "test-reviewer" not in other.content()
    other.keyboard.press("v")
    other.get_by_role("button", name="Confirm").click()
    expect(other).to_have_url(re.compile(rf"decided={world.face}&outcome=confirmed"))
    other.goto(api.url + f"/review/candidates/{world.face}")
    expect(other.locator("ol.history")).to_contain_text("same mole under the left eye")
    first_ctx.close()
    second_ctx.close()


def test_api_decisions_follow_the_same_rules(world: World) -> None:
    api = world.api
    cid = world.face_again
    first = api.as_("reviewer")
    r = first.post(f"/v1/review/candidates/{cid}/decision", json={"action": "confirm", "note": "ears match"})
    assert r.status_code == 409 and r.json()["error"] == "reveal_required", r.text
    assert "/v1/subjects/" in r.json()["detail"]
    one = first.get(f"/v1/review/candidates/{cid}").json()
    assert one["reveal_before_confirm"] and one["revealed"] is False and one["decisions"] == []
    # The audited photo route is the API's reveal.
    photo_r = first.get(f"/v1/subjects/{world.pseudonym}/photos/{world.ref_item}")
    assert photo_r.status_code == 200
    reveals = [e for e in api.service.audit.events(limit=100_000)
               if e.action == "subject.photo.reveal" and e.actor == "test-reviewer"]
    assert reveals and reveals[-1].result == "ok"
    assert first.get(f"/v1/review/candidates/{cid}").json()["revealed"] is True
    r = first.post(f"/v1/review/candidates/{cid}/decision", json={"action": "confirm", "note": "ears match"})
    assert r.status_code == 200 and r.json()["state"] == "awaiting_second", r.text
    assert r.json()["decisions"][0]["note"] == "ears match"  # the one who decided sees their own

    second = httpx.Client(base_url=api.url, headers={"X-API-Key": api.key("reviewer", "api-second")},
                          timeout=60)
    blind: dict[str, Any] = second.get(f"/v1/review/candidates/{cid}").json()
    assert blind["blind_review"] and blind["decisions"] == [] and blind["decisions_hidden"] == 1
    assert "ears match" not in json.dumps(blind)
    listed = second.get("/v1/review/candidates", params={"bank": "families"}).json()
    assert "ears match" not in json.dumps(listed)
    r = second.post(f"/v1/review/candidates/{cid}/decision", json={"action": "confirm"})
    assert r.status_code == 409 and r.json()["error"] == "reveal_required"
    assert second.get(f"/v1/subjects/{world.pseudonym}/photos/{world.ref_item}").status_code == 200
    r = second.post(f"/v1/review/candidates/{cid}/decision", json={"action": "confirm"})
    assert r.status_code == 200 and r.json()["state"] == "confirmed"
    assert [d["note"] for d in r.json()["decisions"]] == ["ears match", ""]
    second.close()
