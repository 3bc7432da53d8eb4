"""Photos kept by a batch run are synced per batch, before the catalog rows naming them (issue 21).

Two checks. In process: every photo of a batch has been fsynced, and its folder
after it, when the batch's rows are committed (os.fsync is observed, not
replaced: the real call runs). As a user would meet a crash: `reunite index`
in a child process is killed with SIGKILL while a batch's photos are written
but its rows not yet committed; every committed row still has its photo, byte
for byte, and the run resumed afterwards leaves none without.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer import ingest
from indexer.store.photos import FileKeeper, PhotoStore
from indexer.store.store import Store
from tests.conftest import ROOT, jpeg_bytes, run_reunite, tiles


def _crawl(folder: Path, n: int, seed: int = 3) -> Path:
    folder.mkdir(parents=True)
    for i, tile in enumerate(tiles(n, size=64, seed=seed)):
        (folder / f"ad-{i:04d}.jpg").write_bytes(jpeg_bytes(tile, 85))
    return folder


def _rows(data: Path) -> list[tuple[str, str | None]]:
    """(sha256, photo token) of every committed item of the data folder."""
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        return [(sha, json.loads(attrs or "{}").get("photo"))
                for sha, attrs in conn.execute("SELECT sha256, attributes FROM items")]


def test_a_batch_is_fsynced_file_by_file_then_its_folder_before_its_rows_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _crawl(tmp_path / "crawl", 20)
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("ads", "ads")
    photos = PhotoStore(store.data_dir, None)
    synced: list[str] = []
    real_fsync = os.fsync

    def observed_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", observed_fsync)
    at_commit: list[tuple[list[str], list[str]]] = []
    real_add = Store.add_images

    def add_images(self: Store, bank_row, batch):  # noqa: ANN001, ANN202 - the real call, observed
        paths = [str(photos.path(f"bank-{bank_row.id}", new.attributes["photo"])) for new in batch]
        at_commit.append((paths, list(synced)))
        return real_add(self, bank_row, batch)

    monkeypatch.setattr(Store, "add_images", add_images)
    report = ingest.index_records(store, bank, ingest.iter_source(folder), ["pdq"], batch_size=8,
                                  keeper=FileKeeper(photos, bank.id, False))
    assert report.indexed == 20
    assert [len(paths) for paths, _ in at_commit] == [8, 8, 4]
    for paths, before in at_commit:
        assert set(paths) <= set(before), "a row was committed before its photo was synced"
        folder_synced = max(i for i, p in enumerate(before) if p == str(Path(paths[0]).parent))
        assert all(before.index(p) < folder_synced for p in paths)  # the folder after its files
    photo_syncs = [p for p in synced if "/photos/" in p]
    # One fsync per photo and one per batch for the folder (not two per photo).
    assert len(photo_syncs) == 20 + 3
    for sha, token in _rows(store.data_dir):
        assert hashlib.sha256(photos.get(f"bank-{bank.id}", token)).hexdigest() == sha


def test_sigkill_mid_batch_leaves_no_row_without_its_photo(tmp_path: Path) -> None:
    folder = _crawl(tmp_path / "crawl", 400, seed=5)
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "api.cli", "--data", str(data), "index", str(folder), "--bank", "ads",
           "--signals", "pdq", "--quiet", "--no-link", "--no-watch"]
    child = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_with: tuple[int, int] | None = None
    deadline = time.monotonic() + 240
    try:
        while child.poll() is None and time.monotonic() < deadline:
            try:
                rows = len(_rows(data)) if (data / "catalog.sqlite").exists() else 0
            except sqlite3.OperationalError:  # the schema is not made yet, or a commit holds the lock
                rows = 0
            kept = sum(1 for _ in (data / "photos").rglob("*")) if (data / "photos").exists() else 0
            if rows and kept > rows + 1:  # a batch's photos written, its rows not committed yet
                child.send_signal(signal.SIGKILL)
                killed_with = (rows, kept)
                break
            time.sleep(0.005)
    finally:
        if child.poll() is None and killed_with is None:
            child.kill()
        child.wait(timeout=60)
    assert killed_with is not None, "the run finished before it could be killed mid-batch"
    assert child.returncode == -signal.SIGKILL

    def check_every_row() -> int:
        with sqlite3.connect(data / "catalog.sqlite") as conn:
            [(bank_id,)] = conn.execute("SELECT id FROM banks WHERE name = 'ads'").fetchall()
        rows = _rows(data)
        for sha, token in rows:
            assert token, "a committed row without a kept photo"
            path = data / "photos" / f"bank-{bank_id}" / token
            assert path.is_file(), "a committed row whose photo is gone"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
        return len(rows)

    assert check_every_row() >= killed_with[0]  # nothing committed was lost
    resumed = run_reunite("index", str(folder), "--bank", "ads", "--signals", "pdq", "--quiet", "--no-link",
                          "--no-watch", data=data)
    assert resumed.returncode == 0, resumed.stderr
    assert check_every_row() == 400
