"""Copies inside common frames (issue 17): a shared frame is no copy, the photo in it still is.

A bank of an ``ads`` kind holds five phone screenshots of one app, each showing a
different photo, and one photo alone; all pictures are drawn here with Pillow from
the fixture photos and from synthetic tiles. The app's chrome (status bar, header,
icons, buttons, fixed labels) is identical in every screenshot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from sqlalchemy import select

from indexer import ingest
from indexer.signals import base as signals
from indexer.store.store import Store
from matcher.networks.links import Linker, file_reader
from matcher.networks.store import AdLink
from matcher.search import decide, frames, parts
from matcher.search.query import Matcher
from tests.conftest import jpeg_bytes, photo, tiles

IN_FRAMES = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]
ALONE = "camera.png"


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def app_screenshot(img: Image.Image, user: str = "lina.k") -> Image.Image:
    """A 720 x 1280 feed app: status bar, logo, avatar, the photo square, icons, caption, nav bar."""
    page = Image.new("RGB", (720, 1280), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.text((30, 12), "21:47", fill=(20, 20, 20), font=_font(30))
    draw.rectangle((600, 14, 650, 38), outline=(20, 20, 20), width=3)
    for i in range(4):
        draw.rectangle((520 + i * 12, 38 - 6 * i, 527 + i * 12, 40), fill=(20, 20, 20))
    draw.text((28, 62), "Pictagram", fill=(20, 20, 20), font=_font(44))
    draw.ellipse((20, 140, 90, 210), fill=(225, 48, 108))
    draw.text((105, 155), user, fill=(20, 20, 20), font=_font(30))
    shown = img.resize((720, 720), Image.Resampling.LANCZOS)
    page.paste(shown, (0, 230))
    for i in range(3):
        x = 30 + i * 90
        draw.ellipse((x, 975, x + 50, 1025), outline=(20, 20, 20), width=4)
    draw.text((30, 1045), "1,204 likes   View all 87 comments", fill=(20, 20, 20), font=_font(26))
    draw.text((30, 1090), "new in town, text me", fill=(40, 40, 40), font=_font(26))
    draw.rectangle((0, 1180, 720, 1280), fill=(248, 248, 248))
    for i in range(5):
        cx = 72 + i * 144
        draw.rectangle((cx - 22, 1208, cx + 22, 1252), outline=(20, 20, 20), width=4)
    return page


def collage_2x2(img: Image.Image, others: list[Image.Image], slot: int) -> Image.Image:
    page = Image.new("RGB", (800, 800), (255, 255, 255))
    pool = iter(others)
    for i in range(4):
        cell = img if i == slot else next(pool)
        page.paste(cell.resize((392, 392), Image.Resampling.LANCZOS), (4 + (i % 2) * 396, 4 + (i // 2) * 396))
    return page


def paste_small(img: Image.Image, background: Image.Image) -> Image.Image:
    page = background.resize((800, 800), Image.Resampling.LANCZOS)
    shown = img.copy()
    shown.thumbnail((266, 266), Image.Resampling.LANCZOS)
    page.paste(shown, (470, 60))
    return page


def collage_1x3(img: Image.Image, others: list[Image.Image], slot: int,
                size: tuple[int, int] = (1200, 420), gap: int = 8) -> Image.Image:
    """``img`` in cell ``slot`` of a 1 x 3 strip with white gaps (as bench/frame_kinds.py draws)."""
    w, h = size
    cw, ch = (w - 4 * gap) // 3, h - 2 * gap
    page = Image.new("RGB", size, (255, 255, 255))
    pool = iter(others)
    for i in range(3):
        cell = img if i == slot else next(pool)
        page.paste(cell.resize((cw, ch), Image.Resampling.LANCZOS), (gap + i * (cw + gap), gap))
    return page


def drawn(seed: int, size: int = 480) -> Image.Image:
    """A photo no bank holds: random shapes and lines over a noisy gradient (SIFT-rich)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, size)[None, :, None] * rng.uniform(40, 200, 3)
    base = base + rng.normal(0, 12, (size, size, 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(60):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(6, size // 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), outline=colour, width=3)
    return img


def grid(img: Image.Image, others: list[Image.Image], n: int, slot: int, side: int = 900,
         gap: int = 8) -> Image.Image:
    """``img`` in cell ``slot`` of an n x n collage with white gaps."""
    cell = (side - gap * (n + 1)) // n
    page = Image.new("RGB", (side, side), (255, 255, 255))
    pool = iter(others)
    for i in range(n * n):
        row, col = divmod(i, n)
        shown = img if i == slot else next(pool)
        page.paste(shown.resize((cell, cell), Image.Resampling.LANCZOS),
                   (gap + col * (cell + gap), gap + row * (cell + gap)))
    return page


def busy(seed: int, size: int = 800, spots: int = 900) -> Image.Image:
    """A background whose keypoints outnumber and outshine a small photo pasted onto it."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)).resize(
        (size, size), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    for _ in range(spots):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(3, 14))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def _square(img: Image.Image) -> Image.Image:
    side = min(img.size)
    return img.crop((0, 0, side, side))


def _bank_photos() -> dict[str, Image.Image]:
    """label -> the picture the bank holds (screenshots of one app, one photo alone)."""
    out = {Path(n).stem: app_screenshot(_square(photo(n)), user=f"user{i}")
           for i, n in enumerate(IN_FRAMES)}
    out["tile"] = app_screenshot(tiles(1, size=512, seed=11)[0], user="tile.user")
    out[Path(ALONE).stem] = photo(ALONE)
    return out


@pytest.fixture(scope="module")
def framed_bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, object, Path]:
    root = tmp_path_factory.mktemp("frames")
    folder = root / "photos"
    folder.mkdir()
    records = []
    for label, img in _bank_photos().items():
        path = folder / f"{label}.jpg"
        path.write_bytes(jpeg_bytes(img))
        records.append(ingest.Record(path, label, path.name))
    store = Store(root / "data")
    bank = store.catalog.ensure_bank("ads", "ads")
    names = [s.name for s in signals.select(["hashes", "local"])]
    report = ingest.index_records(store, bank, records, names)
    assert report.indexed == len(records)
    store.checkpoint()
    return store, bank, folder


@pytest.fixture(scope="module")
def matcher(framed_bank: tuple[Store, object, Path]) -> Matcher:
    return Matcher(framed_bank[0])


def test_same_app_different_photo_is_a_template_not_a_match(framed_bank, matcher: Matcher) -> None:
    store, bank, _ = framed_bank
    query = jpeg_bytes(app_screenshot(_square(photo("brick.png")), user="someone"))
    candidates = matcher.match(query, [bank])
    assert candidates, "the shared chrome must still be reported as evidence"
    assert all(c.decision != decide.MATCH for c in candidates)
    templated = [c for c in candidates if c.evidence.get("local_template") == frames.TEMPLATE]
    assert templated, [c.evidence for c in candidates]
    best = templated[0]
    assert best.score < decide.REVIEW_SCORE
    assert best.evidence["local_shared_inliers"] >= frames.MIN_SHARED_INLIERS
    # The query's own photo is where the pair differs: inside the 720-px photo square.
    left, top, right, bottom = best.evidence["local_content_region"]
    assert top >= 150 and bottom <= 1060 and right - left >= 360


@pytest.mark.parametrize("name", ["chelsea.png", "rocket.jpg"])
def test_the_photo_alone_matches_its_screenshot(name: str, framed_bank, matcher: Matcher) -> None:
    _store, bank, _ = framed_bank
    candidates = matcher.match(jpeg_bytes(_square(photo(name))), [bank])
    assert candidates and candidates[0].label == Path(name).stem
    assert candidates[0].decision == decide.MATCH
    assert not candidates[0].evidence.get("local_template")


def test_a_photo_in_the_shared_frame_matches_the_photo_alone(framed_bank, matcher: Matcher) -> None:
    _store, bank, _ = framed_bank
    query = jpeg_bytes(app_screenshot(_square(photo(ALONE)), user="repost"))
    candidates = matcher.match(query, [bank])
    matched = [c for c in candidates if c.decision == decide.MATCH]
    assert [c.label for c in matched] == ["camera"], [(c.label, c.score, c.evidence) for c in candidates]


def test_a_repost_in_the_same_frame_still_matches(framed_bank, matcher: Matcher) -> None:
    _store, bank, _ = framed_bank
    query = jpeg_bytes(app_screenshot(_square(photo("coffee.png")), user="other.name"), quality=80)
    candidates = matcher.match(query, [bank])
    matched = [c.label for c in candidates if c.decision == decide.MATCH]
    assert matched == ["coffee"], [(c.label, c.score, c.evidence) for c in candidates]


def test_a_collage_quarter_and_a_small_paste_are_found(framed_bank, matcher: Matcher) -> None:
    _store, bank, _ = framed_bank
    fillers = tiles(3, size=400, seed=5)
    collage = collage_2x2(_square(photo("rocket.jpg")), fillers, slot=3)
    found = matcher.match(jpeg_bytes(collage), [bank])
    assert found and found[0].label == "rocket" and found[0].decision == decide.MATCH
    pasted = paste_small(photo(ALONE), photo("brick.png"))
    found = matcher.match(jpeg_bytes(pasted), [bank])
    assert found and found[0].label == "camera" and found[0].decision == decide.MATCH


def test_a_collage_cell_is_searched_as_a_part_of_its_own(framed_bank, matcher: Matcher) -> None:
    """The centre of a 3x3 collage of busy drawings: found by the part search, which says so."""
    _store, bank, _ = framed_bank
    collage = grid(_square(photo("rocket.jpg")), [drawn(i) for i in range(1, 9)], 3, slot=4)
    found = matcher.match(jpeg_bytes(collage), [bank])
    assert found and found[0].label == "rocket" and found[0].decision == decide.MATCH, \
        [(c.label, c.score, c.evidence) for c in found]
    assert found[0].evidence["local_part_kind"] == "collage cell"
    left, top, right, bottom = found[0].evidence["local_part"]
    assert 290 <= left <= 310 and 290 <= top <= 310 and 590 <= right <= 610 and 590 <= bottom <= 610


def test_a_small_paste_on_a_busy_picture_is_found_by_its_near_miss(framed_bank, matcher: Matcher) -> None:
    """Pasted at a fifth of the width, the photo keeps a few of the query's strongest keypoints:
    a near miss, whose region searched again on its own pixels makes the match."""
    _store, bank, _ = framed_bank
    shown = _square(photo(ALONE))
    shown.thumbnail((160, 160), Image.Resampling.LANCZOS)
    page = busy(3)
    page.paste(shown, (400, 300))
    found = matcher.match(jpeg_bytes(page), [bank])
    assert found and found[0].label == "camera" and found[0].decision == decide.MATCH, \
        [(c.label, c.score, c.evidence) for c in found]
    assert found[0].evidence["local_part_kind"] == "near miss"
    left, top, right, bottom = found[0].evidence["local_part"]
    assert left <= 400 + 10 and top <= 300 + 10 and right >= 560 - 10 and bottom >= 460 - 10


def test_parts_of_photos_the_bank_does_not_hold_match_nothing(framed_bank, matcher: Matcher) -> None:
    """Same layouts, different photos: a collage searched cell by cell, a large screenshot of the
    bank's app around another photo (detail pass eligible by size): no ``match``."""
    _store, bank, _ = framed_bank
    collage = grid(photo("brick.png"), [drawn(i) for i in range(1, 9)], 3, slot=4)
    found = matcher.match(jpeg_bytes(collage), [bank])
    assert all(c.decision != decide.MATCH for c in found), [(c.label, c.score) for c in found]
    assert any(c.evidence.get("local_part_kind") == "collage cell" for c in found)
    large = app_screenshot(drawn(30, 720), user="someone.else").resize((1080, 1920))
    found = matcher.match(jpeg_bytes(large), [bank])
    assert all(c.decision != decide.MATCH for c in found), [(c.label, c.score) for c in found]
    assert any(c.evidence.get("local_template") == frames.TEMPLATE for c in found)


def test_grid_and_paste_parts_of_generated_pictures() -> None:
    """Collage cells are cut along the gutters; a screenshot (bands of one colour around one
    photo and strips of text) is no collage; a pasted photo's rectangle is found."""
    strip = collage_1x3(_square(photo("rocket.jpg")), [drawn(1), drawn(2)], slot=1)
    cells = parts.grid_parts(np.asarray(strip.convert("L")), 1.0)
    assert sorted(p.box for p in cells) == [(8, 8, 398, 412), (406, 8, 796, 412), (804, 8, 1194, 412)] \
        or len(cells) == 3 and all(abs(p.box[3] - p.box[1] - 404) <= 2 for p in cells), cells
    screenshot = app_screenshot(_square(photo("coffee.png")))
    assert parts.grid_parts(np.asarray(screenshot.convert("L")), 1.0) == []
    page = drawn(9, 800).filter(ImageFilter.GaussianBlur(6))
    shown = _square(photo("astronaut.png")).resize((220, 220))
    page.paste(shown, (430, 380))
    boxes = [p.box for p in parts.paste_parts(np.asarray(page.convert("L")), 1.0)]
    # (a side on a background of the same shade is found a little inside the paste)
    assert any(parts._iou(b, (430, 380, 650, 600)) >= 0.7 for b in boxes), boxes


def test_common_rows_counts_distinct_items_within_the_distance() -> None:
    distances = np.array([[0.01, 0.02, 0.05, 0.5], [0.01, 0.01, 0.01, 0.01], [0.3, 0.4, 0.5, 0.6]],
                         np.float32)
    owners = np.array([[7, 8, 9, 10], [7, 7, 7, 8], [1, 2, 3, 4]], np.int64)
    common = frames.common_rows(distances, owners, n_rows=4)
    assert common.tolist() == [True, False, False, False]


def test_linking_screenshots_of_one_app_makes_no_photo_links(tmp_path: Path) -> None:
    """Index-time linking runs the same copy search: unrelated screenshots do not group."""
    folder = tmp_path / "crawl"
    folder.mkdir()
    pictures = _bank_photos()
    pictures["brick"] = app_screenshot(_square(photo("brick.png")), user="brick.user")
    pictures["coffee_repost"] = app_screenshot(_square(photo("coffee.png")), user="again")
    for label, img in pictures.items():
        (folder / f"{label}.jpg").write_bytes(jpeg_bytes(img))
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("ads", "ads")
    names = [s.name for s in signals.select(["hashes", "local"])]
    records = [ingest.Record(folder / f"{label}.jpg", label, str(folder / f"{label}.jpg"))
               for label in pictures]
    assert ingest.index_records(store, bank, records, names).indexed == len(records)
    Linker(store).update(bank, read=file_reader())
    from indexer.store.catalog import Subject
    with store.catalog.session() as s:
        labels = {x.id: x.label for x in s.scalars(select(Subject))}
        grouped = {tuple(sorted((labels[x.a], labels[x.b]))) for x in s.scalars(select(AdLink))
                   if x.kind == "photo" and x.strength >= decide.MATCH_SCORE}
    assert grouped == {("coffee", "coffee_repost")}, grouped


def test_the_review_page_says_same_template_different_photo() -> None:
    from api.web.evidence import explain

    ev = {"local_matches": 90, "local_inliers": 60, "local_tight_inliers": 58, "local_coverage": 0.42,
          "local_query_coverage": 0.42, "local_shared_inliers": 0.93, "local_agree_cells": 14,
          "local_differ_cells": 21, "local_template": frames.TEMPLATE,
          "local_content_region": [0, 230, 720, 950]}
    out = explain(ev, 0.49, "none")
    assert any(s.startswith("Same template, different photo: 93%") for s in out.sentences), out.sentences
    assert sum("geometric inliers" in s for s in out.sentences) == 1  # no sentence for "shared"
    assert any(shape.label == "its own photo" for shape in out.query_shapes)


def site_card(img: Image.Image, caption: str, price: str) -> Image.Image:
    """A 600 x 820 listing card (as bench/frame_kinds.py draws): logo bar, photo, per-post text
    from a short list (two cards may share a caption and a price), fixed labels and buttons."""
    page = Image.new("RGB", (600, 820), (244, 244, 248))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, 600, 70), fill=(120, 20, 60))
    draw.text((20, 15), "CityGirls.example", fill=(255, 255, 255), font=_font(36))
    draw.rounded_rectangle((20, 90, 580, 800), radius=14, fill=(255, 255, 255), outline=(210, 210, 220),
                           width=2)
    page.paste(img.resize((540, 440), Image.Resampling.LANCZOS), (30, 100))
    draw.text((40, 560), caption, fill=(30, 30, 30), font=_font(30))
    draw.text((40, 605), price, fill=(120, 20, 60), font=_font(28))
    draw.text((40, 650), "Verified  *  Incall  *  Outcall", fill=(110, 110, 110), font=_font(24))
    for i, label in enumerate(("CALL", "TEXT", "SAVE")):
        x = 40 + i * 180
        draw.rounded_rectangle((x, 710, x + 160, 770), radius=10, fill=(120, 20, 60))
        draw.text((x + 45, 725), label, fill=(255, 255, 255), font=_font(28))
    return page


def sky(seed: int, kite: bool = False) -> Image.Image:
    """A low-texture photo: a blurred sky gradient with soft clouds (few keypoints of its own)."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.uniform(30, 120, 3), rng.uniform(120, 230, 3)
    ramp = np.linspace(0, 1, 440)[:, None, None]
    base = top * (1 - ramp) + bottom * ramp + np.zeros((440, 540, 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.integers(0, 540), rng.integers(0, 300)
        draw.ellipse((x - 60, y - 20, x + 60, y + 20), fill=tuple(int(c) for c in bottom + 20))
    img = img.filter(ImageFilter.GaussianBlur(12))
    if kite:
        ImageDraw.Draw(img).polygon([(380, 120), (420, 150), (380, 200), (345, 150)], fill=(230, 40, 40))
    return img


def test_cards_of_one_site_around_different_photos_with_the_same_text_do_not_match(
        tmp_path: Path) -> None:
    """Frames suite case (issue 17): a site card around a kite in the sky matched a card around a
    stormy sky (217 tight inliers, 11 agreeing cells): the caption and the price in the same
    words, the rest the site's chrome, the photos flat. The agreement lies on the shared frame:
    the pairs are the same template, not copies; a repost of a card's photo still matches."""
    folder = tmp_path / "cards"
    folder.mkdir()
    captions = ["Available Tonight", "Sweet And Discreet", "Text Only Please", "Ask For Rates",
                "Outcall Only", "New In Town", "Visiting This Week", "Real Photos 100%"]
    photos = tiles(16, size=540, seed=3)
    # 16 cards (the suite's bank shares each frame 10+ times), per-post text from short lists.
    pictures = {f"card{i}": site_card(photos[i].resize((540, 440)), captions[i % 8],
                                      f"${(i % 4 + 3) * 30} / hr  -  user{i % 8}") for i in range(16)}
    pictures["stormy"] = site_card(sky(1), "Outcall Only", "$90 / hr  -  mila_new")
    for label, img in pictures.items():
        (folder / f"{label}.jpg").write_bytes(jpeg_bytes(img))
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("ads", "ads")
    records = [ingest.Record(folder / f"{label}.jpg", label, f"{label}.jpg") for label in pictures]
    names = [s.name for s in signals.select(["hashes", "local"])]
    assert ingest.index_records(store, bank, records, names).indexed == len(records)
    store.checkpoint()
    matcher = Matcher(store)
    # Same caption and price as "stormy" (and as card4, card12), another flat photo.
    query = site_card(sky(2, kite=True), "Outcall Only", "$90 / hr  -  jess_24")
    found = matcher.match(jpeg_bytes(query, quality=85), [bank])
    assert all(c.decision != decide.MATCH for c in found), \
        [(c.label, c.score, c.evidence.get("local_tight_inliers")) for c in found]
    assert any(c.evidence.get("local_template") == frames.TEMPLATE for c in found)
    repost = site_card(photos[5].resize((540, 440)), "Outcall Only", "$90 / hr  -  jess_24")
    found = matcher.match(jpeg_bytes(repost, quality=85), [bank])
    assert [c.label for c in found if c.decision == decide.MATCH] == ["card5"], \
        [(c.label, c.score) for c in found]
