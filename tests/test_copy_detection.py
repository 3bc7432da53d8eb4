"""Copy detection end to end: reposts edited the way ad posters edit photos must ``match``.

A bank holds four fixture photos (hashes + local features, as an ``ads`` bank
indexes them); queries are edits generated here: crops, pads, mirror, quarter
turn, a caption, an emoji, a screenshot-like paste. Photos that are not in the
bank must not match anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from indexer import images, ingest, pipeline
from indexer.kinds import default_families
from indexer.signals import base as signals
from indexer.signals import local
from indexer.store.features import LocalIndexSet
from indexer.store.store import Store
from matcher.search import copies as copy_search
from matcher.search import decide
from matcher.search.query import Matcher
from tests.conftest import FIXTURES, jpeg_bytes, photo

IN_BANK = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]
NOT_IN_BANK = ["camera.png", "brick.png"]


def crop_50(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((w // 5, h // 3, w // 5 + w // 2, h // 3 + h // 2))


def pad_20(img: Image.Image) -> Image.Image:
    w, h = img.size
    return ImageOps.expand(img, (w // 5, h // 5, w // 5, h // 5), fill=(30, 160, 90))


def caption(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(12, img.height // 11))
    draw.text((img.width // 10, img.height // 2), "NEW IN TOWN call 555-0199", fill=(255, 0, 200),
              font=font)
    return out


def emoji(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    r = img.height * 3 // 20
    cx, cy = img.width * 2 // 3, img.height // 3
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 204, 0))
    draw.ellipse((cx - r // 2, cy - r // 3, cx - r // 5, cy), fill=(60, 40, 0))
    draw.ellipse((cx + r // 5, cy - r // 3, cx + r // 2, cy), fill=(60, 40, 0))
    draw.arc((cx - r // 2, cy, cx + r // 2, cy + r // 2), 0, 180, fill=(60, 40, 0), width=3)
    return out


def screenshot(img: Image.Image) -> Image.Image:
    """A 1200 x 736 page showing the photo at up to 560 px."""
    return _page(img, (1200, 736), header=64, rows=(120, 700, 40), column=(720, 1150, 14),
                 shown_side=560, at=(80, 110))


def large_screenshot(img: Image.Image, shown_side: int = 300) -> Image.Image:
    """A 1600 x 1000 page showing the photo at ``shown_side`` px: 150 px in an 800-px frame."""
    return _page(img, (1600, 1000), header=80, rows=(140, 960, 44), column=(800, 1540, 16),
                 shown_side=shown_side, at=(90, 130))


def _page(img: Image.Image, size: tuple[int, int], *, header: int, rows: tuple[int, int, int],
          column: tuple[int, int, int], shown_side: int, at: tuple[int, int]) -> Image.Image:
    """A web page: a header bar, grey text lines in a column, and the photo pasted at ``at``."""
    page = Image.new("RGB", size, (246, 246, 246))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, size[0], header), fill=(40, 60, 120))
    left, right, height = column
    for y in range(*rows):
        draw.rectangle((left, y, right, y + height), fill=(200, 200, 200))
    shown = img.copy()
    shown.thumbnail((shown_side, shown_side))
    page.paste(shown, at)
    return page


EDITS = {
    "crop_50": crop_50,
    "pad_20": pad_20,
    "hflip": ImageOps.mirror,
    "rot90": lambda im: im.rotate(90, expand=True),
    "text_overlay": caption,
    "emoji_overlay": emoji,
    "screenshot": screenshot,
    "large_screenshot": large_screenshot,
}


@pytest.fixture(scope="module")
def bank_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, object]:
    data = tmp_path_factory.mktemp("copy") / "data"
    store = Store(data)
    bank = store.catalog.ensure_bank("ads", "ads")
    records = [ingest.Record(FIXTURES / name, Path(name).stem, name) for name in IN_BANK]
    names = [s.name for s in signals.select(["hashes", "local"])]
    report = ingest.index_records(store, bank, records, names)
    assert report.indexed == len(IN_BANK)
    store.checkpoint()
    return store, bank


@pytest.fixture(scope="module")
def matcher(bank_store: tuple[Store, object]) -> Matcher:
    return Matcher(bank_store[0])


def test_ads_banks_index_local_features_by_default() -> None:
    assert "local" in default_families("ads")
    assert "local" not in default_families("hashes")


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("name", ["astronaut.png", "rocket.jpg"])
def test_edited_repost_matches(edit: str, name: str, bank_store: tuple[Store, object],
                               matcher: Matcher) -> None:
    store, bank = bank_store
    query = EDITS[edit](photo(name))
    candidates = matcher.match(jpeg_bytes(query, 85), [bank])
    assert candidates, f"{edit} of {name}: no candidates"
    best = candidates[0]
    assert best.label == Path(name).stem
    assert best.decision == decide.MATCH, (edit, name, best.score, best.evidence)
    assert 0.0 <= best.score <= 1.0


def test_crop_evidence_names_the_matched_region(bank_store: tuple[Store, object],
                                                matcher: Matcher) -> None:
    _store, bank = bank_store
    original = photo("coffee.png")
    w, h = original.size
    best = matcher.match(jpeg_bytes(crop_50(original)), [bank])[0]
    ev = best.evidence
    assert ev["local_inliers"] >= ev["local_tight_inliers"] > 0
    left, top, right, bottom = ev["local_region"]
    # The crop was taken at (w/5, h/3) with half the width and height.
    assert abs(left - w // 5) < w * 0.1 and abs(top - h // 3) < h * 0.1
    assert right - left <= w * 0.55 and bottom - top <= h * 0.55
    assert ev["local_query_coverage"] > ev["local_coverage"]


@pytest.mark.parametrize("name", NOT_IN_BANK)
@pytest.mark.parametrize("edit", ["none", "crop_50", "screenshot", "large_screenshot", "hflip"])
def test_unrelated_photos_do_not_match(name: str, edit: str, bank_store: tuple[Store, object],
                                       matcher: Matcher) -> None:
    _store, bank = bank_store
    img = photo(name)
    query = img if edit == "none" else EDITS[edit](img)
    for cand in matcher.match(jpeg_bytes(query), [bank]):
        assert cand.decision != decide.MATCH, (name, edit, cand.label, cand.evidence)


def test_mirrored_match_reports_the_flip(bank_store: tuple[Store, object], matcher: Matcher) -> None:
    _store, bank = bank_store
    best = matcher.match(jpeg_bytes(crop_50(ImageOps.mirror(photo("chelsea.png")))), [bank])[0]
    assert best.label == "chelsea" and best.decision == decide.MATCH
    assert best.evidence.get("local_transform") == "flip_y"


def test_descriptor_index_catches_up_and_rebuilds_after_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("b", "ads")
    names = [s.name for s in signals.select(["local"])]
    first = [ingest.Record(FIXTURES / n, Path(n).stem, n) for n in IN_BANK[:2]]
    ingest.index_records(store, bank, first, names)
    indexes = LocalIndexSet(store.data_dir, store.catalog)
    before = indexes.get(bank.id)
    assert before.n_vectors == 2 and len(before) > 100
    size_before = len(before)

    rest = [ingest.Record(FIXTURES / n, Path(n).stem, n) for n in IN_BANK[2:]]
    ingest.index_records(store, bank, rest, names)
    grown = indexes.get(bank.id)
    assert grown.n_vectors == 4 and len(grown) > size_before
    # A fresh process loads the saved file instead of recomputing.
    reloaded = LocalIndexSet(store.data_dir, store.catalog).get(bank.id)
    assert reloaded.n_vectors == 4 and len(reloaded) == len(grown)

    with store.catalog.session() as s:
        item = store.catalog.item_by_sha(s, bank.id, ingest.file_sha256(FIXTURES / IN_BANK[0]))
        store.delete_items(s, [item.id])
    after = indexes.get(bank.id)
    assert after.n_vectors == 3
    assert set(np.unique(after.owners)) <= {v for v in np.unique(grown.owners)}
    assert len(np.unique(after.owners)) == 3


def test_pack_round_trip_and_signal_distance() -> None:
    picture = images.load(FIXTURES / "astronaut.png")
    features = local.extract_features(picture)
    assert 100 < len(features) <= local.MAX_KEYPOINTS
    back = local.unpack(local.pack(features), picture.original_size[0])
    assert np.array_equal(back.descriptors, features.descriptors)
    assert np.allclose(back.xy, features.xy, atol=1 / 16)
    other = local.SIFT.extract(images.load(FIXTURES / "brick.png"))[0].vector
    same = local.SIFT.extract(images.load(jpeg_bytes(photo("astronaut.png"), 70)))[0].vector
    mine = local.SIFT.extract(picture)[0].vector
    assert local.SIFT.distance(mine, same) < local.SIFT.default_thresholds.match
    assert local.SIFT.distance(mine, other) > local.SIFT.default_thresholds.review


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png"])
@pytest.mark.parametrize("frac", [0.5, 0.4])
def test_small_corner_crop_of_an_ad_sized_photo_matches(name: str, frac: float,
                                                        bank_store: tuple[Store, object],
                                                        matcher: Matcher) -> None:
    """An ad photo (long side 400 px) cropped to a corner of 40-50%: 160-200 px left.

    With SIFT's default contrast such a query keeps 10-35 keypoints and half of
    these corners were only a ``review``; the lowered, adaptive threshold and the
    grid-spread reference keypoints make every one of them a ``match``.
    """
    _store, bank = bank_store
    img = photo(name)
    img.thumbnail((400, 400))
    w, h = img.size
    cw, ch = int(w * frac), int(h * frac)
    for fx, fy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        left, top = (w - cw) * fx, (h - ch) * fy
        query = jpeg_bytes(img.crop((left, top, left + cw, top + ch)))
        assert len(local.extract_features(images.load(query), max_keypoints=local.QUERY_KEYPOINTS,
                                          max_side=local.QUERY_SIDE, spread=False)) >= 100
        best = matcher.match(query, [bank])[0]
        assert best.label == Path(name).stem and best.decision == decide.MATCH, \
            (name, frac, fx, fy, best.evidence)


@pytest.mark.parametrize("shown_side", [240, 360])
def test_photo_small_on_a_large_page_matches_through_the_detail_pass(
        shown_side: int, bank_store: tuple[Store, object], matcher: Matcher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At 800 px the rocket shown on 240-360 px of a 1600-px page keeps 8-20 tight inliers
    (a ``review``); features of the full-size page, computed only because nothing matched,
    make it a ``match``. Without that pass (frame capped at the first pass's size) it stays
    a review, so the pass, not the first search, is what links it.
    """
    _store, bank = bank_store
    query = jpeg_bytes(large_screenshot(photo("rocket.jpg"), shown_side), 90)
    best = matcher.match(query, [bank])[0]
    assert best.label == "rocket" and best.decision == decide.MATCH, best.evidence
    monkeypatch.setattr(copy_search, "DETAIL_SIDE", local.QUERY_SIDE)
    # The part pass (a near miss's region re-extracted on its own) can also make it a match:
    # switched off too, so that this shows what the detail pass alone adds.
    monkeypatch.setattr(copy_search, "MAX_NEAR_PARTS", 0)
    monkeypatch.setattr(copy_search.parts, "paste_parts", lambda grey, scale: [])
    monkeypatch.setattr(copy_search.parts, "grid_parts", lambda grey, scale: [])
    capped = matcher.match(query, [bank])[0]
    assert capped.label == "rocket" and capped.decision == decide.REVIEW, capped.evidence
    assert capped.evidence["local_tight_inliers"] < best.evidence["local_tight_inliers"]


def test_detail_features_only_for_queries_larger_than_the_first_frame() -> None:
    from matcher.search.query import Query
    small = images.load(jpeg_bytes(crop_50(photo("rocket.jpg"))))
    large = images.load(jpeg_bytes(large_screenshot(photo("rocket.jpg"))))
    assert copy_search.detail_features(Query(b"", small, None)) is None  # type: ignore[arg-type]
    detail = copy_search.detail_features(Query(b"", large, None))  # type: ignore[arg-type]
    assert detail is not None and max(detail.frame) == copy_search.DETAIL_SIDE
    assert len(detail) > len(copy_search.query_features(Query(b"", large, None), False)[0])  # type: ignore[arg-type]


def _local_evidence(tight: int, inliers: int, matches: int, query_coverage: float) -> dict[str, float]:
    return {"local_matches": matches, "local_inliers": inliers, "local_tight_inliers": tight,
            "local_coverage": 0.05, "local_query_coverage": query_coverage}


def test_few_inliers_that_almost_all_matches_agree_on_are_a_match() -> None:
    """A flat crop verifies with 8 of its 9 matches: a match under the shipped defaults.

    The same 8 inliers among 20 matches (what chance fits and look-alikes look like),
    or spread over a small patch, stay a review; 5 inliers are too few however consistent.
    """
    from matcher import defaults as defaults_mod
    d = defaults_mod.load()
    rule = decide.CopyRule.from_sections(d.section("copy"))
    assert rule.consistent_share <= 0.9 and rule.consistent_coverage <= 0.25

    def decision(ev: dict[str, float]) -> str:
        return decide.decision_for(decide.evidence_score(ev, d))

    assert decision(_local_evidence(8, 8, 9, 0.25)) == decide.MATCH
    assert decision(_local_evidence(8, 8, 20, 0.25)) == decide.REVIEW
    assert decision(_local_evidence(8, 8, 9, 0.08)) == decide.REVIEW
    assert decision(_local_evidence(5, 5, 5, 0.4)) != decide.MATCH
    # Without the keys (an older defaults file, or a bank policy switching it off) the
    # rule is the inlier count alone.
    off = decide.CopyRule.from_sections({**d.section("copy"), "consistent_share": 1.01})
    assert decide.copy_score(8, 0.25, off, consistent=8 / 9) < decide.MATCH_SCORE


def test_uninformative_64_bit_hashes_never_auto_match(tmp_path: Path) -> None:
    """Two different flat pictures whose dHash is all ones agree bit for bit: such a hash
    (bit balance below the gate, like PDQ's quality) may ask for a review, never a match."""
    from indexer.signals.hashes import bit_balance

    x = np.linspace(0, 1, 320)[None, :]
    bands = np.sin(np.linspace(0, 6, 240))[:, None]
    reference = np.repeat(40 + 180 * x, 240, axis=0)  # a smooth page: brighter to the right
    query = 10 + 80 * x + 25 * bands  # a dark picture with bands, also brighter to the right
    ref_img, query_img = (Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")
                          for a in (reference, query))
    (tmp_path / "page.jpg").write_bytes(jpeg_bytes(ref_img))
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("h", "ads")
    ingest.index_records(store, bank, [ingest.Record(tmp_path / "page.jpg", "page", "page.jpg")],
                         [s.name for s in signals.select(["hashes"])])
    [found] = Matcher(store).match(jpeg_bytes(query_img), [bank])
    assert found.evidence["dhash"] <= 1  # the trap: (nearly) identical hashes
    assert found.evidence["dhash_quality"] < 0.25
    assert found.decision != "match"
    # A real photo's hashes are balanced, so the gate leaves copies alone.
    astro = pipeline.extract(jpeg_bytes(photo("astronaut.png")), ["ahash", "dhash", "whash", "phash"])
    assert all(v.quality is not None and v.quality >= 0.25 for v in astro.vectors)
    assert bit_balance(np.packbits(np.ones(64, dtype=np.uint8))) == 0.0


def test_portrait_banks_ask_their_hashes_for_reposts_only(tmp_path: Path) -> None:
    """The same hash distances are a copy in an ads bank and only a review in a missing-person
    bank, whose impostors (portraits framed alike) sit far closer than varied ad photos do."""
    src = photo("astronaut.png")
    (tmp_path / "ref.jpg").write_bytes(jpeg_bytes(src))
    query = jpeg_bytes(src.crop((30, 0, src.width, src.height)))  # PDQ 66, pHash 6 from the reference
    store = Store(tmp_path / "data")
    hashes = [s.name for s in signals.select(["hashes"])]
    found = {}
    for kind in ("ads", "missing_person"):
        bank = store.catalog.ensure_bank(f"{kind}-bank", kind)
        ingest.index_records(store, bank, [ingest.Record(tmp_path / "ref.jpg", "ref", "ref.jpg")], hashes)
        [found[kind]] = Matcher(store).match(query, [bank])
    assert found["ads"].evidence["pdq"] == found["missing_person"].evidence["pdq"] > 50
    assert found["ads"].decision == "match"
    assert found["missing_person"].decision == "review"
    # A bank's own thresholds still win over its kind's.
    defaults = Matcher(store).defaults
    own = {"thresholds": {"pdq": {"match": 70, "review": 90}}}
    policy = defaults.policy_for("missing_person", own)
    assert policy["thresholds"]["pdq"] == {"match": 70, "review": 90}
    assert policy["thresholds"]["phash"]["match"] < defaults.thresholds("phash").match
