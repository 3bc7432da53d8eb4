"""Batch indexing of a crawl: bad files, idempotent re-runs, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    catalog_env_of,
    catalog_of,
    catalog_rows,
    jpeg_bytes,
    photo,
    run_reunite,
    tiles,
    vectors_of,
)
from sqlalchemy.exc import SQLAlchemyError

from indexer import ingest
from indexer.store.store import Store
from tests.test_images import _png_claiming

# Each test runs on SQLite and on PostgreSQL (every data folder it makes gets its own database).
pytestmark = pytest.mark.usefixtures("every_folder_on_backend")

GOOD = 990
# These tests are about ingest mechanics: hashes only keeps them fast.
HASH_INDEX = ("index", "--bank", "ads", "--signals", "hashes", "--quiet")
BAD = {
    "corrupt.jpg": "corrupt_image",
    "truncated.jpg": "corrupt_image",
    "zero.jpg": "corrupt_image",
    "bomb.png": "image_too_large",
    "text.jpg": "unsupported_image",
}


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crawl folder of 1,000 files: 990 distinct photos in subfolders and 5 bad files
    (plus 5 exact duplicates of good ones, which must be indexed once)."""
    root = tmp_path_factory.mktemp("crawl")
    for i, tile in enumerate(tiles(GOOD, size=64, seed=7)):
        folder = root / f"site{i % 4}"
        folder.mkdir(exist_ok=True)
        (folder / f"ad{i:04d}.jpg").write_bytes(jpeg_bytes(tile, quality=80))
    for i in range(5):
        (root / f"repost{i}.jpg").write_bytes((root / "site0" / f"ad{i * 4:04d}.jpg").read_bytes())
    good = jpeg_bytes(photo("astronaut.png"))
    (root / "corrupt.jpg").write_bytes(good[:600] + b"\x00" * 5000 + good[5600:7000])
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "zero.jpg").write_bytes(b"")
    (root / "bomb.png").write_bytes(_png_claiming(60_000, 60_000))
    (root / "text.jpg").write_text("<html>this ad was removed</html>")
    return root


def _counts(data: Path) -> dict[str, int]:
    return {
        "items": catalog_rows(data, "select count(*) from items")[0][0],
        "vectors": catalog_rows(data, "select count(*) from vectors")[0][0],
        "pdq": catalog_rows(data, "select count(*) from vectors where signal='pdq'")[0][0],
    }


def _index_crawl(crawl: Path, data: Path) -> subprocess.CompletedProcess[str]:
    """`reunite index` of the crawl with its five bad files: exit 1 (incomplete) and a summary line."""
    done = run_reunite(*HASH_INDEX, str(crawl), data=data)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines()[-1] == (
        "incomplete: 5 of 1000 images failed (3 corrupt_image, 1 image_too_large, 1 unsupported_image); "
        "the others were indexed, the report lists each failure"), done.stderr
    return done


def test_index_reports_bad_files_and_rerun_indexes_nothing(crawl: Path, data_dir: Path) -> None:
    first = _index_crawl(crawl, data_dir)
    assert "990 indexed" in first.stdout and "5 failed" in first.stdout
    for name in BAD:
        assert name in first.stderr
    report_path = Path(first.stdout.strip().splitlines()[-1].removeprefix("report: "))
    report = json.loads(report_path.read_text())
    assert report["seen"] == 1000 and report["duplicates_in_run"] == 5
    reasons = {Path(e["path"]).name: e["error"] for e in report["errors"]}
    assert reasons == BAD

    second = _index_crawl(crawl, data_dir)  # the bad files are still bad: still incomplete
    assert "0 indexed" in second.stdout and "995 already indexed" in second.stdout
    assert _counts(data_dir)["items"] == GOOD

    store = Store(data_dir, catalog_of(data_dir), vectors_of(data_dir))
    bank = store.bank_or_error("ads")
    assert len(store.indexes.get(bank.id, "pdq")) == GOOD


def test_sigkill_halfway_then_resume_matches_an_uninterrupted_run(
        crawl: Path, tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _index_crawl(crawl, reference)

    cmd = [sys.executable, "-m", "api.cli", "--data", str(killed), "index", str(crawl),
           "--bank", "ads", "--signals", "hashes", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **catalog_env_of(killed)})
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen = _counts(killed)["items"]
        except SQLAlchemyError:  # no catalog yet
            seen = 0
        if seen >= 100:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _counts(killed)["items"]
    assert 0 < partial < GOOD

    _index_crawl(crawl, killed)
    assert _counts(killed) == _counts(reference)
    store = Store(killed, catalog_of(killed), vectors_of(killed))
    bank = store.bank_or_error("ads")
    for name in ("pdq", "phash", "dhash", "ahash", "whash"):
        assert len(store.indexes.get(bank.id, name)) == GOOD


def test_csv_manifest_keeps_labels_and_metadata(tmp_path: Path, data_dir: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, tile in enumerate(tiles(3, seed=3)):
        (imgs / f"{i}.jpg").write_bytes(jpeg_bytes(tile))
    manifest = tmp_path / "crawl.csv"
    manifest.write_text("path,label,site,phones\n"
                        "imgs/0.jpg,ad-17,example.org,+1 555 0100\n"
                        "imgs/1.jpg,ad-17,example.org,\n"
                        "imgs/2.jpg,,other.net,\n")
    run_reunite(*HASH_INDEX, str(manifest), data=data_dir, check=True)
    store = Store(data_dir, catalog_of(data_dir), vectors_of(data_dir))
    with store.catalog.session() as s:
        from sqlalchemy import select

        from indexer.store.catalog import Item, Subject
        rows = s.execute(select(Item, Subject).join(Subject, Item.subject_id == Subject.id)
                         .order_by(Item.source)).all()
    # Stored resolved against the manifest's folder: the file can be reopened from anywhere later.
    assert [(i.source, sub.label) for i, sub in rows] == [
        (str(imgs / "0.jpg"), "ad-17"), (str(imgs / "1.jpg"), "ad-17"), (str(imgs / "2.jpg"), "2")]
    kept = dict(rows[0][0].attributes)
    assert (data_dir / "photos" / f"bank-{rows[0][0].bank_id}" / kept.pop("photo")).is_file()  # for reviewers
    assert kept == {"site": "example.org", "phones": "+1 555 0100"}


def test_jsonl_manifest_and_worker_pool(tmp_path: Path, data_dir: Path) -> None:
    lines = []
    for i, tile in enumerate(tiles(12, seed=5)):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg_bytes(tile))
        lines.append(json.dumps({"path": f"{i}.jpg", "label": f"ad-{i}", "url": f"https://x/{i}"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    out = run_reunite(*HASH_INDEX, "--workers", "2", str(tmp_path / "m.jsonl"), data=data_dir,
                      check=True)
    assert "12 indexed" in out.stdout


@pytest.mark.parametrize("content, message", [
    ("label\nx\n", "needs a 'path' column"),
    ("path,label\n,x\n", "empty 'path'"),
])
def test_malformed_manifest_exits_2_with_one_line(tmp_path: Path, data_dir: Path,
                                                  content: str, message: str) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text(content)
    done = run_reunite("index", str(manifest), "--bank", "ads", data=data_dir)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_read_source_skips_sidecar_files(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("crawler notes")
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    assert [r.path.name for r in ingest.read_source(tmp_path)] == ["a.jpg"]


def _popen_reunite(*args: str, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "api.cli", "--data", str(data), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **catalog_env_of(data)})


def _items_per_sha(data: Path) -> dict[str, int]:
    return {sha: n for sha, n in catalog_rows(data, "SELECT sha256, count(*) FROM items GROUP BY sha256")}


def test_two_index_runs_on_one_bank_at_once_both_finish_and_lose_nothing(
        crawl: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _index_crawl(crawl, reference)
    together = tmp_path / "together"
    runs = [_popen_reunite(*HASH_INDEX, str(crawl), data=together) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert "Traceback" not in err and "IntegrityError" not in err, err
        if run.returncode == 2:  # refusing is allowed, with one line
            assert len(err.strip().splitlines()) == 1, err
        else:  # the crawl's five bad files make each finished run incomplete
            assert run.returncode == 1 and "incomplete: 5 of 1000 images failed" in err, (out, err)
    assert any(run.returncode == 1 for run in runs)
    # Every image stored once, exactly as one uninterrupted run stores them.
    assert _items_per_sha(together) == _items_per_sha(reference)
    assert _rows(together, "ad_photos") == _rows(reference, "ad_photos") > 0  # every ad linked once
    assert _rows(together, "ad_links") == _rows(reference, "ad_links")
    rerun = _index_crawl(crawl, together)
    assert ", 0 indexed, " in rerun.stdout


def _rows(data: Path, table: str) -> int:
    return int(catalog_rows(data, f"SELECT count(*) FROM {table}")[0][0])


def test_manifest_rows_naming_special_files_are_bad_rows(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ingest.NotRegularFile, match="FIFO"):
        ingest.file_sha256(tmp_path / "pipe")
    with pytest.raises(ingest.NotRegularFile, match="character device"):
        ingest.file_sha256(Path("/dev/zero"))
