"""Text in ad photos: OCR lines with boxes, contacts read from them, links and search by contact.

Fixtures are painted here (Pillow, a Debian font or Pillow's bundled one at a
large size) onto the fixture photos; OCR costs 1-3 s an image on a loaded
machine, so the CLI and HTTP tests share one small data folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import LiveApi, live_api
from PIL import Image, ImageDraw, ImageFont

from indexer import images, pipeline
from indexer.signals import base as signals
from matcher.networks.photo_contacts import read_contacts
from tests.conftest import photo, png_bytes, run_reunite

NUMBER = "+1 (212) 555-0143"
E164 = "+12125550143"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(str(DEJAVU), size) if DEJAVU.exists() else ImageFont.load_default(size)


def painted(name: str, lines: list[str], size: int = 26, at: tuple[int, int] = (24, 24),
            bar: bool = False) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``name`` with ``lines`` painted as ads paint them; returns the picture and the text's box."""
    img = photo(name)
    draw = ImageDraw.Draw(img, "RGBA")
    text = "\n".join(lines)
    box = draw.multiline_textbbox(at, text, font=font(size), spacing=8)
    if bar:
        draw.rectangle((box[0] - 8, box[1] - 6, box[2] + 8, box[3] + 6), fill=(0, 0, 0, 150))
    draw.multiline_text(at, text, font=font(size), fill=(255, 255, 255), spacing=8,
                        stroke_width=1, stroke_fill=(0, 0, 0))
    return img, box


# --- contacts read from OCR lines (no OCR needed) ----------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    ("Call +1 (212) 555-0143", {("phone", E164)}),
    ("text me 212.555.0143 anytime", {("phone", E164)}),
    ("2l2 555 O143", {("phone", E164)}),  # the recogniser's letter-for-digit confusions
    ("WhatsApp wa.me/12125550143", {("phone", E164), ("url", "wa.me/12125550143")}),
    ("Telegram @Sweet_Lily22", {("handle", "@sweet_lily22")}),
    ("t.me/LilyRose", {("handle", "@lilyrose")}),
    ("Snap: kitty_k", {("handle", "@kitty_k")}),
    ("Lily.Rose+ads@Gmail.com", {("email", "lilyrose@gmail.com")}),
    ("www.Escort-Site.com/ads/1", {("url", "escort-site.com/ads/1")}),
    ("200$ 1 hour, 2024-05-01", set()),
    ("call me", set()),
])
def test_contacts_are_read_from_a_line_and_normalised(line: str, expected: set[tuple[str, str]]) -> None:
    assert {(f.kind, f.value) for f in read_contacts(line, "US")} == expected


def test_phones_use_the_banks_region() -> None:
    assert {f.value for f in read_contacts("020 7123 4567", "GB")} == {"+442071234567"}
    assert not read_contacts("020 7123 4567", "US")


# --- the annotator ----------------------------------------------------------------------------
def test_ocr_reads_a_painted_number_with_its_box() -> None:
    img, box = painted("coffee.png", [f"Call {NUMBER}"], at=(30, 300), bar=True)
    out = pipeline.extract(png_bytes(img), ["ocr"])
    assert out.vectors == []
    lines = [a for a in out.annotations if E164 in {f.value for f in read_contacts(a.text)}]
    assert lines, [a.text for a in out.annotations]
    left, top, right, bottom = lines[0].box
    assert left <= box[0] + 10 and top <= box[1] + 10 and right >= box[2] - 10 and bottom >= box[3] - 10
    assert 0.0 <= lines[0].confidence <= 1.0
    again = pipeline.extract(png_bytes(img), ["ocr"]).annotations
    assert again == out.annotations


def test_precheck_skips_a_picture_without_text_regions() -> None:
    from indexer.signals.text import TextReader

    reader = TextReader()
    flat = images.load(png_bytes(Image.new("RGB", (400, 300), (120, 130, 140))))
    assert reader.annotate(flat) == []
    assert "full" not in reader._engines  # the full detector + recogniser pass never ran


def test_text_family_is_chosen_by_signals_and_not_a_vector_signal() -> None:
    annotator = signals.get_annotator("ocr")
    assert annotator is not None and annotator.family == "text"
    assert "ocr" not in {s.name for s in signals.all_signals()}  # the vector conformance suite skips it
    assert signals.resolve(["hashes", "text"])[-1] == "ocr"
    assert "text" in signals.families()
    with pytest.raises(KeyError, match="nonsense"):
        signals.resolve(["text", "nonsense"])


def test_ocr_of_bad_input_is_a_typed_error() -> None:
    with pytest.raises(images.ImageError):
        pipeline.extract(b"plain text, not a picture", ["ocr"])


# --- one data folder: four ads, a number shared only on photos --------------------------------
@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("text-crawl")
    rows = [
        ("a.png", "ad-a", "coffee.png", [f"Call {NUMBER}"], ""),
        ("b.png", "ad-b", "rocket.jpg", ["Telegram @sweet_lily22", NUMBER.replace("+1 ", "")], ""),
        ("c.png", "ad-c", "chelsea.png", ["new in town"], "212-555-0143"),
        ("d.png", "ad-d", "brick.png", ["Call +1 646 555 0199"], ""),
    ]
    with (root / "ads.csv").open("w") as f:
        f.write("path,label,phones\n")
        for file, label, source, lines, phones in rows:
            img, _box = painted(source, lines, bar=source == "coffee.png")
            img.save(root / file)
            f.write(f"{file},{label},{phones}\n")
    data = root / "data"
    run_reunite("index", str(root / "ads.csv"), "--bank", "ads", "--signals", "hashes,text", "--quiet",
                data=data, check=True)
    return root, data


def test_ads_sharing_a_number_only_on_photos_form_one_network(crawl: tuple[Path, Path]) -> None:
    _root, data = crawl
    out = run_reunite("networks", "--bank", "ads", "--json", data=data, check=True).stdout
    nets = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [sorted(n["ads"]) for n in nets] == [["ad-a", "ad-b", "ad-c"]]
    assert nets[0]["evidence"].get("photo_text_phone", 0) >= 2


def test_search_by_phone_lists_text_and_photo_carriers(crawl: tuple[Path, Path]) -> None:
    _root, data = crawl
    out = run_reunite("search", "--phone", "(212) 555 0143", "--json", data=data, check=True).stdout
    hits = {h["ad"]: h for h in map(json.loads, out.splitlines())}
    assert sorted(hits) == ["ad-a", "ad-b", "ad-c"]
    assert hits["ad-c"]["in_text"] and not hits["ad-c"]["photos"]
    assert hits["ad-a"]["photos"] and len(hits["ad-a"]["photos"][0]["box"]) == 4
    handle = run_reunite("search", "--handle", "t.me/Sweet_Lily22", "--json", data=data, check=True).stdout
    assert [json.loads(line)["ad"] for line in handle.splitlines()] == ["ad-b"]


def test_search_refuses_a_bad_contact_with_one_line(crawl: tuple[Path, Path]) -> None:
    _root, data = crawl
    done = run_reunite("search", "--phone", "12", data=data)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    both = run_reunite("search", "--phone", NUMBER, "--email", "x@y.com", data=data)
    assert both.returncode == 2 and "exactly one" in both.stderr


@pytest.fixture(scope="module")
def api(crawl: tuple[Path, Path]) -> Iterator[LiveApi]:
    with live_api(crawl[1]) as running:
        yield running


def test_search_over_http_for_investigators(api: LiveApi) -> None:
    r = api.as_("investigator").get("/v1/search", params={"phone": "212 555 0143"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["value"] == E164 and sorted(a["ad"] for a in body["ads"]) == ["ad-a", "ad-b", "ad-c"]
    photos = [p for a in body["ads"] for p in a["photos"]]
    assert photos and all(len(p["box"]) == 4 for p in photos)
    bad = api.as_("investigator").get("/v1/search", params={"phone": "12"})
    assert bad.status_code == 422 and bad.json()["error"] == "bad_contact"
    assert api.as_("reviewer").get("/v1/search", params={"phone": NUMBER}).status_code == 403
    events = [e.to_json() for e in api.service.audit.events(limit=1000, action="search.contact")]
    answered = [e for e in events if e["result"] == "ok" and e["role"] == "investigator"]
    assert answered and all(e["object"] == "contact:phone" and e["detail"].get("ref") for e in answered)
    # the number is audited by a digest only (a bare "555" also turns up in timestamps)
    assert not [e for e in events if any(d in json.dumps(e) for d in ("5550143", "555 0143", "555-0143"))]


def test_reviewer_sees_the_contacts_read_on_the_reference_photo_boxed(crawl: tuple[Path, Path]) -> None:
    from api.web import evidence
    from indexer.store.catalog import Item, Subject
    from indexer.store.store import Store
    from matcher.networks import photo_contacts

    store = Store(crawl[1])
    with store.catalog.session() as s:
        item_id = next(i.id for i in s.query(Item).join(Subject, Subject.id == Item.subject_id)
                       .filter(Subject.label == "ad-a"))
        found = photo_contacts.on_item(s, item_id)
    store.catalog.engine.dispose()
    assert [(c["kind"], c["value"]) for c in found] == [("phone", E164)]
    explained = evidence.explain({"pdq": 3}, 0.9, "match", reference_contacts=found)
    assert any(E164 in line and "reference photo" in line for line in explained.sentences)
    text_boxes = [b for b in explained.reference_shapes if b.kind == "text"]
    assert len(text_boxes) == 1 and text_boxes[0].width > 0 and text_boxes[0].height > 0
