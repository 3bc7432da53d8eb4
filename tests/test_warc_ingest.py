"""`reunite index crawl.warc.gz`: a WARC crawl's image records become ads with their URL, site and time."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from conftest import FIXTURES, catalog_of, run_reunite
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

# Each test runs on SQLite and on PostgreSQL (every data folder it makes gets its own database).
pytestmark = pytest.mark.usefixtures("every_folder_on_backend")

PHOTOS = ("astronaut.png", "coffee.png", "rocket.jpg")
DATE = "2026-03-04T05:06:07Z"


def _response(writer: WARCWriter, uri: str, body: bytes, content_type: str, record_id: str) -> None:
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    record = writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=http,
                                       warc_headers_dict={"WARC-Date": DATE,
                                                          "WARC-Record-ID": f"<urn:uuid:{record_id}>"})
    writer.write_record(record)


def write_crawl(path: Path, *, gzip_it: bool = True) -> None:
    """Three photos, one HTML page (not an image), a resource photo and a second capture of the first."""
    with path.open("wb") as out:
        writer = WARCWriter(out, gzip=gzip_it)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test"}))
        for n, name in enumerate(PHOTOS):
            mime = "image/jpeg" if name.endswith(".jpg") else "image/png"
            _response(writer, f"https://ads{n}.example.org/ad/{n}/{name}", (FIXTURES / name).read_bytes(),
                      mime, f"00000000-0000-4000-8000-00000000000{n}")
        _response(writer, "https://ads0.example.org/ad/0", b"<html><body>ad</body></html>", "text/html",
                  "00000000-0000-4000-8000-0000000000a0")
        brick = writer.create_warc_record("file:///crawl/brick.png", "resource",
                                          payload=io.BytesIO((FIXTURES / "brick.png").read_bytes()),
                                          warc_content_type="image/png",
                                          warc_headers_dict={"WARC-Date": DATE, "WARC-Record-ID":
                                                             "<urn:uuid:00000000-0000-4000-8000-0000000000c0>"})
        writer.write_record(brick)
        # The same photo captured again under another URL, sent as octet-stream (sniffed as an image).
        _response(writer, "https://mirror.example.net/a.png", (FIXTURES / PHOTOS[0]).read_bytes(),
                  "application/octet-stream", "00000000-0000-4000-8000-0000000000b0")


def _items(data: Path) -> dict[str, dict]:
    """Ad id -> stored fields of every indexed photo, read from the catalog."""
    from sqlalchemy import select

    from indexer.store.catalog import Item, Subject
    from indexer.store.store import Store

    with Store(data, catalog_of(data)).catalog.session() as s:
        rows = s.execute(select(Item, Subject).join(Subject, Item.subject_id == Subject.id)).all()
    return {sub.label: dict(item.attributes) for item, sub in rows}


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory,
          every_folder_on_backend: None) -> tuple[Path, Path, object]:
    folder = tmp_path_factory.mktemp("warc")
    warc = folder / "crawl.warc.gz"
    write_crawl(warc)
    data = folder / "data"
    first = run_reunite("index", str(warc), "--bank", "ads", "--quiet", data=data, check=True)
    return warc, data, first


def test_image_records_are_indexed_and_others_counted(crawl) -> None:
    _warc, _data, first = crawl
    assert "4 indexed" in first.stdout, first.stdout
    assert "7 records read, 5 images, 1 non-image records skipped" in first.stdout, first.stdout


def test_rerun_adds_nothing(crawl) -> None:
    warc, data, _first = crawl
    again = run_reunite("index", str(warc), "--bank", "ads", "--quiet", data=data, check=True)
    assert "0 indexed" in again.stdout and "5 already indexed" in again.stdout, again.stdout


def test_catalog_and_match_see_url_site_and_capture_time(crawl) -> None:
    _warc, data, _first = crawl
    items = _items(data)
    assert set(items) == {f"urn:uuid:00000000-0000-4000-8000-00000000000{n}" for n in range(3)} | {
        "urn:uuid:00000000-0000-4000-8000-0000000000c0"}
    assert items["urn:uuid:00000000-0000-4000-8000-0000000000c0"]["url"] == "file:///crawl/brick.png"
    coffee = items["urn:uuid:00000000-0000-4000-8000-000000000001"]
    assert coffee["url"] == "https://ads1.example.org/ad/1/coffee.png"
    assert coffee["site"] == "ads1.example.org"
    assert coffee["posted_at"] == DATE
    assert coffee["warc_record_id"] == "<urn:uuid:00000000-0000-4000-8000-000000000001>"
    done = run_reunite("match", str(FIXTURES / "coffee.png"), "--bank", "ads", "--json", data=data,
                       check=True)
    first = json.loads(done.stdout.splitlines()[0])["candidates"][0]
    assert first["label"] == "urn:uuid:00000000-0000-4000-8000-000000000001" and first["decision"] == "match"


def test_plain_warc_and_worker_pool(tmp_path: Path) -> None:
    warc = tmp_path / "crawl.warc"
    write_crawl(warc, gzip_it=False)
    done = run_reunite("index", str(warc), "--bank", "ads", "--quiet", "--workers", "2",
                       data=tmp_path / "data", check=True)
    assert "4 indexed" in done.stdout and "1 non-image records skipped" in done.stdout, done.stdout
    rocket = _items(tmp_path / "data")["urn:uuid:00000000-0000-4000-8000-000000000002"]
    assert rocket["site"] == "ads2.example.org"


def test_truncated_warc_keeps_what_was_read_and_says_so_in_one_line(tmp_path: Path) -> None:
    whole = tmp_path / "whole.warc.gz"
    write_crawl(whole)
    data = tmp_path / "data"
    blob = whole.read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(blob[: len(blob) - 200])  # the last record's gzip member loses its end
    done = run_reunite("index", str(cut), "--bank", "ads", "--quiet", data=data)
    assert done.returncode == 1, done.stderr  # incomplete, as when a file failed
    assert "4 indexed" in done.stdout, done.stdout
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # one line
    assert str(cut) in done.stderr and "the records before it were indexed" in done.stderr
    # The whole file afterwards adds only what the cut one lacked: nothing stored was lost.
    again = run_reunite("index", str(whole), "--bank", "ads", "--quiet", data=data, check=True)
    assert "0 indexed" in again.stdout and "5 already indexed" in again.stdout, again.stdout


def test_not_a_warc_exits_2_with_one_line_and_keeps_the_bank(tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = tmp_path / "good.warc.gz"
    write_crawl(good)
    run_reunite("index", str(good), "--bank", "ads", "--quiet", data=data, check=True)
    for name, body in (("fake.warc.gz", gzip.compress(b"just some text, not a WARC record\n" * 50)),
                       ("junk.warc.gz", (FIXTURES / "coffee.png").read_bytes()),
                       ("cut.warc.gz", good.read_bytes()[:30])):
        bad = tmp_path / name
        bad.write_bytes(body)
        done = run_reunite("index", str(bad), "--bank", "ads", "--quiet", data=data)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and str(bad) in done.stderr, done.stderr
    assert len(_items(data)) == 4
