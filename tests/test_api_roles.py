"""The route x role matrix: every route declares its roles, and the server enforces them.

The expected table below is the documented access policy (README / api.visibility);
a route added without a declaration, or with roles that differ from the table,
fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import LiveApi, encryption_key, live_api

from api.auth import PUBLIC, ROLES
from api.http.app import DOC_PATHS, api_routes

A, INV, R, G, P = "admin", "investigator", "reviewer", "ingest", "partner"
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): {PUBLIC},
    ("GET", "/readyz"): {PUBLIC},
    ("GET", "/metrics"): {A},  # or the REUNITE_METRICS_TOKEN bearer (tests/test_api_budgets.py)
    ("GET", "/v1/whoami"): {A, INV, R, G, P},
    ("GET", "/v1/audit/events"): {A},
    ("GET", "/v1/audit/verify"): {A},
    ("POST", "/v1/banks"): {A},
    ("GET", "/v1/banks"): {A, INV, R, G},
    ("GET", "/v1/banks/{bank}"): {A, INV, R, G},
    ("GET", "/v1/banks/{bank}/watches"): {A},  # api/http/routes/watches.py (issue 16)
    ("PUT", "/v1/banks/{bank}/watches"): {A},
    ("POST", "/v1/banks/{bank}/subjects"): {A},
    ("GET", "/v1/banks/{bank}/subjects"): {A, INV, R},
    ("GET", "/v1/subjects/{pseudonym}"): {A, INV, R},
    ("POST", "/v1/subjects/{pseudonym}/photos"): {A},
    ("GET", "/v1/subjects/{pseudonym}/photos/{item}"): {A, R},
    ("DELETE", "/v1/subjects/{pseudonym}"): {A},
    ("POST", "/v1/banks/{bank}/items"): {A, G},
    ("POST", "/v1/banks/{bank}/items/batch"): {A, G},
    ("POST", "/v1/match"): {A, INV},
    ("POST", "/v1/match/hashes"): {A, INV, P},
    ("GET", "/v1/review/candidates"): {A, R},
    ("GET", "/v1/review/candidates/{candidate_id}"): {A, INV, R},
    ("POST", "/v1/review/candidates/{candidate_id}/decision"): {A, R},
    ("GET", "/v1/review/candidates/{candidate_id}/query-image"): {A, R},
    ("GET", "/v1/review/candidates/export"): {A, R},
    ("POST", "/v1/review/candidates/bulk/reject"): {A, R},
    ("POST", "/v1/review/candidates/{candidate_id}/reopen"): {A, R},
    ("GET", "/v1/networks"): {A, INV},
    ("GET", "/v1/networks/{network_id}"): {A, INV},
    # From match to action (api/http/routes/alerts.py, api/http/routes/cases.py): owners see their own only.
    ("GET", "/v1/alerts"): {A, INV, R},
    ("GET", "/v1/alerts/{alert_id}"): {A, INV, R},
    ("POST", "/v1/alerts/{alert_id}/ack"): {A, INV},
    ("POST", "/v1/alerts/{alert_id}/outcome"): {A, INV},
    ("GET", "/v1/alerts/{alert_id}/evidence"): {A, INV, R},
    ("GET", "/v1/cases"): {A, INV},
    ("GET", "/v1/cases/{case_ref}"): {A, INV},
    ("GET", "/v1/stats"): {A},  # differentially private releases: api/http/routes/stats.py
    ("POST", "/v1/stats"): {A},
    ("GET", "/v1/stats/{release_id}"): {A},
    ("GET", "/v1/search"): {A, INV},  # contacts read from ads' text and photos (api/http/routes/search.py)
    # HMA-compatible API (api/http/routes/hma.py): the roles of /v1/match/hashes.
    ("GET", "/m/raw_lookup"): {A, INV, P},
    ("GET", "/m/lookup"): {A, INV, P},
    ("POST", "/m/lookup"): {A, INV, P},
    ("POST", "/m/compare"): {A, INV, P},
    ("GET", "/m/index/status"): {A, INV, P},
    ("GET", "/h/hash"): {A, INV, P},
    ("POST", "/h/hash"): {A, INV, P},
}
PARAMS = {"{bank}": "no-such-bank", "{pseudonym}": "S-0000000000000000", "{item}": "1",
          "{candidate_id}": "1", "{network_id}": "N-000000000000",
          "{alert_id}": "1", "{case_ref}": "C-000000000000", "{release_id}": "1"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("roles") / "data",
                                    catalog_url=module_catalog_url) as running:
        yield running


def _routes(api: LiveApi) -> list[tuple[str, str, frozenset[str] | None]]:
    return [(m, path, roles) for path, methods, roles in api_routes(api.app)
            for m in sorted(methods - {"HEAD"}) if path not in DOC_PATHS]


def test_every_route_declares_its_roles_as_documented(api: LiveApi) -> None:
    routes = _routes(api)
    undeclared = [(m, p) for m, p, roles in routes if roles is None]
    assert not undeclared, f"routes without a role declaration: {undeclared}"
    declared = {(m, p): set(roles or ()) for m, p, roles in routes}
    assert declared == EXPECTED


def _fill(path: str) -> str:
    for key, value in PARAMS.items():
        path = path.replace(key, value)
    return path


def test_server_enforces_the_matrix(api: LiveApi) -> None:
    checked = 0
    for method, path, roles in _routes(api):
        url = _fill(path)
        for role in (*ROLES, None):
            response = api.as_(role).request(method, url)
            allowed = PUBLIC in (roles or ()) or role in (roles or ())
            where = f"{method} {path} as {role}"
            if role is None and PUBLIC not in (roles or ()):
                assert response.status_code == 401, where
                assert response.json()["error"] == "unauthorized", where
            elif allowed:
                assert response.status_code not in (401, 403), where
            else:
                assert response.status_code == 403, where
                assert response.json() == {"error": "forbidden", "detail": response.json()["detail"]}
            checked += 1
    assert checked == len(EXPECTED) * (len(ROLES) + 1)


def test_denied_attempts_are_audited(api: LiveApi) -> None:
    api.as_("partner").get("/v1/banks")
    events = api.service.audit.events(limit=100_000)
    denied = [e for e in events if e.result == "denied" and e.actor == "test-partner"]
    assert any(e.action == "bank.list" for e in denied)


def test_revoked_and_unknown_keys_are_refused(api: LiveApi, tmp_path: Path) -> None:
    from api.auth import revoke_key

    key = api.key("investigator", "short-lived")
    with api.client(key) as c:
        assert c.get("/v1/whoami").json() == {"name": "short-lived", "role": "investigator"}
        assert revoke_key(api.service.store.catalog, "short-lived")
        assert c.get("/v1/whoami").status_code == 401
    with api.client("rk_" + "x" * 43) as c:
        assert c.get("/v1/banks").status_code == 401
