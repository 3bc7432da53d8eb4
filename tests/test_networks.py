"""Ad networks: links by shared photo (same file or an edited copy), phone and e-mail; components; exports.

A small crawl is built from the fixture photos: one network reposts one photo
(the same file, a re-encoded smaller copy, a mirrored copy), another is tied
together only by a phone written three ways and an e-mail with Gmail
variants, and unrelated ads carry their own photos and numbers.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import networkx as nx
import pytest
from conftest import jpeg_bytes, photo, png_bytes, run_reunite, vectors_for
from PIL import ImageOps

from indexer import ingest
from indexer.store.store import Store
from matcher.networks import components as networks
from matcher.networks import contacts
from matcher.networks.links import Linker, Occurrence, file_reader
from matcher.networks.store import AdLink, AdPhoto

NETWORK_A = {"a1", "a2", "a3", "a4"}
NETWORK_B = {"b1", "b2", "b3"}


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of nine ads (seven rows with images, two repost rows)."""
    folder = tmp_path_factory.mktemp("crawl")
    astronaut = photo("astronaut.png")
    a1 = _write(folder, "a1.png", png_bytes(astronaut))
    small = astronaut.resize((astronaut.width * 3 // 4, astronaut.height * 3 // 4))
    _write(folder, "a2.jpg", jpeg_bytes(small, quality=60))
    _write(folder, "a3.jpg", jpeg_bytes(ImageOps.mirror(astronaut), quality=85))
    shutil.copy(a1, folder / "a4.png")  # the same file reposted by another ad
    for name, fixture in (("b1", "chelsea.png"), ("b2", "coffee.png"), ("b3", "brick.png"),
                          ("c1", "camera.png"), ("c2", "rocket.jpg")):
        _write(folder, f"{name}.jpg", jpeg_bytes(photo(fixture)))
    rows = [
        {"path": "a1.png", "label": "a1", "site": "site-one.example", "posted_at": "2024-05-01",
         "phones": "", "emails": ""},
        {"path": "a2.jpg", "label": "a2", "site": "site-two.example", "posted_at": "2024-05-03",
         "phones": "", "emails": ""},
        {"path": "a3.jpg", "label": "a3", "site": "site-two.example", "posted_at": "2024-05-04",
         "phones": "", "emails": ""},
        {"path": "a4.png", "label": "a4", "site": "site-one.example", "posted_at": "2024-05-05",
         "phones": "", "emails": ""},
        {"path": "b1.jpg", "label": "b1", "site": "site-one.example", "posted_at": "2024-05-02",
         "phones": "(212) 555-0143", "emails": ""},
        {"path": "b2.jpg", "label": "b2", "site": "site-three.example", "posted_at": "2024-05-06",
         "phones": "+1 212 555 0143;415.867.5309", "emails": "Jane.Doe+ads@gmail.com"},
        {"path": "b3.jpg", "label": "b3", "site": "site-three.example", "posted_at": "2024-05-07",
         "phones": "call me", "emails": "janedoe@googlemail.com"},
        {"path": "c1.jpg", "label": "c1", "site": "site-one.example", "posted_at": "2024-05-01",
         "phones": "646-342-7781", "emails": "someone@example.org"},
        {"path": "c2.jpg", "label": "c2", "site": "site-two.example", "posted_at": "2024-05-02",
         "phones": "", "emails": ""},
        # An ad that only reposts a photo of a2's network and shows c2's photo too
        # would merge them; this one only reposts a1's file under a second row of a4.
        {"path": "a4.png", "label": "a4", "site": "site-one.example", "posted_at": "2024-05-05",
         "phones": "", "emails": ""},
    ]
    manifest = folder / "ads.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _link(store: Store, source: Path, bank_name: str = "ads"):  # noqa: ANN202 - LinkReport
    bank = store.catalog.ensure_bank(bank_name, "ads")
    records = ingest.read_source(source)
    ingest.index_records(store, bank, records, ["pdq", "phash", "dhash", "ahash", "whash"])
    occurrences = [Occurrence(r.label, ingest.file_sha256(r.path), r.attributes) for r in records]
    linker = Linker(store)
    linker.record(bank, occurrences)
    report = linker.update(bank, read=file_reader({o.sha256: r.path
                                                   for o, r in zip(occurrences, records, strict=True)}))
    return bank, report


def test_contacts_are_normalised() -> None:
    found = contacts.contacts_of({"phones": "(212) 555-0143; 212.555.0143;+1 212 555 0143;nope",
                                  "emails": "Jane.Doe+x@GMAIL.com;bad@;jane@example.org"})
    assert found == {("phone", "+12125550143"), ("email", "janedoe@gmail.com"),
                     ("email", "jane@example.org")}
    assert contacts.normalise_phone("020 7946 0958", "GB") == "+442079460958"
    assert contacts.normalise_phone("020 7946 0958", "US") is None


def test_networks_group_the_right_ads(crawl: Path, data_dir: Path, catalog_url: str | None) -> None:
    store = Store(data_dir, catalog_url, vectors_for(catalog_url))
    bank, report = _link(store, crawl)
    assert report.images == 8 and report.images_from_vectors == 0
    found = networks.find_networks(store.catalog, bank)
    groups = [set(net.summary()["ads"]) for net in found]
    assert sorted(groups, key=len, reverse=True) == [NETWORK_A, NETWORK_B]
    by_ads = {frozenset(net.summary()["ads"]): net.summary() for net in found}
    a, b = by_ads[frozenset(NETWORK_A)], by_ads[frozenset(NETWORK_B)]
    assert set(a["evidence"]) == {"photo"} and a["evidence"]["photo"] >= 3
    assert set(b["evidence"]) == {"phone", "email"}
    assert b["phones"] == ["+12125550143", "+14158675309"]
    assert b["emails"] == ["janedoe@gmail.com"]
    assert a["sites"] == ["site-one.example", "site-two.example"]
    assert (a["first_seen"], a["last_seen"]) == ("2024-05-01T00:00:00", "2024-05-05T00:00:00")
    with store.catalog.session() as s:
        kinds = {(link.kind, link.evidence.get("sha256")) for link in s.query(AdLink)}
    assert ("photo", 0) in kinds  # a1 and a4 show the very same file


def test_new_ads_link_incrementally_and_ids_are_stable(crawl: Path, data_dir: Path, tmp_path: Path,
                                                      catalog_url: str | None) -> None:
    store = Store(data_dir, catalog_url, vectors_for(catalog_url))
    bank, _ = _link(store, crawl)
    before = {frozenset(n.summary()["ads"]): n.id for n in networks.find_networks(store.catalog, bank)}
    newcomer = tmp_path / "new"
    newcomer.mkdir()
    _write(newcomer, "n1.jpg", jpeg_bytes(photo("rocket.jpg").rotate(90, expand=True), quality=80))
    (newcomer / "new.csv").write_text("path,label,phones,posted_at\n"
                                      "n1.jpg,n1,212 555 0143,2024-05-09\n", encoding="utf-8")
    _bank, report = _link(store, newcomer / "new.csv")
    assert report.images == 1 and report.occurrences == 1  # nothing already linked is searched again
    after = {frozenset(n.summary()["ads"]): n.id for n in networks.find_networks(store.catalog, bank)}
    # n1 shares b's phone and a rotated copy of c2's photo: c2 joins network B through it.
    grown = frozenset(NETWORK_B | {"n1", "c2"})
    assert grown in after
    assert after[grown] == before[frozenset(NETWORK_B)]
    assert after[frozenset(NETWORK_A)] == before[frozenset(NETWORK_A)]


def test_cli_networks_json_and_graph_round_trip(crawl: Path, data_dir: Path, tmp_path: Path) -> None:
    done = run_reunite("index", str(crawl), "--bank", "ads", "--kind", "ads", "--signals", "hashes",
                       "--quiet", data=data_dir, check=True)
    assert "new link(s)" in done.stdout  # `index` of an ads bank links as it goes
    store = Store(data_dir)
    with store.catalog.session() as s:  # the repost row of a4 is kept with its columns
        rows = {(sid, item) for sid, item in s.query(AdPhoto.subject_id, AdPhoto.item_id)}
        assert len(rows) == 9
        b2 = next(p.attributes for p in s.query(AdPhoto) if p.attributes.get("emails"))
        assert b2["site"] == "site-three.example" and "415.867.5309" in b2["phones"]
    store.catalog.engine.dispose()
    graphml, gexf = tmp_path / "ads.graphml", tmp_path / "ads.gexf"
    done = run_reunite("networks", "--bank", "ads", "--json", "--graphml", str(graphml),
                       "--gexf", str(gexf), data=data_dir, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {frozenset(x["ads"]) for x in lines} == {frozenset(NETWORK_A), frozenset(NETWORK_B)}
    for line in lines:
        assert {"id", "ads", "size", "evidence", "sites", "first_seen", "last_seen", "phones",
                "growth_7d", "candidates"} <= set(line)
        assert line["size"] == len(line["ads"])
    assert run_reunite("networks", "--bank", "ads", "--min-size", "4", "--json",
                       data=data_dir, check=True).stdout.count("\n") == 1

    expected = networks.to_graph(networks.find_networks(store.catalog, store.bank_or_error("ads")))
    assert expected.number_of_nodes() == 7 and expected.number_of_edges() >= 6
    for back in (nx.read_graphml(graphml), nx.read_gexf(gexf)):
        assert set(back.nodes) == set(expected.nodes)
        assert {frozenset(e) for e in back.edges} == {frozenset(e) for e in expected.edges}
        for node, attrs in expected.nodes(data=True):
            got = {k: v for k, v in back.nodes[node].items() if k != "label"}  # GEXF adds its own label
            assert got == attrs
        for u, v, attrs in expected.edges(data=True):
            got = {k: x for k, x in back.edges[u, v].items() if k != "id"}  # GEXF adds edge ids
            assert got == pytest.approx(attrs)
            assert json.loads(got["evidence"])  # the full evidence survives as JSON


def test_plain_index_then_networks_links_from_stored_hashes(crawl: Path, data_dir: Path) -> None:
    """Ads indexed by `reunite index` are linked on the next `networks` (no image bytes needed)."""
    store = Store(data_dir)
    bank = store.catalog.ensure_bank("plain", "ads")
    ingest.index_records(store, bank, ingest.read_source(crawl), ["pdq", "phash"])
    report = Linker(store).update(bank)  # relative sources: searched by their stored hashes
    assert report.images == report.images_from_vectors == 8
    groups = {frozenset(n.summary()["ads"]) for n in networks.find_networks(store.catalog, bank)}
    # Without the image the mirrored copy (a3) cannot be found, and the index keeps one
    # row per image, so the repost a4 is unknown: the rest still groups.
    assert frozenset({"a1", "a2"}) in groups and frozenset(NETWORK_B) in groups


def test_http_networks_for_investigators(crawl: Path, data_dir: Path) -> None:
    from api_support import live_api, no_encryption_key

    store = Store(data_dir)
    _link(store, crawl)
    store.catalog.engine.dispose()
    with no_encryption_key(), live_api(data_dir) as api:
        listed = api.as_("investigator").get("/v1/networks", params={"bank": "ads"})
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert body["total"] == 2
        assert {frozenset(n["ads"]) for n in body["networks"]} == {frozenset(NETWORK_A), frozenset(NETWORK_B)}
        one = body["networks"][0]
        got = api.as_("admin").get(f"/v1/networks/{one['id']}")
        assert got.status_code == 200 and got.json()["ads"] == one["ads"]
        assert api.as_("investigator").get("/v1/networks/N-000000000000").status_code == 404
        assert api.as_("reviewer").get("/v1/networks").status_code == 403
        assert api.as_("partner").get(f"/v1/networks/{one['id']}").status_code == 403


def test_unknown_phone_region_is_refused_before_anything_is_stored(crawl: Path, data_dir: Path) -> None:
    done = run_reunite("index", str(crawl), "--bank", "ads", "--kind", "ads", "--region", "XX", data=data_dir)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: unknown phone region 'XX' (an ISO 3166 alpha-2 code such as US, GB, DE)"]
    assert not (data_dir / "catalog.sqlite").exists()
    no_bank = run_reunite("networks", "--bank", "ads", "--region", "gb", data=data_dir)
    assert no_bank.returncode == 2 and "no bank named" in no_bank.stderr
    assert contacts.check_region(" gb ") == "GB"


def _links_by_label(data: Path) -> set[tuple[str, str, str, float, str]]:
    """Every ad link of the data folder's `ads` bank, named by the ads' labels, with its evidence."""
    from indexer.store.catalog import Subject

    store = Store(data)
    try:
        with store.catalog.session() as s:
            labels = {int(i): str(label) for i, label in s.query(Subject.id, Subject.label)}
            return {(*sorted((labels[link.a], labels[link.b])), link.kind, round(float(link.strength), 6),
                     json.dumps(link.evidence, sort_keys=True)) for link in s.query(AdLink)}
    finally:
        store.catalog.engine.dispose()


def test_deferred_linking_gives_the_links_of_index_time_linking(crawl: Path, tmp_path: Path) -> None:
    """`index --no-link` then `networks` links exactly as `index` does (issue 15, point 5).

    The default ads signals (hashes, local features, faces): the mirrored repost is found
    through the print staged at indexing, the repost row of a4 through the rows recorded at
    indexing, and the copies through the stored local features; nothing is read back from a
    path relative to the manifest.
    """
    now, later = tmp_path / "now", tmp_path / "later"
    run_reunite("index", str(crawl), "--bank", "ads", "--quiet", data=now, check=True)
    deferred = run_reunite("index", str(crawl), "--bank", "ads", "--no-link", "--quiet", data=later,
                           check=True)
    assert "recorded 9 ad photo(s); linking deferred to `reunite networks --bank ads`" in deferred.stdout
    assert _links_by_label(later) == set()
    store = Store(later)
    with store.catalog.session() as s:  # the file each item came from, resolved against the manifest's folder
        from indexer.store.catalog import Item
        sources = {Path(src) for (src,) in s.query(Item.source)}
    store.catalog.engine.dispose()
    assert sources == {crawl.parent / f"{name}.{ext}" for name, ext in (
        ("a1", "png"), ("a2", "jpg"), ("a3", "jpg"), ("b1", "jpg"), ("b2", "jpg"), ("b3", "jpg"),
        ("c1", "jpg"), ("c2", "jpg"))}  # a4.png is a1.png's bytes: one item
    shown_now = run_reunite("networks", "--bank", "ads", "--json", data=now, check=True).stdout
    shown_later = run_reunite("networks", "--bank", "ads", "--json", data=later, check=True)
    assert "new link(s)" in shown_later.stderr  # the deferred search ran here
    expected = _links_by_label(now)
    assert {kind for _a, _b, kind, _s, _e in expected} >= {"photo", "phone", "email"}
    assert _links_by_label(later) == expected
    assert shown_later.stdout == shown_now
