"""Hash links in a crawl: common templates do not group ads, framed and overlaid copies do.

The crawl is built here: six ads paste six *different* photos into one web
page template (their PDQ hashes are within the link distance of each other,
the trap the template test exists for), and three ads show one photo as is,
with a sticker, and framed by a wide uniform border (found through the
trimmed print).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, photo, run_reunite, tiles
from PIL import Image, ImageDraw, ImageOps

from indexer import images
from indexer.store.store import Store
from matcher.networks import components as networks
from matcher.networks import prints as link_prints
from matcher.networks.links import LinkConfig
from matcher.networks.store import AdItemLink, AdLink

SCREENSHOTS = [f"s{n}" for n in range(8)]
COPIES = {"o1", "o2", "o3"}


def page_with(tile: Image.Image) -> Image.Image:
    """A fixed 'web page' (bars, boxes, text-like lines) with ``tile`` pasted into its photo slot."""
    page = Image.new("RGB", (640, 400), (245, 245, 245))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, 640, 40), fill=(40, 60, 120))
    draw.rectangle((0, 40, 120, 400), fill=(200, 205, 215))
    rng = np.random.default_rng(3)
    for n in range(14):
        y = 60 + 24 * n
        draw.rectangle((140, y, 140 + int(rng.integers(150, 460)), y + 8), fill=(90, 90, 90))
    for box in ((470, 60, 620, 200), (470, 220, 620, 380)):
        draw.rectangle(box, fill=(120, 160, 90))
    # The photo is 5% of the page: PDQ mostly sees the page.
    page.paste(tile.resize((130, 100)), (200, 270))
    return page


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("templates")
    rows = []
    for label, tile in zip(SCREENSHOTS, tiles(len(SCREENSHOTS), size=128, seed=11), strict=True):
        (folder / f"{label}.jpg").write_bytes(jpeg_bytes(page_with(tile), quality=92))
        rows.append({"path": f"{label}.jpg", "label": label, "site": "site-a.example"})
    original = photo("astronaut.png")
    stickered = original.copy()
    ImageDraw.Draw(stickered).ellipse((20, 20, 110, 110), fill=(255, 210, 0))
    framed = ImageOps.expand(original.resize((300, 300)), border=90, fill=(150, 40, 200))
    for label, img in (("o1", original), ("o2", stickered), ("o3", framed)):
        (folder / f"{label}.jpg").write_bytes(jpeg_bytes(img, quality=88))
        rows.append({"path": f"{label}.jpg", "label": label, "site": "site-b.example"})
    manifest = folder / "ads.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "site"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _print(path: Path) -> link_prints.Print:
    return link_prints.print_of(images.load(path.read_bytes(), max_side=512))


def test_screenshots_are_a_hash_trap(crawl: Path) -> None:
    """The premise: different photos in one template hash within the link distance."""
    pages = [_print(crawl.parent / f"{x}.jpg") for x in SCREENSHOTS]
    index = link_prints.KeyIndex()
    for n, page in enumerate(pages):
        index.add(n, link_prints.FULL, page.pdq)
    close = {(n, other) for n, page in enumerate(pages)
             for other, (dist, _q, _s) in index.search(page.keys(), LinkConfig().pdq_distance).items()
             if other != n}
    assert close


def test_trim_box_finds_a_uniform_frame(crawl: Path) -> None:
    framed = images.load((crawl.parent / "o3.jpg").read_bytes())
    box = link_prints.trim_box(framed.rgb)
    assert box is not None
    top, bottom, left, right = box
    assert abs(top - 90) <= 3 and abs(left - 90) <= 3 and abs(bottom - 390) <= 3 and abs(right - 390) <= 3
    assert link_prints.trim_box(images.load((crawl.parent / "o1.jpg").read_bytes()).rgb) is None


def test_index_groups_copies_but_not_template_pages(crawl: Path, data_dir: Path) -> None:
    run_reunite("index", str(crawl), "--bank", "ads", "--kind", "ads", "--signals", "hashes",
                "--quiet", data=data_dir, check=True)
    store = Store(data_dir)
    bank = store.bank_or_error("ads")
    groups = [set(n.summary()["ads"]) for n in networks.find_networks(store.catalog, bank)]
    assert COPIES in groups  # the sticker and the trimmed frame still link
    for group in groups:
        assert len(group & set(SCREENSHOTS)) <= 1, group
    with store.catalog.session() as s:
        pairs = list(s.query(AdItemLink))
        template_links = [x for x in s.query(AdLink) if x.evidence.get("template")]
    # Pairs of screenshots were found by their hashes, then judged templates (some
    # only once later pages arrived as witnesses), and are kept as weak evidence.
    assert any(p.template for p in pairs)
    assert template_links and all(x.strength < networks.DEFAULT_MIN_STRENGTH for x in template_links)
    assert all(not p.template for p in pairs if p.witnesses < LinkConfig().template_witnesses)


def test_template_witnesses_counts_third_contents() -> None:
    rng = np.random.default_rng(5)
    page = rng.uniform(0, 255, (32, 32)).astype(np.float32)

    def paste(content: np.ndarray) -> np.ndarray:
        out = page.copy()
        out[10:20, 8:20] = content
        return out

    contents = [rng.uniform(0, 255, (10, 12)).astype(np.float32) for _ in range(5)]
    a, b = paste(contents[0]), paste(contents[1])
    others = [[paste(c)] for c in contents[2:]]
    assert link_prints.template_witnesses(a, b, others) == 3
    # A sticker on one copy: the other copies show b's content where a and b differ.
    assert link_prints.template_witnesses(a, paste(contents[0] * 0 + 255), [[a], [a + 2]]) == 0
    # Witnesses that are copies of a (or of b) show no third content.
    assert link_prints.template_witnesses(a, b, [[a + 1], [b - 1]]) == 0
    # Pairs that differ everywhere or nowhere have no shared template part to test.
    assert link_prints.template_witnesses(a, 255 - a, others) == 0
    assert link_prints.template_witnesses(a, a + 1, others) == 0


def test_later_pages_demote_an_earlier_template_link(crawl: Path, data_dir: Path) -> None:
    """Two pages linked while nothing showed the template is common stop grouping once others arrive."""
    from indexer import ingest
    from matcher.networks.links import Linker, Occurrence, file_reader

    pages = {x: _print(crawl.parent / f"{x}.jpg") for x in SCREENSHOTS}
    index = link_prints.KeyIndex()
    for n, label in enumerate(SCREENSHOTS):
        index.add(n, link_prints.FULL, pages[label].pdq)
    first, second = next(
        (label, SCREENSHOTS[other]) for label in SCREENSHOTS
        for other, (_d, _q, _s) in index.search(pages[label].keys(), LinkConfig().pdq_distance).items()
        if SCREENSHOTS[other] != label)
    store = Store(data_dir)
    bank = store.catalog.ensure_bank("ads", "ads")
    linker = Linker(store)
    records = {r.label: r for r in ingest.read_source(crawl)}

    def add(labels: list[str]) -> None:
        batch = [records[x] for x in labels]
        ingest.index_records(store, bank, batch, ["pdq", "phash"])
        shas = {ingest.file_sha256(r.path): r for r in batch}
        linker.record(bank, [Occurrence(r.label, sha, r.attributes) for sha, r in shas.items()])
        linker.update(bank, read=file_reader({sha: r.path for sha, r in shas.items()}))

    def grouped() -> list[set[str]]:
        return [set(n.summary()["ads"]) for n in networks.find_networks(store.catalog, bank)]

    add([first, second])
    assert {first, second} in grouped()  # nothing yet says the page is a template
    add([x for x in SCREENSHOTS if x not in (first, second)])
    assert all(len(g & set(SCREENSHOTS)) <= 1 for g in grouped())
    with store.catalog.session() as s:
        first_pair = s.query(AdItemLink).order_by(AdItemLink.id).first()
        assert first_pair is not None and first_pair.template
        assert first_pair.witnesses >= LinkConfig().template_witnesses
        kept = [x for x in s.query(AdLink).filter(AdLink.kind == "photo") if x.evidence.get("template")]
    assert kept and all(x.strength < networks.DEFAULT_MIN_STRENGTH for x in kept)


def test_http_ingested_ads_are_linked_from_their_pictures(crawl: Path, data_dir: Path) -> None:
    """Ads pushed over HTTP keep no file: the networks route reads the stored photos back,
    so the template test guards them as it guards `reunite index`."""
    import json

    from api_support import live_api, no_encryption_key

    with no_encryption_key(), live_api(data_dir) as api:
        assert api.as_("admin").post("/v1/banks", json={
            "name": "ads", "kind": "ads", "policy": {"signals": ["hashes"]}}).status_code == 201
        for label in [*SCREENSHOTS, *sorted(COPIES)]:
            sent = api.as_("ingest").post(
                "/v1/banks/ads/items", data={"label": label, "attributes": json.dumps({"site": "x"})},
                files={"image": (f"{label}.jpg", (crawl.parent / f"{label}.jpg").read_bytes(),
                                 "image/jpeg")})
            assert sent.status_code == 201, sent.text
        listed = api.as_("investigator").get("/v1/networks", params={"bank": "ads"})
        assert listed.status_code == 200, listed.text
        groups = [set(n["ads"]) for n in listed.json()["networks"]]
    assert COPIES in groups
    for group in groups:
        assert len(group & set(SCREENSHOTS)) <= 1, group
