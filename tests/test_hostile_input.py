"""Hostile input (issue 13): unusable text, deep JSON, special files, frame and pixel floods,
bad-row floods and a full disk. Each is refused with a 4xx/507 JSON answer or exit 2 and one
line, and what was stored before stays readable."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from api_support import LiveApi, live_api, no_encryption_key
from conftest import jpeg_bytes, photo, png_bytes, run_reunite, tiles
from PIL import Image
from test_images import big_canvas_gif

from api.auth import create_key
from indexer import ingest, text
from indexer.store.store import Store
from matcher.networks import components as networks
from matcher.networks.links import Linker, Occurrence, file_reader

HASHES_ONLY = {"signals": ["hashes"]}
RLO = "\u202e"





# --- the one text rule ------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["\ud800", "a\x00b", f"ad-{RLO}gpj.exe", "x\u200by", "\x1b[31mred",
                                 "line\nbreak", "\u2066x\u2069", "soft\u00adhyphen", "\ufeffbom", "\uffff"])
def test_unusable_text_is_refused_naming_field_and_code_point(bad: str) -> None:
    with pytest.raises(text.BadText) as refused:
        text.check(bad, "records[3].label")
    message = str(refused.value)
    assert message.startswith("records[3].label: refused: ") and "U+" in message
    shown = text.displayable(bad)
    assert text.problem(shown) is None and "\\u" in shown
    shown.encode("utf-8")  # always encodable


@pytest.mark.parametrize("good", ["Zoë Łódź", "شقة\u200f 12", "👩\u200d👧 family", "Ünïcödé — ok",
                                  "漢字", "nbsp\u00a0here"])
def test_real_text_is_accepted_and_left_alone(good: str) -> None:
    assert text.check(good, "label") == good
    assert text.displayable(good) == good


def test_notes_may_span_lines_but_labels_may_not() -> None:
    assert text.check("first line\nsecond\tline", "note", multiline=True)
    with pytest.raises(text.BadText):
        text.check("first line\nsecond", "label")
    with pytest.raises(text.BadText):
        text.check(f"note {RLO}", "note", multiline=True)


def test_json_values_are_checked_keys_included() -> None:
    with pytest.raises(text.BadText, match=r"attributes key"):
        text.check_tree({"si\x00te": "x"}, "attributes")
    with pytest.raises(text.BadText, match=r"attributes\.tags\[1\]"):
        text.check_tree({"tags": ["ok", "\ud800"]}, "attributes")
    assert text.json_depth('{"a": ["[[[", {"b": 1}]}') == 3


def test_key_names_are_checked() -> None:
    from indexer.store.catalog import Catalog

    catalog = Catalog("sqlite://")
    with pytest.raises(ValueError, match="key name: refused"):
        create_key(catalog, "admin", f"alice{RLO}")


def test_cli_key_name_with_bidi_override_exits_2(data_dir: Path) -> None:
    done = run_reunite("keys", "create", "--role", "admin", "--name", f"ops{RLO}nimda", data=data_dir)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "key name" in done.stderr
    assert RLO not in done.stderr


# --- HTTP: text, deep JSON, pixel budget ----------------------------------------------------

@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with no_encryption_key(), live_api(tmp_path_factory.mktemp("hostile") / "data") as running:
        assert running.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads",
                                                            "policy": HASHES_ONLY}).status_code == 201
        yield running


def _items(api: LiveApi) -> int:
    bank = api.service.store.catalog.bank("ads")
    assert bank is not None
    return api.service.store.catalog.count_items(bank.id)


def test_lone_surrogate_attribute_is_refused_and_networks_keep_working(api: LiveApi) -> None:
    before = _items(api)
    tile = png_bytes(tiles(1, seed=301)[0])
    r = api.as_("ingest").post("/v1/banks/ads/items", files={"image": ("a.png", tile, "image/png")},
                               data={"label": "ad-1", "attributes": '{"site": "\\ud800"}'})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "bad_text" and r.json()["detail"].startswith("attributes.site:")
    assert "surrogate" in r.json()["detail"]
    assert _items(api) == before
    ok = api.as_("ingest").post("/v1/banks/ads/items", files={"image": ("a.png", tile, "image/png")},
                                data={"label": "ad-1", "attributes": '{"site": "site.example"}'})
    assert ok.status_code == 201, ok.text
    assert api.as_("investigator").get("/v1/networks").status_code == 200


@pytest.mark.parametrize(("field", "value", "where"), [
    ("label", f"ad{RLO}1", "form.label"),
    ("source", "https://x.example/\x00", "form.source"),
    ("attributes", '{"ph\\u0000ones": "1"}', "attributes key"),
])
def test_single_ingest_refuses_each_text_field(api: LiveApi, field: str, value: str, where: str) -> None:
    tile = png_bytes(tiles(1, seed=302)[0])
    r = api.as_("ingest").post("/v1/banks/ads/items", files={"image": ("a.png", tile, "image/png")},
                               data={field: value})
    assert r.status_code == 422 and r.json()["error"] == "bad_text", r.text
    assert r.json()["detail"].startswith(where)


def test_batch_records_with_bad_text_refuse_the_batch(api: LiveApi) -> None:
    before = _items(api)
    a, b = (png_bytes(t) for t in tiles(2, seed=303))
    r = api.as_("ingest").post("/v1/banks/ads/items/batch",
                               files=[("images", ("a.png", a, "image/png")),
                                      ("images", ("b.png", b, "image/png"))],
                               data={"records": json.dumps([{"label": "ok"}, {"label": "x\u2067y"}])})
    assert r.status_code == 422 and "records[1].label" in r.json()["detail"], r.text
    assert _items(api) == before


@pytest.mark.parametrize("field", ["attributes", "records"])
def test_json_nested_thousands_deep_is_422_not_500(api: LiveApi, field: str) -> None:
    deep = "[" * 5000 + "]" * 5000 if field == "records" else '{"a":' * 1600 + "1" + "}" * 1600
    tile = png_bytes(tiles(1, seed=304)[0])
    path = "/v1/banks/ads/items/batch" if field == "records" else "/v1/banks/ads/items"
    files = {"images" if field == "records" else "image": ("a.png", tile, "image/png")}
    r = api.as_("ingest").post(path, files=files, data={field: deep})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_error" and "nested" in r.json()["detail"]


def test_batch_over_the_pixel_budget_is_413_before_decoding(api: LiveApi) -> None:
    before = _items(api)
    canvas = big_canvas_gif(frames=3)  # 49 megapixels declared, a few bytes stored
    files = [("images", (f"g{i}.gif", canvas + bytes(i), "image/gif")) for i in range(5)]
    r = api.as_("ingest").post("/v1/banks/ads/items/batch", files=files)
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "too_many_pixels" and "smaller batches" in r.json()["detail"]
    assert _items(api) == before
    one = api.as_("ingest").post("/v1/banks/ads/items/batch", files=files[:1])  # one canvas fits
    assert one.status_code == 200 and one.json()["failed"] == 0, one.text


# --- stored text from before the rule: still readable, never raw --------------------------

@pytest.fixture(scope="module")
def old_bad_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose ads were stored (as old versions did) with NUL, U+202E and a lone surrogate."""
    folder = tmp_path_factory.mktemp("oldbad")
    data_dir = folder / "data"
    a = folder / "a.png"
    a.write_bytes(png_bytes(photo("astronaut.png")))
    b = folder / "b.jpg"
    b.write_bytes(jpeg_bytes(photo("astronaut.png").resize((384, 384)), 80))
    store = Store(data_dir)
    bank = store.catalog.ensure_bank("ads", "ads")
    rows = [ingest.Record(a, f"ad\x00-{RLO}1", "a.png", {"site": "\ud800", "location": f"city{RLO}x"}),
            ingest.Record(b, "ad-2\x01", "b.jpg", {"site": "s\x00.example", "posted_at": "2024-05-01"})]
    ingest.index_records(store, bank, rows, ["pdq", "phash", "dhash", "ahash", "whash"])
    occurrences = [Occurrence(r.label, ingest.file_sha256(r.path), r.attributes) for r in rows]
    linker = Linker(store)
    linker.record(bank, occurrences)
    linker.update(bank, read=file_reader({o.sha256: r.path for o, r in zip(occurrences, rows, strict=True)}))
    store.checkpoint()
    assert len(networks.find_networks(store.catalog, bank)) == 1
    store.catalog.engine.dispose()
    return data_dir


def test_stored_bad_text_exports_well_formed_graphml_and_gexf(old_bad_data: Path, tmp_path: Path) -> None:
    graphml, gexf = tmp_path / "n.graphml", tmp_path / "n.gexf"
    done = run_reunite("networks", "--bank", "ads", "--graphml", str(graphml), "--gexf", str(gexf),
                       data=old_bad_data)
    assert done.returncode == 0, done.stderr
    assert RLO not in done.stdout and "\x00" not in done.stdout
    assert "\\u202e" in done.stdout  # shown, escaped
    for path in (graphml, gexf):
        root = ET.parse(path).getroot()  # raises on a document that is not well-formed XML
        assert root is not None
        assert RLO not in path.read_text(encoding="utf-8")
    as_json = run_reunite("networks", "--bank", "ads", "--json", data=old_bad_data)
    assert as_json.returncode == 0, as_json.stderr
    [line] = as_json.stdout.splitlines()
    assert "\\\\ud800" in line and RLO not in json.loads(line)["ads"][0] + json.loads(line)["ads"][1]


def test_stored_bad_text_does_not_break_http_networks(old_bad_data: Path) -> None:
    with no_encryption_key(), live_api(old_bad_data) as running:
        r = running.as_("investigator").get("/v1/networks")
        assert r.status_code == 200, r.text
        [net] = r.json()["networks"]
        assert net["sites"] == ["\\ud800", "s\\u0000.example"]
        assert all(RLO not in label for label in net["ads"])


# --- manifests ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "problem"), [("\\ud800", "surrogate"), ("\\u0000", "NUL"),
                                                ("\\u202e", "bidirectional")])
def test_manifest_row_with_bad_text_exits_2_naming_row_and_column(tmp_path: Path, data_dir: Path,
                                                                  value: str, problem: str) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(tiles(1, seed=310)[0]))
    manifest = tmp_path / "ads.jsonl"
    manifest.write_text('{"path": "a.png", "label": "ok"}\n'
                        f'{{"path": "a.png", "label": "ad-2", "site": "x{value}"}}\n', encoding="utf-8")
    done = run_reunite("index", str(manifest), "--bank", "ads", "--quiet", data=data_dir)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "ads.jsonl:2: column site: refused" in line and problem in line
    assert "\u202e" not in line


def test_csv_label_with_nul_exits_2(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(tiles(1, seed=311)[0]))
    manifest = tmp_path / "ads.csv"
    manifest.write_text("path,label\na.png,ad\x001\n", encoding="utf-8")
    done = run_reunite("enroll", str(manifest), "--bank", "v", "--kind", "venue", "--quiet", data=data_dir)
    assert done.returncode == 2 and "ads.csv:2: column label: refused" in done.stderr, done.stderr


def _garbage_manifest(path: Path, rows: int, good: Path | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "site"])
        if good is not None:
            w.writerow([str(good), "good", "ok.example"])
        for n in range(rows):
            w.writerow([f"missing/{n}.jpg", f"ad-{n}", "x.example"])
    return path


def test_flood_of_bad_rows_aborts_with_exit_2_and_stores_nothing(tmp_path: Path, data_dir: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(tiles(1, seed=312)[0]))
    manifest = _garbage_manifest(tmp_path / "flood.csv", 20_000, good)
    done = run_reunite("index", str(manifest), "--bank", "ads", "--quiet", data=data_dir, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "rows are bad" in line and "unreadable" in line and "nothing was indexed" in line
    assert not (data_dir / "reports").exists() or not list((data_dir / "reports").iterdir())
    store = Store(data_dir)
    bank = store.catalog.bank("ads")
    assert bank is None or store.catalog.count_items(bank.id) == 0


def test_bad_row_report_is_capped_with_counts_per_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(tiles(1, seed=313)[0]))
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("ads", "ads")
    records = ingest.iter_source(_garbage_manifest(tmp_path / "m.csv", 3000, good))
    report = ingest.index_records(store, bank, records, ["phash"], max_bad=1.0)
    assert (report.seen, report.indexed, report.failed) == (3001, 1, 3000)
    assert len(report.errors) == ingest.MAX_REPORTED_ERRORS
    assert report.errors_by_reason == {"unreadable": 3000}
    assert report.errors_not_listed == 3000 - ingest.MAX_REPORTED_ERRORS
    assert len(report.to_json()) < 300_000


def test_manifest_is_read_as_a_stream(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.png"}\n{"path": "b.png"}\nnot json\n', encoding="utf-8")
    rows = ingest.iter_source(manifest)
    assert next(rows).shown_as == "a.png" and next(rows).shown_as == "b.png"
    with pytest.raises(ingest.ManifestError, match=r"m\.jsonl:3"):
        next(rows)


# --- special files ------------------------------------------------------------------------

def test_fifo_and_symlink_to_dev_zero_are_listed_bad_not_hung(tmp_path: Path, data_dir: Path) -> None:
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "ok.png").write_bytes(png_bytes(tiles(1, seed=320)[0]))
    os.mkfifo(crawl / "fifo.jpg")
    (crawl / "zero.jpg").symlink_to("/dev/zero")
    (crawl / "dir.jpg").mkdir()
    (crawl / "link.png").symlink_to(crawl / "ok.png")  # a link to a regular file is followed
    try:
        done = run_reunite("index", str(crawl), "--bank", "ads", "--no-link", "--quiet", data=data_dir,
                           timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("reunite index hung on a FIFO or /dev/zero")
    assert done.returncode == 1, done.stderr  # finished, two files failed: incomplete
    assert "1 indexed" in done.stdout and "2 failed" in done.stdout, done.stdout
    assert "not a regular file (a FIFO)" in done.stderr
    assert "not a regular file (a character device)" in done.stderr


# --- a full disk --------------------------------------------------------------------------

@contextlib.contextmanager
def small_filesystem(folder: Path, size: str = "6m") -> Iterator[Path]:
    """A real, small tmpfs (root only); skipped, saying why, where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()[:80]})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the filesystem of ``folder`` until ``leave`` bytes are free."""
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_full_disk_is_507_over_http_and_nothing_is_stored_half(tmp_path: Path) -> None:
    noise = Image.fromarray(np.random.default_rng(9).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    big = png_bytes(noise)  # ~480 kB: more than is left
    with small_filesystem(tmp_path / "fs") as fs, no_encryption_key(), live_api(fs / "data") as running:
        assert running.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads",
                                                            "policy": HASHES_ONLY}).status_code == 201
        filler = _fill(fs, leave=64 * 1024)
        r = running.as_("ingest").post("/v1/banks/ads/items", files={"image": ("n.png", big, "image/png")})
        assert r.status_code == 507, r.text
        assert r.json()["error"] == "storage_full" and "nothing was stored" in r.json()["detail"]
        assert _items(running) == 0
        assert not [p for p in (fs / "data").rglob("*.tmp")]
        filler.unlink()
        again = running.as_("ingest").post("/v1/banks/ads/items",
                                           files={"image": ("n.png", big, "image/png")})
        assert again.status_code == 201, again.text


def test_full_disk_is_exit_2_for_the_cli(tmp_path: Path) -> None:
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for n, tile in enumerate(tiles(3, size=256, seed=330)):
        (crawl / f"{n}.png").write_bytes(png_bytes(tile))
    with small_filesystem(tmp_path / "fs", size="3m") as fs:
        data_dir = fs / "data"
        assert run_reunite("banks", data=data_dir).returncode == 0  # creates the catalog
        _fill(fs, leave=96 * 1024)
        done = run_reunite("index", str(crawl), "--bank", "ads", "--quiet", data=data_dir)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("error: storage full")
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_enroll_rows_from_any_caller_are_checked(tmp_path: Path) -> None:
    """The rule sits in the enrollment layer, not only in the manifest reader."""
    from indexer import enroll

    store = Store(tmp_path / "data")
    with pytest.raises(enroll.EnrollError, match=r"row 1: column name: refused: .*bidirectional"):
        enroll.enroll_records(store, "venues", "venue",
                              [{"path": "x.png", "label": "v1", "name": f"Hotel {RLO}"}])
    assert store.catalog.bank("venues") is None
