"""Abuse budgets over a real server: 429 + Retry-After per key, per address, for wrong keys (API and
the web sign-in form), for partners filling the review queue; what anonymous callers may learn from
/readyz and /metrics; no-store on answers that may hold personal data.

Every test builds its own server with small budgets (counts live in the server process, and all
test traffic comes from 127.0.0.1), so each dimension is seen on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api, reunite
from conftest import photo, png_bytes, tiles

from api.budgets import BadBudget, BudgetConfig, Budgets
from api.service import ServiceConfig
from api.web.access import SIGNIN_CSRF_COOKIE
from api.web.sessions import COOKIE
from indexer import pipeline

HASHES_ONLY = {"signals": ["hashes"]}
ATTACKER_TEXT = "DROP-TABLE-" + "A" * 120  # what a flood of wrong keys tries to write into the log


@contextmanager
def server(tmp_path: Path, **budgets: object) -> Iterator[LiveApi]:
    """A live service whose budgets are the defaults overridden by ``budgets``."""
    with encryption_key():
        config = ServiceConfig.from_env(tmp_path / "data")
        roles = {**config.budgets.roles, **budgets.pop("roles", {})}  # type: ignore[dict-item]
        config.budgets = BudgetConfig(**{**config.budgets.__dict__, "roles": roles, **budgets})
        config.metrics_token = "scrape-token-for-tests"
        with live_api(tmp_path / "data", config=config) as running:
            yield running


def _refused(response: httpx.Response, window_seconds: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "rate_limited" and response.json()["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= window_seconds


def test_each_key_has_its_roles_budget(tmp_path: Path) -> None:
    with server(tmp_path, roles={"partner": "5/minute"}) as api:
        partner, other = api.as_("partner"), api.client(api.key("partner", "second-partner"))
        assert [partner.get("/v1/whoami").status_code for _ in range(5)] == [200] * 5
        _refused(partner.get("/v1/whoami"), 60)
        assert other.get("/v1/whoami").status_code == 200  # the same address, another key
        assert api.as_("ingest").get("/v1/whoami").status_code == 200  # another role's size


def test_each_address_has_a_budget_whatever_the_key(tmp_path: Path) -> None:
    with server(tmp_path, address="12/minute") as api:
        keys = [api.key("investigator", f"inv-{n}") for n in range(12)]
        for key in keys:
            assert api.client(key).get("/v1/whoami").status_code == 200
        fresh = api.client(api.key("admin", "fresh-admin"))
        _refused(fresh.get("/v1/whoami"), 60)
        _refused(api.as_(None).get("/healthz"), 60)


def _flood(api: LiveApi, n: int) -> list[httpx.Response]:
    """``n`` different wrong keys, each carrying text the attacker chose, at a path it chose."""
    answers = []
    for i in range(n):
        with api.client(f"rk_{ATTACKER_TEXT}{i:04d}") as c:
            answers.append(c.get(f"/v1/subjects/S-{ATTACKER_TEXT}{i}"))
    return answers


def test_wrong_keys_lock_the_address_out_and_leave_a_small_fixed_trace(tmp_path: Path) -> None:
    with server(tmp_path, auth_failures="10/15 minutes", auth_failures_per_key="off") as api:
        before = api.service.audit.count()
        answers = _flood(api, 60)
        assert [r.status_code for r in answers[:10]] == [401] * 10
        for r in answers[10:]:
            _refused(r, 900)
        # Locked out: even a right key from this address is refused (a guesser learns nothing).
        _refused(api.as_("admin").get("/v1/whoami"), 900)
        assert api.as_(None).get("/v1/whoami").status_code == 401  # no key is not a guess
        events = api.service.audit.events(before, 1000)
        assert ATTACKER_TEXT not in json.dumps([e.to_json() for e in events])
        failed = [e for e in events if e.action == "auth.failed"]
        assert len(events) == len(failed) <= 6  # 1st, 2nd, 4th, 8th failure and the lockout
        assert failed[-1].result == "locked" and failed[-1].detail["failures"] == 10
        assert failed[-1].object == "address:127.0.0.1"
        assert len(failed[-1].detail["key_sha256_prefix"]) == 12
        assert api.service.audit.verify().ok


def test_one_wrong_key_is_locked_out_on_its_own(tmp_path: Path) -> None:
    with server(tmp_path, auth_failures="100/15 minutes", auth_failures_per_key="3/15 minutes") as api:
        with api.client("rk_" + "z" * 43) as c:
            assert [c.get("/v1/whoami").status_code for _ in range(3)] == [401] * 3
            _refused(c.get("/v1/whoami"), 900)
        with api.client("rk_" + "y" * 43) as c:
            assert c.get("/v1/whoami").status_code == 401  # the address itself is not locked
        assert api.as_("admin").get("/v1/whoami").status_code == 200


def _sign_in(client: httpx.Client, key: str) -> httpx.Response:
    """The real sign-in route, as the form posts it (the CSRF cookie is Secure: sent by hand)."""
    form = client.get("/review/signin")
    token = form.cookies[SIGNIN_CSRF_COOKIE]
    return client.post("/review/signin", data={"key": key, "csrf": token, "next": "/review/"},
                       headers={"Cookie": f"{SIGNIN_CSRF_COOKIE}={token}"})


def test_web_sign_in_locks_out_after_wrong_keys(tmp_path: Path) -> None:
    with server(tmp_path, auth_failures="5/15 minutes") as api, \
            httpx.Client(base_url=api.url, timeout=60) as browser:
        before = api.service.audit.count()
        assert _sign_in(browser, api.keys["reviewer"]).status_code == 303  # the form works
        statuses = [_sign_in(browser, f"rk_{ATTACKER_TEXT}{n}").status_code for n in range(12)]
        assert statuses == [401] * 5 + [429] * 7
        locked = _sign_in(browser, api.keys["reviewer"])  # the right key, while locked out
        assert locked.status_code == 429 and COOKIE not in locked.cookies
        assert 1 <= int(locked.headers["Retry-After"]) <= 900
        assert "Sign-in is locked" in locked.text
        events = api.service.audit.events(before, 1000)
        assert ATTACKER_TEXT not in json.dumps([e.to_json() for e in events])
        assert [e.action for e in events].count("auth.failed") <= 5
        assert {e.detail.get("via") for e in events if e.action == "auth.failed"} == {"web"}


def _flipped(hex_hash: str, bit: int) -> str:
    value = int(hex_hash, 16) ^ (1 << bit)
    return f"{value:0{len(hex_hash)}x}"


def test_partners_cannot_flood_the_review_queue(tmp_path: Path) -> None:
    with server(tmp_path, partner_queue="5/hour") as api:
        admin = api.as_("admin")
        assert admin.post("/v1/banks", json={"name": "ads", "kind": "ads", "policy": HASHES_ONLY}
                          ).status_code == 201
        data = png_bytes(tiles(1, seed=31)[0])
        assert admin.post("/v1/banks/ads/items", data={"label": "ad-1"},
                          files={"image": ("a.png", data, "image/png")}).status_code == 201
        pdq = next(v for v in pipeline.extract(data, ["pdq"]).vectors).hex()
        partner = api.as_("partner")
        answers = [partner.post("/v1/match/hashes", json={"hashes": {"pdq": _flipped(pdq, bit)}})
                   for bit in range(8)]
        assert [r.status_code for r in answers[:5]] == [200] * 5
        assert all(r.json()["hits"] for r in answers[:5])
        for r in answers[5:]:
            _refused(r, 3600)
        assert api.service.review.counts().get("pending") == 5  # the refused lookups stored nothing
        # Investigators' lookups are not a partner's, and are not charged to it.
        inv = api.as_("investigator").post("/v1/match/hashes", json={"hashes": {"pdq": _flipped(pdq, 9)}})
        assert inv.status_code == 200 and inv.json()["hits"]


def test_missing_person_banks_are_closed_to_partners_unless_opened(tmp_path: Path) -> None:
    with server(tmp_path) as api:
        admin = api.as_("admin")
        face = png_bytes(photo("astronaut.png").crop((130, 20, 370, 260)).resize((160, 160)))
        for name, policy in (("families", {}), ("opened", {"partner_lookup": True})):
            assert admin.post("/v1/banks", json={"name": name, "kind": "missing_person", "policy": policy}
                              ).status_code == 201
            record = json.dumps(consent_record(f"C-{name}"))
            r = admin.post(f"/v1/banks/{name}/subjects", data={"record": record},
                           files=[("photos", ("p.png", face, "image/png"))])
            assert r.status_code == 201, r.text
        partner = api.as_("partner")
        pdq = next(v for v in pipeline.extract(face, ["pdq"]).vectors).hex()
        hits = partner.post("/v1/match/hashes", json={"hashes": {"pdq": pdq}}).json()["hits"]
        assert [h["bank"] for h in hits] == ["opened"]  # the same photo, in a bank closed by default
        assert partner.post("/v1/match/hashes", json={"hashes": {"pdq": pdq}, "banks": ["families"]}
                            ).status_code == 404
        assert api.as_("investigator").post("/v1/match/hashes", json={"hashes": {"pdq": pdq}, "banks": [
            "families"]}).status_code == 200  # closed to partners only


def test_anonymous_callers_learn_nothing_from_readiness_and_metrics(tmp_path: Path) -> None:
    with server(tmp_path) as api:
        admin = api.as_("admin")
        assert admin.post("/v1/banks", json={"name": "secret-bank-name", "kind": "ads",
                                             "policy": HASHES_ONLY}).status_code == 201
        assert admin.post("/v1/banks/secret-bank-name/items", files={"image": (
            "a.png", png_bytes(tiles(1, seed=51)[0]), "image/png")}).status_code == 201
        anyone = api.as_(None)
        assert anyone.get("/healthz").json() == {"status": "ok", "detail": {}}
        ready = anyone.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        refused = anyone.get("/metrics")
        assert refused.status_code == 401 and "secret-bank-name" not in refused.text
        assert api.as_("partner").get("/metrics").status_code == 403
        assert 'bank="secret-bank-name"' in admin.get("/metrics").text
        scraper = httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer scrape-token-for-tests"})
        assert scraper.status_code == 200 and "reunite_http_requests_total" in scraper.text
        wrong = httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401


def test_answers_that_may_hold_personal_data_are_never_cached(tmp_path: Path) -> None:
    with server(tmp_path) as api:
        answers = [api.as_("admin").get("/v1/banks"), api.as_("reviewer").get("/v1/review/candidates"),
                   api.as_(None).get("/v1/whoami"), api.as_("partner").get("/v1/banks"),
                   api.as_(None).get("/review/signin"), api.as_(None).get("/review/")]
        for r in answers:
            assert r.headers.get("cache-control") == "no-store", (r.url, r.headers)
            assert r.headers.get("pragma") == "no-cache", r.url
        static = api.as_(None).get("/review/static/review.css")
        assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"


def test_budgets_are_configured_from_the_environment() -> None:
    config = BudgetConfig.from_env({"REUNITE_BUDGET_PARTNER": "2/second", "REUNITE_BUDGET_ADDRESS": "off",
                                    "REUNITE_BUDGET_PARTNER_QUEUE": "7 per hour"})
    assert config.roles["partner"] == "2/second" and config.roles["ingest"] == "6000/minute"
    budgets = Budgets(config)
    assert budgets.charge("address", "127.0.0.1", 10**6) is None  # off
    assert budgets.limit_of("partner_queue") == 7
    assert budgets.charge("partner_queue", "1", 8) is not None  # more than the limit: never admitted
    with pytest.raises(BadBudget, match="budget key:investigator: 'lots'"):
        Budgets(BudgetConfig.from_env({"REUNITE_BUDGET_INVESTIGATOR": "lots"}))


def test_serve_refuses_a_malformed_budget_with_one_line(tmp_path: Path) -> None:
    done = reunite("serve", "--port", "1", data=tmp_path / "data", env={"REUNITE_BUDGET_PARTNER": "lots"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "budget key:partner" in done.stderr
