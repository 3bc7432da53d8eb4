"""The minors' regime on the watch path and on back-search, exactly as on /v1/match (issue 20 leftover).

One face photo is enrolled for a child and an adult (an adults' bank with one
reviewer, so the regime's second reviewer shows). An ad indexed before the
enrolment is found by the back-search, an ad indexed after it by the watch;
each child's candidate carries the regime (``minor_policy``, tier ``review``
at most, two reviewers, first in the queue) as /v1/match gives it, and each
adult's does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api
from conftest import jpeg_bytes, photo
from test_minors import CHILD_DOB, _face


def _enrol(api: LiveApi, bank: str, **extra: str) -> None:
    record = {**consent_record(f"{bank}-1"), **extra}
    r = api.as_("admin").post(f"/v1/banks/{bank}/subjects", data={"record": json.dumps(record)},
                              files=[("photos", ("p.png", _face(), "image/png"))])
    assert r.status_code == 201, r.text


def _ad(api: LiveApi, label: str, quality: int) -> None:
    ad = jpeg_bytes(photo("astronaut.png").crop((130, 20, 370, 260)).resize((170, 170)), quality)
    r = api.as_("ingest").post("/v1/banks/ads/items", files={"image": ("ad.jpg", ad, "image/jpeg")},
                               data={"label": label})
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("minors-watch") / "data",
                                    catalog_url=module_catalog_url) as running:
        admin = running.as_("admin")
        assert admin.post("/v1/banks", json={"name": "ads", "kind": "ads"}).status_code == 201
        assert admin.post("/v1/banks", json={"name": "children", "kind": "missing_person"}).status_code == 201
        assert admin.post("/v1/banks", json={"name": "adults", "kind": "missing_person",
                                             "policy": {"second_review": False}}).status_code == 201
        _ad(running, "ad-before", 90)  # nobody enrolled yet: found only by the back-search
        _enrol(running, "children", date_of_birth=CHILD_DOB)
        _enrol(running, "adults")
        _ad(running, "ad-after", 80)  # found by the watch
        yield running


def _by_ad(api: LiveApi) -> dict[tuple[str, str], dict]:
    queue = api.as_("reviewer").get("/v1/review/candidates", params={"limit": 100}).json()["candidates"]
    return {(c["context"]["ad"], c["bank"]): c for c in queue if c["context"]}


def test_match_gives_the_reference_regime(api: LiveApi) -> None:
    r = api.as_("investigator").post("/v1/match", data={"banks": "children,adults"},
                                     files={"image": ("ad.png", _face(), "image/png")})
    found = {c["bank"]: c for c in r.json()["candidates"]}
    assert found["children"]["minor_policy"] is True and found["children"]["decision"] == "review"
    assert found["adults"]["minor_policy"] is False and found["adults"]["decision"] == "match"


@pytest.mark.parametrize("ad", ["ad-before", "ad-after"], ids=["back-search", "watch"])
def test_the_watch_and_the_back_search_apply_the_minors_regime(api: LiveApi, ad: str) -> None:
    found = _by_ad(api)
    child, adult = found[(ad, "children")], found[(ad, "adults")]
    assert (child["minor_policy"], child["tier"], child["required_reviews"]) == (True, "review", 2)
    assert (adult["minor_policy"], adult["tier"], adult["required_reviews"]) == (False, "match", 1)
    assert CHILD_DOB not in json.dumps(child)
    queue = api.as_("reviewer").get("/v1/review/candidates", params={"limit": 100}).json()["candidates"]
    children_first = [c["minor_policy"] for c in queue]
    assert children_first == sorted(children_first, reverse=True)  # every child's candidate comes first
