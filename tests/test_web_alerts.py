"""The alert pages in a real browser: the owner acknowledges and closes an alert; failing ones show.

The alert comes from the real path (tests/test_alerts.py helpers: a face
enrolled into a missing-person bank, a re-encoded copy matched over HTTP,
two reviewers confirm). The investigator who owns the case signs in, sees
only its own alerts and none of the reviewer pages, acknowledges and records
an outcome; both are audit events with ``via=web``. The dashboard shows the
response times from first sighting to outcome.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from api_support import LiveApi, encryption_key, live_api
from conftest import jpeg_bytes
from playwright.sync_api import Browser, BrowserContext, expect
from test_alerts import confirm_twice, enroll, face, match
from test_web_ui import VIEWPORT, _sign_in, browser  # noqa: F401 - browser is a fixture

from api.delivery import Deliverer

OWNER = "web-owner"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveApi, dict[str, int]]]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("web-alerts") / "data") as api:
        assert api.as_("admin").post("/v1/banks", json={"name": "families", "kind": "missing_person"}
                                     ).status_code == 201
        pseudonym = enroll(api, "mp-w", face())
        owner_key = api.key("investigator", OWNER)
        case = api.service.alerts.cases.create("Web case", OWNER)
        api.service.alerts.cases.add_subjects(case.ref, [pseudonym])
        # A receiver that does not exist: the delivery fails and must show as failing.
        api.service.alerts.subscribe(OWNER, "http://127.0.0.1:9/unreachable")
        second = api.key("reviewer", "second-web-reviewer")
        cid = match(api, jpeg_bytes(face(220), 84))
        confirm_twice(api, second, cid)
        Deliverer(api.service, backoff_base_s=0).run_once()
        [alert] = api.service.alerts.all_views()
        yield api, {"alert": alert.id, "owner_key": owner_key}  # type: ignore[dict-item]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811 - the imported fixture
    ctx = browser.new_context(viewport=VIEWPORT)
    yield ctx
    ctx.close()


def test_the_owner_acknowledges_and_closes_its_alert_in_the_pages(world: tuple[LiveApi, dict],
                                                                   context: BrowserContext) -> None:
    api, ids = world
    page = context.new_page()
    _sign_in(page, api, str(ids["owner_key"]), "/review/")
    expect(page).to_have_url(api.url + "/review/alerts")  # an investigator lands on its alerts
    row = page.locator(f'tr[data-alert="{ids["alert"]}"]')
    expect(row).to_have_attribute("data-delivery", "failing")
    expect(row.locator("td.delivery")).to_contain_text("Failing")
    row.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status")).to_have_text("Alert acknowledged.")
    row = page.locator(f'tr[data-alert="{ids["alert"]}"]')
    row.get_by_label(f"Outcome of alert {ids['alert']}").select_option("action_taken")
    row.get_by_role("button", name="Record").click()
    expect(page.get_by_role("status")).to_have_text("Outcome recorded.")
    expect(page.locator(f'tr[data-alert="{ids["alert"]}"] td.outcome')).to_contain_text("Action taken")
    view = api.service.alerts.get(ids["alert"])
    assert view.acked_by == OWNER and view.outcome == "action_taken" and view.outcome_by == OWNER
    events = [e for e in api.service.audit.events(limit=100_000) if e.object == f"alert:{ids['alert']}"]
    steps = {(e.action, e.actor, e.detail.get("via")) for e in events
             if e.action in ("alert.ack", "alert.outcome")}
    assert steps == {("alert.ack", OWNER, "web"), ("alert.outcome", OWNER, "web")}
    # The report prints from the pages; the reviewer pages themselves stay closed to investigators.
    report = page.request.get(api.url + f"/review/alerts/{ids['alert']}/evidence")
    assert report.status == 200 and "Audit chain verified" in report.text()
    assert page.request.get(api.url + "/review/dashboard").status == 403
    assert page.request.get(api.url + "/review/").status == 403


def test_another_investigator_sees_no_alert_and_reviewers_see_failing_ones(world: tuple[LiveApi, dict],
                                                                           context: BrowserContext) -> None:
    api, ids = world
    page = context.new_page()
    _sign_in(page, api, api.keys["investigator"], "/review/alerts")
    expect(page.locator("#alert-table tbody")).to_contain_text("No alerts")
    assert page.request.get(api.url + f"/review/alerts/{ids['alert']}/evidence").status == 404
    page.context.clear_cookies()
    _sign_in(page, api, api.keys["reviewer"], "/review/alerts?failing=1")
    expect(page.locator(f'tr[data-alert="{ids["alert"]}"]')).to_have_attribute("data-delivery", "failing")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)  # reviewers do not act for owners
    page.goto(api.url + "/review/dashboard")
    expect(page.locator("#failing-alerts")).to_have_text("1")
    expect(page.locator('#action-table tr[data-stage="decision"] td.median')).to_have_text(re.compile(r"\d"))
    expect(page.locator('#action-table tr[data-stage="decision"] td.p90')).to_have_text(re.compile(r"\d"))
    # The webhook never went through: no "to alert delivered" time is made up for it.
    expect(page.locator('#action-table tr[data-stage="delivered"] td.median')).to_have_text("—")
    expect(page.locator("#action-chart rect")).to_have_count(10)
