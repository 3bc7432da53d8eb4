"""Watch banks and back-search (issue 16), and the reviewable batch path (issue 15 point 1).

Real subprocesses of the CLI and a real uvicorn on loopback: a crawl is
indexed in which one ad is a re-encoded copy of an enrolled missing person's
photo and another a photo on a partner's hash list; with no request by hand
both reach the review queue, with the ad as context, once (a re-run adds
nothing), and a reviewer sees both photos over HTTP. Enrolling a person
found in ads indexed earlier puts those ads in the queue.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from indexer import pipeline
from indexer.crypto import generate_key
from tests.api_support import live_api
from tests.conftest import bind_catalog, jpeg_bytes, photo, run_reunite

KEY = generate_key()
ENV = {"REUNITE_ENCRYPTION_KEY": KEY}
CONSENT = {"consent_by": "parent", "consent_date": "2026-01-05", "consent_expires": "2099-12-31",
           "case_ref": "CASE-7"}


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _enroll_person(tmp: Path, data: Path, *extra: str):  # noqa: ANN202
    ref = tmp / "reference.jpg"
    ref.write_bytes(jpeg_bytes(photo("astronaut.png"), 92))
    manifest = _csv(tmp / "people.csv", [{"path": str(ref), "label": "person-a", **CONSENT}])
    return run_reunite("enroll", str(manifest), "--bank", "missing", "--kind", "missing_person", "--quiet",
                       *extra, data=data, env=ENV)


def _crawl(tmp: Path) -> Path:
    ads = tmp / "crawl"
    ads.mkdir()
    person = photo("astronaut.png").resize((400, 400))
    (ads / "a1.jpg").write_bytes(jpeg_bytes(person, 60))  # a re-encoded, resized copy of the reference
    (ads / "a2.jpg").write_bytes(jpeg_bytes(photo("camera.png"), 70))  # on the partner's list
    (ads / "a3.jpg").write_bytes(jpeg_bytes(photo("brick.png"), 80))  # nothing
    return _csv(tmp / "ads.csv", [
        {"path": "crawl/a1.jpg", "label": "ad-1", "site": "example.test", "url": "https://example.test/1",
         "posted_at": "2026-11-30T10:00:00Z"},
        {"path": "crawl/a2.jpg", "label": "ad-2", "site": "other.test", "posted_at": "2026-12-01"},
        {"path": "crawl/a3.jpg", "label": "ad-3", "site": "other.test"}])


def _partner_list(tmp: Path, data: Path) -> None:
    """A partner's PDQ list holding the camera photo (as the partner hashed its own copy)."""
    ext = pipeline.extract(jpeg_bytes(photo("camera.png"), 95), ["pdq"])
    [pdq] = [v for v in ext.vectors if v.signal == "pdq"]
    hexhash = bytes(pdq.vector).hex() if len(bytes(pdq.vector)) == 32 else None
    assert hexhash is not None
    listed = tmp / "partner.txt"
    listed.write_text(f"{hexhash},100,partner-case-1\n")
    run_reunite("import", str(listed), "--bank", "partner", "--unsigned", "--format", "pdq",
                data=data, env=ENV, check=True)


def _queue(api, role: str = "reviewer") -> list[dict]:  # noqa: ANN001
    out = api.as_(role).get("/v1/review/candidates", params={"limit": 100})
    assert out.status_code == 200, out.text
    return out.json()["candidates"]


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REUNITE_ENCRYPTION_KEY", KEY)


def test_a_crawl_reaches_the_queue_by_itself_once_with_photos_for_the_reviewer(
        tmp_path: Path, data_dir: Path, env_key: None, catalog_url: str | None) -> None:
    bind_catalog(data_dir, catalog_url)  # every `reunite` below and the service: this catalog
    assert _enroll_person(tmp_path, data_dir).returncode == 0
    _partner_list(tmp_path, data_dir)
    manifest = _crawl(tmp_path)
    index = ("index", str(manifest), "--bank", "ads", "--quiet", "--no-link")
    first = run_reunite(*index, data=data_dir, env=ENV)
    assert first.returncode == 0, first.stderr
    assert "watch: 3 ads checked against missing, partner" in first.stdout
    again = run_reunite(*index, data=data_dir, env=ENV)
    assert again.returncode == 0, again.stderr
    assert "watch: 0 ads checked" in again.stdout
    with live_api(data_dir) as api:
        queue = _queue(api)
        by_bank = {c["bank"]: c for c in queue}
        assert sorted(by_bank) == ["missing", "partner"], queue
        assert len(queue) == 2  # once each: the re-run added nothing
        person = api.as_("reviewer").get(f"/v1/review/candidates/{by_bank['missing']['id']}").json()
        assert person["context"]["ad"] == "ad-1" and person["context"]["site"] == "example.test"
        assert person["context"]["posted_at"] == "2026-11-30T10:00:00Z"
        assert person["context"]["ad_bank"] == "ads" and person["has_query_image"]
        assert by_bank["partner"]["context"]["ad"] == "ad-2"
        # The ad photo (query) and the enrolled reference are shown to the reviewer.
        ad_photo = api.as_("reviewer").get(f"/v1/review/candidates/{person['id']}/query-image")
        assert ad_photo.status_code == 200 and ad_photo.content == (tmp_path / "crawl/a1.jpg").read_bytes()
        ref = api.as_("reviewer").get(f"/v1/subjects/{person['pseudonym']}/photos/{person['ref_item']}")
        assert ref.status_code == 200
        assert ref.content == (tmp_path / "reference.jpg").read_bytes()
        page = api.as_("reviewer").get(f"/review/candidates/{person['id']}")
        assert "No photo was kept" not in page.text
    # Kept sealed: the reference's bytes are nowhere in the data folder in clear.
    clear = (tmp_path / "reference.jpg").read_bytes()
    kept = [p for p in (data_dir / "photos").rglob("*") if p.is_file()]
    assert len(kept) >= 4 and all(p.read_bytes() != clear for p in kept)


def test_enrolling_a_person_searches_the_ads_indexed_earlier(
        tmp_path: Path, data_dir: Path, env_key: None, catalog_url: str | None) -> None:
    bind_catalog(data_dir, catalog_url)
    manifest = _crawl(tmp_path)
    run_reunite("index", str(manifest), "--bank", "ads", "--quiet", "--no-link", data=data_dir, env=ENV,
                check=True)
    done = _enroll_person(tmp_path, data_dir)
    assert done.returncode == 0, done.stderr
    assert "back-search of ads: 3 ads checked against missing" in done.stdout
    rerun = _enroll_person(tmp_path, data_dir)
    assert rerun.returncode == 0 and "back-search of ads: 0 ads checked" in rerun.stdout
    with live_api(data_dir) as api:
        queue = _queue(api)
        assert [(c["bank"], c["context"]["ad"]) for c in queue] == [("missing", "ad-1")]


def test_http_ingest_is_watched_and_cli_match_queues_like_http(
        tmp_path: Path, data_dir: Path, env_key: None) -> None:
    assert _enroll_person(tmp_path, data_dir).returncode == 0
    ad = jpeg_bytes(photo("astronaut.png").resize((360, 360)), 65)
    with live_api(data_dir) as api:
        api.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads"}).raise_for_status()
        sent = api.as_("ingest").post("/v1/banks/ads/items", files={"image": ("ad.jpg", ad, "image/jpeg")},
                                      data={"label": "ad-9", "attributes": '{"site": "s.test"}'})
        assert sent.status_code in (200, 201), sent.text
        again = api.as_("ingest").post("/v1/banks/ads/items", files={"image": ("ad.jpg", ad, "image/jpeg")},
                                       data={"label": "ad-9"})
        assert again.status_code in (200, 201)
        queue = _queue(api)
        assert [(c["bank"], c["context"]["ad"], c["context"]["site"]) for c in queue] == [
            ("missing", "ad-9", "s.test")]
        # `reunite match` enters the queue through the same path as HTTP match, its photo kept.
        query = tmp_path / "q.jpg"
        query.write_bytes(jpeg_bytes(photo("astronaut.png").resize((380, 380)), 75))
        out = run_reunite("match", str(query), "--bank", "missing", "--json", data=data_dir, env=ENV)
        assert out.returncode == 0, out.stderr
        assert '"review_id"' in out.stdout
        queue = _queue(api)
        assert len(queue) == 2
        submitted = next(c for c in queue if c["context"] is None)
        shown = api.as_("reviewer").get(f"/v1/review/candidates/{submitted['id']}/query-image")
        assert shown.status_code == 200 and shown.content == query.read_bytes()


def test_watch_policy_narrows_and_is_checked(tmp_path: Path, data_dir: Path, env_key: None) -> None:
    with live_api(data_dir) as api:
        bad = api.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads",
                                                       "policy": {"watches": ["x"]}})
        assert bad.status_code == 422 and bad.json()["error"] == "bad_policy"
        ok = api.as_("admin").post("/v1/banks", json={"name": "missing", "kind": "missing_person",
                                                      "policy": {"watches": ["other-ads"]}})
        assert ok.status_code == 201, ok.text
    assert _enroll_person(tmp_path, data_dir).returncode == 0
    done = run_reunite("index", str(_crawl(tmp_path)), "--bank", "ads", "--quiet", "--no-link",
                       data=data_dir, env=ENV, check=True)
    assert "no bank watches this bank" in done.stdout


def test_without_the_key_a_missing_person_watcher_is_skipped_not_searched(
        tmp_path: Path, data_dir: Path, env_key: None) -> None:
    assert _enroll_person(tmp_path, data_dir).returncode == 0
    manifest = _crawl(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "REUNITE_ENCRYPTION_KEY"}
    import subprocess
    import sys

    from tests.conftest import ROOT
    blind = subprocess.run([sys.executable, "-m", "api.cli", "--data", str(data_dir), "index", str(manifest),
                            "--bank", "ads", "--quiet", "--no-link"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert blind.returncode == 0, blind.stderr
    assert "not searched without REUNITE_ENCRYPTION_KEY: missing" in blind.stdout
    caught_up = run_reunite("index", str(manifest), "--bank", "ads", "--quiet", "--no-link",
                            data=data_dir, env=ENV, check=True)
    assert "watch: 3 ads checked against missing" in caught_up.stdout


def test_an_ads_bank_that_keeps_no_photos_is_still_watched_in_the_run(
        tmp_path: Path, data_dir: Path, env_key: None) -> None:
    with live_api(data_dir) as api:
        made = api.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads",
                                                        "policy": {"keep_photos": False}})
        assert made.status_code == 201, made.text
        ads_id = api.service.store.catalog.bank("ads").id
    assert _enroll_person(tmp_path, data_dir).returncode == 0
    done = run_reunite("index", str(_crawl(tmp_path)), "--bank", "ads", "--quiet", "--no-link",
                       data=data_dir, env=ENV, check=True)
    assert "watch: 3 ads checked against missing, 1 candidates" in done.stdout
    assert not (data_dir / "photos" / f"bank-{ads_id}").exists()  # only the queued ad, as its query image
    assert len(list((data_dir / "photos" / "queries").iterdir())) == 1
