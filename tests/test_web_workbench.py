"""The workbench pages in a real browser: queue triage, search, networks and the admin pages.

Debian's Chromium through Playwright against the real app on loopback
(tests/api_support.py). The data come from the real pipeline: a missing
person enrolled over the API, ads ingested over the API (which links them
into networks and checks them against the missing-person bank), and
investigators' searches that put exact reposts (score 1.00) and the face
match in the queue. Every page is checked at a laptop size and at a 390 px
phone width (nothing wider than the screen), and screenshots of both go to
test-artifacts/ (the README's docs/screenshots are chosen from them).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api
from conftest import jpeg_bytes, photo, png_bytes
from playwright.sync_api import Browser, BrowserContext, Page, expect
from test_web_ui import ARTIFACTS, VIEWPORT, _sign_in, browser  # noqa: F401 - browser is a fixture

NAME = "Quillon Examplechild"
CASE_CODE = "CASE-WB-5512"
PHONE = {"width": 390, "height": 844}
PHONE_A = "+1 212 555 0143"


def _face(side: int = 200) -> Any:
    return photo("astronaut.png").crop((130, 20, 370, 260)).resize((side, side))


@dataclass
class World:
    api: LiveApi
    subject: str
    case_ref: str
    person: int  # the face match of the missing person (score < 1)
    copies: list[int]  # exact reposts of ads (score 1.00)


def _search(api: LiveApi, bank: str, data: bytes) -> dict[str, Any]:
    r = api.as_("investigator").post("/v1/match", data={"banks": bank},
                                     files={"image": ("q.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("workbench") / "data") as api:
        admin = api.as_("admin")
        assert admin.post("/v1/banks", json={"name": "ads", "kind": "ads"}).status_code == 201
        assert admin.post("/v1/banks", json={"name": "families", "kind": "missing_person",
                                             "policy": {"watches": []}}).status_code == 201
        record = {**consent_record("a"), "case_ref": CASE_CODE, "personal": {"name": NAME}}
        r = admin.post("/v1/banks/families/subjects", data={"record": json.dumps(record)},
                       files=[("photos", ("p.png", png_bytes(_face()), "image/png"))])
        assert r.status_code == 201, r.text
        subject = r.json()["subject"]["pseudonym"]
        case = api.service.alerts.cases.create("River family", "inv-owner")
        api.service.alerts.cases.add_subjects(case.ref, [subject])
        # Ads: two networks. n1-n3 share a photo (n2 reposts n1's) and a phone (n3); n4-n5 a phone.
        pictures = {"n1": photo("chelsea.png"), "n2": photo("chelsea.png").resize((340, 225)),
                    "n3": photo("rocket.jpg"), "n4": photo("coffee.png"), "n5": photo("brick.png"),
                    "n6": photo("camera.png")}
        fields = {"n1": ("one.example", PHONE_A, "2026-03-01"),
                  "n2": ("two.example", "", "2026-03-02"),
                  "n3": ("one.example", PHONE_A, "2026-03-04"),
                  "n4": ("three.example", "415.867.5309", "2026-03-03"),
                  "n5": ("three.example", "415 867 5309", "2026-03-05"),
                  "n6": ("two.example", "", "2026-03-06")}
        records = [{"label": k, "attributes": {"site": s, "url": f"https://{s}/ad/{k}", "posted_at": t,
                                               "phones": ph}} for k, (s, ph, t) in fields.items()]
        r = api.as_("ingest").post("/v1/banks/ads/items/batch", data={"records": json.dumps(records)},
                                   files=[("images", (f"{k}.png", png_bytes(p), "image/png"))
                                          for k, p in pictures.items()])
        assert r.status_code == 200 and r.json()["indexed"] == 6, r.text
        # The face match first, then exact reposts found by an investigator: tied 1.00 candidates
        # in the ads bank, newer than the missing person's (so "highest score first" puts them first).
        hit = _search(api, "families", jpeg_bytes(_face(220), 82))["candidates"][0]
        assert hit["candidate_id"], hit
        copies = []
        for k in ("n4", "n5", "n6"):
            best = _search(api, "ads", png_bytes(pictures[k]))["candidates"][0]
            assert best["score"] == 1.0 and best["candidate_id"], best
            copies.append(best["candidate_id"])
        yield World(api, subject, case.ref, hit["candidate_id"], copies)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811 - the imported fixture
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)
    yield ctx
    ctx.close()


def _events(api: LiveApi, action: str) -> list[Any]:
    return [e for e in api.service.audit.events(limit=100_000) if e.action == action]


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # Thumbnails load lazily (each view of a query image is audited): scroll them in first.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    for _ in range(100):  # wait_for_function evaluates a string, which the pages' CSP refuses
        if page.evaluate("Array.from(document.images).every(i => i.complete)"):
            break
        page.wait_for_timeout(50)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _fits(page: Page) -> None:
    """Nothing wider than the viewport, and the page's basic accessibility holds."""
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url
    problems = page.evaluate("""() => {
      const out = [];
      for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea'))
        if (!(el.labels && el.labels.length)) out.push('unlabelled ' + (el.name || el.id));
      for (const img of document.querySelectorAll('img')) if (!img.alt) out.push('image without alt');
      if (document.querySelectorAll('h1').length !== 1) out.push('not one h1');
      return out;
    }""")
    assert problems == [], f"{page.url}: {problems}"


def test_queue_lists_missing_persons_first_with_thumbnails_and_no_names(world: World,
                                                                        context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["reviewer"])
    expect(page).to_have_url(api.url + "/review/")
    order = page.locator("table.queue tbody tr[data-candidate]").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.candidate))")
    assert order[0] == world.person, order  # before the tied 1.00 copies
    assert set(world.copies) <= set(order[1:])
    page.goto(api.url + "/review/?order=score")  # score alone: the ties go newest first
    by_score = page.locator("table.queue tbody tr[data-candidate]").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.candidate))")
    assert by_score[0] != world.person and by_score[0] in world.copies, by_score
    page.goto(api.url + "/review/")
    body = page.content()
    assert NAME not in body and CASE_CODE not in body
    # Thumbnails: the query image audited, the missing person's reference blurred (not audited).
    row = page.locator(f"tr[data-candidate='{world.person}']")
    for img in row.locator("img.thumb").all():
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("i => i.naturalWidth") > 0
    before = len(_events(api, "review.reference_image"))
    blurred = page.request.get(api.url + f"/review/candidates/{world.person}/thumb/reference")
    assert blurred.status == 200 and blurred.headers["content-type"] == "image/jpeg"
    assert len(_events(api, "review.reference_image")) == before  # the blur shows no one
    sharp = page.request.get(api.url + f"/review/candidates/{world.copies[0]}/thumb/reference")
    assert sharp.status == 200
    assert [e.detail.get("thumb") for e in _events(api, "review.reference_image")][-1] is True
    assert any(e.detail.get("thumb") for e in _events(api, "review.query_image"))
    _fits(page)
    _shot(page, "queue")
    # Grouped by case: the missing person's candidate under its opaque case ref, the rest under "No case".
    page.get_by_label("Group").select_option("case")
    page.get_by_role("button", name="Apply filters").click()
    groups = page.locator("tbody.group").evaluate_all("gs => gs.map(g => g.dataset.group)")
    assert groups == [world.case_ref, ""]
    expect(page.locator(f"tbody.group[data-group='{world.case_ref}'] tr[data-candidate]")).to_have_count(1)
    assert "River family" not in page.content()  # the case title is the owner's and admins'
    page.get_by_label("Group").select_option("query")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("tbody.group")).to_have_count(len(order))  # one query image each


def test_bulk_reject_then_undo_and_an_admin_reopens(world: World, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["reviewer"])
    first, second = world.copies[:2]
    page.locator(f"#sel-{first}").check()
    page.locator(f"#sel-{second}").check()
    page.get_by_label("Note for the ticked candidates").fill("reposts of one studio photo")
    page.get_by_role("button", name="Reject ticked candidates").click()
    expect(page.locator("#bulk-result")).to_have_text("2 candidates rejected.")
    assert api.service.review.get(first)[0].state == "rejected"
    decided = [e for e in _events(api, "review.decide") if e.detail.get("bulk")]
    assert {e.object for e in decided} == {f"candidate:{first}", f"candidate:{second}"}
    assert all(e.actor == "test-reviewer" and e.detail.get("via") == "web" for e in decided)
    # Undo one of them (the reviewer's own decision, within the window), with a reason.
    page.goto(api.url + "/review/?state=rejected")
    page.locator(f"tr[data-candidate='{first}'] a.reopen-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Undo the decision on candidate {first}")
    page.get_by_label("Why?").fill("the second one is a different room")
    page.get_by_role("button", name="Undo my decision").click()
    expect(page.locator("#reopen-result")).to_have_text("The decision was undone.")
    assert api.service.review.get(first)[0].state == "pending"
    _fits(page)
    # Someone else's decision: a second reviewer is refused, and told to ask an admin.
    other = context.browser.new_context(viewport=VIEWPORT)
    try:
        page2 = other.new_page()
        _sign_in(page2, api, api.key("reviewer", "wb-second"), f"/review/candidates/{second}/reopen")
        expect(page2.locator("#reopen-unavailable")).to_contain_text("Ask an administrator")
        csrf = page2.locator("input[name=csrf]").first.input_value()  # the form is not offered: post it
        page2.request.post(api.url + f"/review/candidates/{second}/reopen",
                           form={"csrf": csrf, "reason": "not mine to undo"})
        page2.goto(api.url + f"/review/candidates/{second}/reopen?error=not_your_decision")
        expect(page2.locator("#reopen-error")).to_contain_text("an administrator may reopen")
        assert api.service.review.get(second)[0].state == "rejected"
    finally:
        other.close()
    # The admin reopens it.
    admin = context.browser.new_context(viewport=VIEWPORT)
    try:
        page3 = admin.new_page()
        _sign_in(page3, api, api.keys["admin"], f"/review/candidates/{second}/reopen")
        expect(page3.get_by_role("heading", level=1)).to_have_text(f"Reopen candidate {second}")
        page3.get_by_label("Why?").fill("the owner asked for a second look")
        page3.get_by_role("button", name="Reopen").click()
        expect(page3.locator("#reopen-result")).to_have_text("The candidate was reopened.")
        _shot(page3, "workbench-reopened")
    finally:
        admin.close()
    assert api.service.review.get(second)[0].state == "pending"
    reopens = [(e.actor, e.result, e.detail.get("transition") or e.detail.get("error"))
               for e in _events(api, "review.reopen")]
    assert reopens[-3:] == [("test-reviewer", "ok", "undo"), ("wb-second", "rejected", "not_your_decision"),
                            ("test-admin", "ok", "reopen")]
    assert "different room" not in json.dumps([e.to_json() for e in api.service.audit.events(limit=10**5)])


def test_export_of_confirmed_matches_from_the_queue(world: World, context: BrowserContext) -> None:
    api = world.api
    cid = world.copies[2]
    api.service.review.record_reveal([cid], "test-reviewer")
    api.service.review.decide(cid, "test-reviewer", "reviewer", "confirm")
    page = context.new_page()
    _sign_in(page, api, api.keys["reviewer"])
    with page.expect_download() as got:
        page.locator("#export-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert got.value.suggested_filename == "confirmed-matches.csv"
    assert [int(r["candidate_id"]) for r in rows] == [cid] and rows[0]["bank"] == "ads"
    r = page.request.get(api.url + "/review/export/confirmed.json?bank=ads")
    assert r.status == 200 and [m["candidate_id"] for m in r.json()["matches"]] == [cid]
    assert page.request.get(api.url + "/review/export/confirmed.xlsx").status == 404
    events = [(e.actor, e.result, e.detail.get("format"), e.detail.get("via"))
              for e in _events(api, "review.export")]
    assert events[-3:] == [("test-reviewer", "ok", "csv", "web"), ("test-reviewer", "ok", "json", "web"),
                           ("test-reviewer", "rejected", "xlsx", "web")]


def test_search_page_uploads_matches_and_queues(world: World, context: BrowserContext,
                                                tmp_path: Path) -> None:
    api = world.api
    query = tmp_path / "from-an-ad.jpg"
    query.write_bytes(jpeg_bytes(_face(230), 80))
    # An investigator: pseudonyms and scores, no case code, no reference picture, no candidate pages.
    page = context.new_page()
    _sign_in(page, api, api.keys["investigator"], "/review/search")
    expect(page).to_have_url(api.url + "/review/search")
    page.get_by_label("Image").set_input_files(str(query))
    page.get_by_label("families").check()
    page.get_by_role("button", name="Search").click()
    results = page.locator("li.result")
    expect(results.first).to_have_attribute("data-bank", "families")
    expect(results.first).to_contain_text(world.subject)
    expect(results.first.locator(".queued")).to_contain_text("In the review queue as #")
    assert CASE_CODE not in page.content() and NAME not in page.content()
    assert page.locator("li.result img").count() == 0
    # The evidence drawn on the searched image: the face compared, boxed, with its five landmarks.
    drawing = results.first.locator(".query-drawing svg.picture")
    expect(drawing.locator("rect.shape.face")).to_have_count(1)
    expect(drawing.locator("g.landmarks circle")).to_have_count(5)
    href = drawing.locator("image").get_attribute("href") or ""
    assert re.fullmatch(r"/review/search/candidates/\d+/query", href), href
    assert page.request.get(api.url + href).body() == query.read_bytes()  # the image that was sent
    # Another investigator's query is not theirs to see: as an id that does not exist.
    theirs = api.client(api.key("investigator", "inv-elsewhere")).post(
        "/v1/match", data={"banks": "ads"},
        files={"image": ("r.png", png_bytes(photo("rocket.jpg")), "image/png")})
    other = next(c["candidate_id"] for c in theirs.json()["candidates"] if c["candidate_id"])
    for cid in (other, 10_000):
        assert page.request.get(api.url + f"/review/search/candidates/{cid}/query").status == 404
    results.first.locator("details.why summary").click()
    expect(results.first.locator("details.why")).to_contain_text("Face distance")
    [event] = [e for e in _events(api, "match") if e.detail.get("via") == "web"][-1:]
    assert event.actor == "test-investigator" and event.detail["queued"] >= 1
    _fits(page)
    _shot(page, "search-investigator")
    # A bank that does not exist is named, and nothing is searched.
    r = page.request.post(api.url + "/review/search", multipart={
        "csrf": page.locator("input[name=csrf]").first.input_value(), "banks": "missing",
        "image": {"name": "q.jpg", "mimeType": "image/jpeg", "buffer": query.read_bytes()}})
    assert r.status == 404 and "Unknown bank(s): missing." in r.text()
    # An admin: blurred reference thumbnails for a missing person, links into the candidate pages.
    admin = context.browser.new_context(viewport=VIEWPORT)
    try:
        page = admin.new_page()
        _sign_in(page, api, api.keys["admin"], "/review/search")
        page.get_by_label("Image").set_input_files(str(query))
        page.get_by_role("button", name="Search").click()
        first = page.locator("li.result").first
        expect(first.locator("img.thumb")).to_have_attribute("alt", "Reference in families, blurred")
        link = first.locator("a.candidate-link")
        expect(link).to_contain_text("In the review queue as #")
        _shot(page, "search")
        link.click()
        expect(page).to_have_url(re.compile(r"/review/candidates/\d+$"))
    finally:
        admin.close()
    # Reviewers do not search (as POST /v1/match).
    rev = context.browser.new_context(viewport=VIEWPORT)
    try:
        page = rev.new_page()
        _sign_in(page, api, api.keys["reviewer"])
        assert page.goto(api.url + "/review/search").status == 403
    finally:
        rev.close()


def test_networks_page_lists_and_draws_a_network(world: World, context: BrowserContext) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["investigator"], "/review/networks")
    expect(page).to_have_url(api.url + "/review/networks")
    rows = page.locator("#network-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("td").first).to_have_text("3")  # n1, n2, n3
    _fits(page)
    _shot(page, "networks")
    rows.first.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"/review/networks/N-[0-9a-f]{12}$"))
    graph = page.locator("#network-graph")
    expect(graph.locator("g.node")).to_have_count(3)
    kinds = graph.locator("line.edge").evaluate_all("ls => ls.map(l => l.getAttribute('class'))")
    assert "edge g-photo" in kinds and "edge g-phone" in kinds, kinds
    expect(page.locator("#network-ads")).to_contain_text("https://one.example/ad/n1")
    expect(page.locator("#network-ads")).to_contain_text("+12125550143")
    expect(page.locator("#network-links")).to_contain_text("phone")
    assert page.locator("script").count() <= 1  # the page's one shortcut script; the drawing needs none
    _fits(page)
    _shot(page, "network")
    # The other network (n4, n5: one phone) holds the ads an investigator searched: its candidates
    # are listed by id and state, without links for an investigator (candidate pages are reviewers').
    page.goto(api.url + "/review/networks")
    page.locator("#network-table tbody tr").nth(1).locator("a").first.click()
    listed = page.locator("#network-candidates")
    expect(listed).to_contain_text(f"#{world.copies[0]}")
    assert listed.locator("a").count() == 0
    # Reviewers do not see networks (as GET /v1/networks).
    rev = context.browser.new_context(viewport=VIEWPORT)
    try:
        p = rev.new_page()
        _sign_in(p, api, api.keys["reviewer"])
        assert p.goto(api.url + "/review/networks").status == 403
    finally:
        rev.close()


def test_admin_pages_keys_audit_and_banks(world: World, context: BrowserContext,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    api = world.api
    page = context.new_page()
    _sign_in(page, api, api.keys["admin"], "/review/admin/keys")
    expect(page).to_have_url(api.url + "/review/admin/keys")
    page.get_by_label("Name").fill("field-investigator-7")
    page.get_by_label("Role").select_option("investigator")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator(".created-key h2")).to_have_text(
        "Created an investigator key \u201cfield-investigator-7\u201d")
    key = page.locator("#new-key").input_value()
    assert key.startswith("rk_")
    with api.client(key) as c:
        assert c.get("/v1/whoami").json() == {"name": "field-investigator-7", "role": "investigator"}
    _shot(page, "admin-keys")
    api.key("reviewer", "idle-reviewer-3")  # issued, never used
    page.goto(api.url + "/review/admin/keys")
    assert key not in page.content()  # shown once
    # Last use: the key that just asked /v1/whoami has a time, the idle one says so.
    expect(page.locator("tr[data-key='field-investigator-7'] td[data-label='Last used']")).to_have_text(
        re.compile(r"\d"))
    expect(page.locator("tr[data-key='idle-reviewer-3'] td[data-label='Last used']")).to_have_text("never")
    page.locator("tr[data-key='field-investigator-7']").get_by_role("button", name="Revoke").click()
    expect(page.locator("#admin-message")).to_contain_text("revoked")
    with api.client(key) as c:
        assert c.get("/v1/whoami").status_code == 401
    assert [e.result for e in _events(api, "key.create")][-1] == "ok"
    assert [(e.object, e.result) for e in _events(api, "key.revoke")][-1] == (
        "key:field-investigator-7", "ok")
    _fits(page)
    # The audit log: newest first, filtered, and the chain verified.
    page.goto(api.url + "/review/admin/audit")
    expect(page.locator("#chain-status")).to_have_attribute("data-ok", "true")
    page.get_by_label("Action").select_option("key.revoke")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    expect(page.locator("#audit-table")).to_contain_text("key:field-investigator-7")
    _fits(page)
    page.goto(api.url + "/review/admin/audit")
    _shot(page, "admin-audit")
    # A large log is verified on request (the test lowers "large" in the running server).
    import api.web.admin as admin_pages
    monkeypatch.setattr(admin_pages, "AUTO_VERIFY_EVENTS", 1)
    page.goto(api.url + "/review/admin/audit")
    expect(page.locator("#chain-status")).to_have_attribute("data-ok", "unknown")
    page.get_by_role("link", name="Verify the chain now").click()
    expect(page.locator("#chain-status")).to_have_attribute("data-ok", "true")
    monkeypatch.undo()
    # Bank policies: families watches no ads bank; make it watch "ads" and need one reviewer.
    page.goto(api.url + "/review/admin/banks")
    card = page.locator("section.bank-card[data-bank='families']")
    expect(card.locator("dd.watches")).to_have_text("no ads bank")
    card.get_by_label("only:").check()
    card.get_by_label("ads", exact=True).check()
    card.get_by_role("button", name="Save watches").click()
    expect(page.locator("#admin-message")).to_have_text("Watches saved.")
    expect(card.locator("dd.watches")).to_have_text("ads")
    card.get_by_label("Second reviewer").select_option("no")
    card.get_by_role("button", name="Save", exact=True).click()
    expect(card.locator("dd.second-review")).to_have_text("one reviewer")
    assert api.service.store.catalog.bank("families").policy["second_review"] is False
    assert [e.result for e in _events(api, "bank.watches")][-1] == "ok"
    assert [(e.detail.get("second_review"), e.detail.get("via")) for e in _events(api, "bank.policy")][-1] \
        == (False, "web")
    _fits(page)
    _shot(page, "admin-banks")
    card.get_by_label("Second reviewer").select_option("default")
    card.get_by_role("button", name="Save", exact=True).click()
    expect(card.locator("dd.second-review")).to_contain_text("two different reviewers")
    # Other roles get nothing of these pages.
    rev = context.browser.new_context(viewport=VIEWPORT)
    try:
        p = rev.new_page()
        _sign_in(p, api, api.keys["reviewer"])
        for path in ("/review/admin/keys", "/review/admin/audit", "/review/admin/banks"):
            response = p.goto(api.url + path)
            assert response.status == 403 and "test-admin" not in p.content(), path
    finally:
        rev.close()


# Phone screenshots the README shows (docs/screenshots/, refreshed by `make screenshots`).
PHONE_SHOTS = {("reviewer", "/review/"): "queue-phone",
               ("reviewer", "/review/?group=case"): "queue-by-case-phone",
               ("reviewer", "/review/candidates/{copy}/reopen"): "undo-phone",
               ("investigator", "/review/networks/{network}"): "network-phone"}


@pytest.mark.parametrize("role,paths", [
    ("reviewer", ["/review/", "/review/?group=case", "/review/?state=rejected",
                  "/review/candidates/{copy}/reopen"]),
    ("investigator", ["/review/search", "/review/networks", "/review/networks/{network}"]),
    ("admin", ["/review/admin/keys", "/review/admin/audit", "/review/admin/banks", "/review/search"]),
])
def test_every_page_fits_a_390_px_phone(world: World, phone: BrowserContext, role: str,
                                        paths: list[str]) -> None:
    api = world.api
    network = api.as_("investigator").get("/v1/networks").json()["networks"][0]["id"]
    page = phone.new_page()  # copies[2]: confirmed by the reviewer minutes ago, still undoable
    _sign_in(page, api, api.keys[role], paths[0].split("?")[0])
    for path in paths:
        page.goto(api.url + path.format(copy=world.copies[2], network=network))
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        _fits(page)
        name = re.sub(r"[^a-z0-9]+", "-", path.format(copy="c", network="n").lower()).strip("-")
        _shot(page, PHONE_SHOTS.get((role, path), f"phone-{role}-{name or 'queue'}"))
