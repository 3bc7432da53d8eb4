"""Ingest and match over HTTP: the CLI's pipeline and idempotency, partners' hash-only lookup,
what each role sees, and the health and metrics endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_support import LiveApi, encryption_key, live_api
from conftest import jpeg_bytes, png_bytes, tiles

from indexer import pipeline

HASHES_ONLY = {"signals": ["hashes"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("ingest") / "data",
                                    catalog_url=module_catalog_url) as running:
        admin = running.as_("admin")
        assert admin.post("/v1/banks", json={"name": "ads", "kind": "ads", "policy": HASHES_ONLY}
                          ).status_code == 201
        assert admin.post("/v1/banks", json={"name": "private", "kind": "ads",
                                             "policy": {**HASHES_ONLY, "partner_lookup": False}}
                          ).status_code == 201
        yield running


def test_single_ingest_is_idempotent(api: LiveApi) -> None:
    data = png_bytes(tiles(1, seed=21)[0])
    ingest = api.as_("ingest")
    first = ingest.post("/v1/banks/ads/items", files={"image": ("a.png", data, "image/png")},
                        data={"label": "ad-1001", "source": "https://example.org/ad/1001",
                              "attributes": '{"city": "Lyon"}'})
    assert first.status_code == 201 and first.json()["created"] is True, first.text
    again = ingest.post("/v1/banks/ads/items", files={"image": ("a.png", data, "image/png")})
    assert again.json()["created"] is False and again.json()["item"] == first.json()["item"]


def test_batch_reports_each_file(api: LiveApi) -> None:
    a, b = (png_bytes(t) for t in tiles(2, seed=22))
    files = [("images", (n, d, "image/png")) for n, d in
             (("a.png", a), ("bad.png", b"not an image"), ("b.png", b), ("a2.png", a))]
    r = api.as_("ingest").post("/v1/banks/ads/items/batch", files=files,
                               data={"records": '[{"label": "ad-1"}, {}, {"label": "ad-2"}, {}]'})
    body = r.json()
    assert r.status_code == 200 and (body["indexed"], body["failed"], body["already_indexed"]) == (2, 1, 1)
    assert body["results"][1]["error"] == "unsupported_image"
    assert body["results"][3]["item"] == body["results"][0]["item"]
    mismatch = api.as_("ingest").post("/v1/banks/ads/items/batch", files=files[:1],
                                      data={"records": "[{}, {}]"})
    assert mismatch.status_code == 422


def test_investigators_match_images_and_see_ad_labels(api: LiveApi) -> None:
    tile = tiles(1, seed=23)[0]
    api.as_("ingest").post("/v1/banks/ads/items", data={"label": "ad-2024"},
                           files={"image": ("t.png", png_bytes(tile), "image/png")})
    r = api.as_("investigator").post("/v1/match", data={"banks": "ads", "top": "3"},
                                     files={"image": ("q.jpg", jpeg_bytes(tile.resize((80, 80)), 70),
                                                      "image/jpeg")})
    best = r.json()["candidates"][0]
    assert best["label"] == "ad-2024" and best["decision"] == "match" and best["evidence"]
    assert best["candidate_id"] is not None and len(r.json()["candidates"]) <= 3
    unknown = api.as_("investigator").post("/v1/match", data={"banks": "ads,nope,gone"},
                                           files={"image": ("q.jpg", b"x", "image/jpeg")})
    assert unknown.status_code == 404 and unknown.json()["detail"] == "unknown bank(s): nope, gone"
    # one rule everywhere: the field repeated, each value one name or several separated by commas
    repeated = api.as_("investigator").post("/v1/match", data={"banks": ["nope", "ads,gone"]},
                                            files={"image": ("q.jpg", b"x", "image/jpeg")})
    assert repeated.status_code == 404 and repeated.json()["detail"] == "unknown bank(s): nope, gone"
    both = api.as_("investigator").post("/v1/match", data={"banks": ["private", "ads, private"], "top": "5"},
                                        files={"image": ("q.jpg", jpeg_bytes(tile.resize((80, 80)), 70),
                                                         "image/jpeg")})
    assert both.status_code == 200, both.text
    assert [c["label"] for c in both.json()["candidates"]].count("ad-2024") == 1


def test_partners_get_opaque_refs_only(api: LiveApi) -> None:
    tile = tiles(1, seed=24)[0]
    data = png_bytes(tile)
    for bank in ("ads", "private"):
        api.as_("admin").post(f"/v1/banks/{bank}/items", data={"label": f"secret-label-{bank}"},
                              files={"image": ("t.png", data, "image/png")})
    pdq = next(v for v in pipeline.extract(data, ["pdq"]).vectors)
    partner = api.as_("partner")
    r = partner.post("/v1/match/hashes", json={"hashes": {"pdq": pdq.hex()}})
    hits = r.json()["hits"]
    assert r.status_code == 200 and [h["bank"] for h in hits] == ["ads"]
    assert set(hits[0]) == {"ref", "bank", "score", "decision", "evidence"}
    assert hits[0]["ref"].startswith("R-") and hits[0]["decision"] == "match"
    assert "secret-label" not in r.text
    again = partner.post("/v1/match/hashes", json={"hashes": {"pdq": pdq.hex()}, "banks": ["ads"]})
    assert again.json()["hits"][0]["ref"] == hits[0]["ref"]  # stable, so partners can refer to it
    closed = partner.post("/v1/match/hashes", json={"hashes": {"pdq": pdq.hex()},
                                                    "banks": ["private", "nowhere"]})
    # a closed bank reads as an unknown one: the partner learns no more than the names it sent
    assert closed.status_code == 404 and closed.json()["detail"] == "unknown bank(s): private, nowhere"
    assert partner.post("/v1/match/hashes", json={"hashes": {"sha256": "00"}}).status_code == 422
    far = partner.post("/v1/match/hashes", json={"hashes": {"pdq": "00" * 32}})
    assert far.json()["hits"] == []  # partners hear of hits only


def test_health_readiness_and_metrics(api: LiveApi) -> None:
    anyone = api.as_(None)
    assert anyone.get("/healthz").json()["status"] == "ok"
    assert anyone.get("/readyz").json() == {"status": "ready"}  # no bank names or sizes in public
    assert anyone.get("/metrics").status_code == 401
    text = api.as_("admin").get("/metrics").text
    assert 'reunite_index_vectors{bank="ads",signal="pdq"}' in text
    assert 'reunite_review_candidates{state="pending"}' in text
    assert 'reunite_http_requests_total{method="POST",route="/v1/match",status="200"}' in text
    assert "reunite_http_request_seconds_bucket" in text
    assert "secret-label" not in text
