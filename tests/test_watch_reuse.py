"""The watch reuses the faces indexing found in an ad: no second detection (issue 16, watch cost).

In process, everything real (SQLite, FAISS, YuNet, dlib, SFace): a person is
enrolled, a crawl indexed with the ads' face signals, then watched. The face
detector is observed (``yunet.detect`` wrapped, the real one runs): checking
ads indexed in the same run calls it not once, and queues the same candidate
with the same score as a watch that detects the faces again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api.application import Application, cli_actor
from api.watching import Indexed, check_ads
from indexer import enroll, ingest
from indexer.crypto import KEY_ENV, generate_key
from indexer.signals import base as signals
from indexer.signals import yunet
from indexer.store.photos import FileKeeper
from tests.api_support import consent_record
from tests.conftest import jpeg_bytes, photo

ADS_SIGNALS = ["hashes", "faces"]


def _crawl(folder: Path) -> list[ingest.Record]:
    folder.mkdir()
    person = photo("astronaut.png").resize((420, 420))
    shots = [("ad-1", person, 62), ("ad-2", photo("camera.png"), 75), ("ad-3", photo("chelsea.png"), 80)]
    out = []
    for label, image, quality in shots:
        path = folder / f"{label}.jpg"
        path.write_bytes(jpeg_bytes(image, quality))
        out.append(ingest.Record(path, label, str(path), {"site": "reuse.test"}))
    return out


def _world(folder: Path) -> Application:
    """A data folder with one consented missing person enrolled (sealed: the key is set)."""
    app = Application(folder / "data")
    reference = folder / "reference.jpg"
    reference.write_bytes(jpeg_bytes(photo("astronaut.png"), 92))
    enroll.enroll_records(app.store, "missing", "missing_person",
                          [{"path": str(reference), **consent_record("mp-1")}], photos=app.photos)
    return app


def test_ads_indexed_in_the_run_are_watched_without_a_second_face_detection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, generate_key())
    detections: list[int] = []
    real_detect = yunet.detect

    def observed(picture):  # noqa: ANN001, ANN202 - the real detector, counted
        detections.append(1)
        return real_detect(picture)

    monkeypatch.setattr(yunet, "detect", observed)
    names = [s.name for s in signals.select(ADS_SIGNALS)]
    records = _crawl(tmp_path / "crawl")
    results = {}
    for run, reuse in (("reused", True), ("detected", False)):
        app = _world(tmp_path / run)
        bank = app.store.catalog.ensure_bank("ads", "ads")
        created: set[int] = set()
        detections.clear()
        ingest.index_records(app.store, bank, records, names, keeper=FileKeeper(app.photos, bank.id, False),
                             after_batch=lambda stored, c=created: c.update(
                                 int(item.id) for item, new, _n in stored if new))
        assert len(created) == 3 and detections, "indexing ran the face detector"
        detections.clear()
        report = check_ads(app, bank, cli_actor(),
                           indexed=Indexed(frozenset(created), frozenset(names)) if reuse else None)
        [queued], _total = app.review.list(limit=100)
        results[run] = (report, len(detections), queued)

    reused, calls_reused, a = results["reused"]
    detected, calls_detected, b = results["detected"]
    assert calls_reused == 0 and reused.faces_reused == 3
    assert "faces of 3 from indexing" in reused.summary()
    assert calls_detected >= 3 and detected.faces_reused == 0  # the counter sees a detection when one runs
    assert reused.checked == detected.checked == 3 and reused.queued == detected.queued == 1
    assert a.context["ad"] == b.context["ad"] == "ad-1"
    assert a.tier == b.tier and a.score == pytest.approx(b.score, abs=1e-6)


def test_an_ad_from_an_earlier_run_or_other_signals_is_detected_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what the run computed is reused: an ad indexed without faces is not taken as faceless."""
    monkeypatch.setenv(KEY_ENV, generate_key())
    app = _world(tmp_path)
    bank = app.store.catalog.ensure_bank("ads", "ads")
    hashes_only = [s.name for s in signals.select(["hashes"])]
    created: set[int] = set()
    ingest.index_records(app.store, bank, _crawl(tmp_path / "crawl"), hashes_only,
                         keeper=FileKeeper(app.photos, bank.id, False),
                         after_batch=lambda stored: created.update(int(i.id) for i, new, _n in stored if new))
    report = check_ads(app, bank, cli_actor(), indexed=Indexed(frozenset(created), frozenset(hashes_only)))
    assert report.faces_reused == 0
    assert [c.context["ad"] for c in app.review.list(limit=100)[0]] == ["ad-1"]  # found by detecting
