"""Which candidates an investigator may read: the outcomes of their own queries, nothing else.

Candidate ids are sequential. Were any id readable by any investigator, one
could walk them all and learn which queries of other cases matched which
subject, with scores and evidence. The rule pinned here: an investigator
reads a candidate that one of their own matches produced (also when another
investigator's earlier query of the same image created it); any other id
answers 404 exactly like an id that does not exist. Reviewers and admins read
every candidate.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_support import LiveApi, encryption_key, live_api
from conftest import jpeg_bytes, png_bytes, tiles


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("visibility") / "data",
                                    catalog_url=module_catalog_url) as running:
        r = running.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads",
                                                          "policy": {"signals": ["hashes"]}})
        assert r.status_code == 201, r.text
        yield running


def _match(client, picture) -> int:  # noqa: ANN001 - an httpx.Client and a PIL image
    r = client.post("/v1/match", data={"banks": "ads"},
                    files={"image": ("q.jpg", jpeg_bytes(picture, 80), "image/jpeg")})
    best = r.json()["candidates"][0]
    assert best["decision"] == "match" and best["candidate_id"], r.text
    return int(best["candidate_id"])


def test_an_investigator_reads_the_outcomes_of_own_queries_only(api: LiveApi) -> None:
    pictures = tiles(2, seed=51)
    r = api.as_("ingest").post("/v1/banks/ads/items/batch",
                               files=[("images", (f"{k}.png", png_bytes(p), "image/png"))
                                      for k, p in enumerate(pictures)])
    assert r.status_code == 200 and r.json()["indexed"] == 2, r.text
    alice = api.client(api.key("investigator", "alice"))
    bob = api.client(api.key("investigator", "bob"))
    mine = _match(alice, pictures[0])
    theirs = _match(bob, pictures[1])

    own = alice.get(f"/v1/review/candidates/{mine}")
    assert own.status_code == 200 and own.json()["state"] == "pending"
    other = alice.get(f"/v1/review/candidates/{theirs}")
    assert other.status_code == 404 and other.json()["error"] == "candidate_not_found"
    # Exactly what an id that does not exist answers, so walking ids tells nothing.
    missing = alice.get("/v1/review/candidates/999999")
    assert missing.status_code == 404 and missing.json()["detail"] == "no candidate 999999"
    assert other.json()["detail"] == f"no candidate {theirs}"

    # The outcome reaches every investigator who submitted that image, once decided.
    assert api.as_("reviewer").post(f"/v1/review/candidates/{theirs}/decision",
                                    json={"action": "confirm"}).status_code == 200
    assert _match(alice, pictures[1]) == theirs
    seen = alice.get(f"/v1/review/candidates/{theirs}").json()
    assert seen["state"] == "confirmed" and seen["decisions"][0]["reviewer"] is None
    assert bob.get(f"/v1/review/candidates/{theirs}").status_code == 200
    for cid in (mine, theirs):  # reviewers and admins read every candidate
        assert api.as_("reviewer").get(f"/v1/review/candidates/{cid}").status_code == 200
        assert api.as_("admin").get(f"/v1/review/candidates/{cid}").status_code == 200
    alice.close()
    bob.close()
