"""Enrollment of consented missing-person references and venue photos.

Real dlib on the fixture face (astronaut.png) and a real face found by the CNN
fallback (camera.png); real SQLite catalog and FAISS index in tmp_path.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from indexer import enroll, privacy
from indexer.crypto import MissingKey, generate_key
from indexer.signals import base as signals
from indexer.store.catalog import Bank, Item, Subject, Vector
from indexer.store.store import Store
from matcher.search.hashes import match_hashes, parse_hashes
from matcher.search.query import Matcher
from tests.conftest import ROOT, jpeg_bytes, photo

TODAY = dt.date.today()
VALID = {"consent_by": "parent", "consent_date": (TODAY - dt.timedelta(days=10)).isoformat(),
         "consent_expires": (TODAY + dt.timedelta(days=365)).isoformat(), "case_ref": "CASE-1"}


@pytest.fixture(autouse=True)
def _encryption_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing-person consent records are sealed, never stored in clear: enrolling needs the key."""
    monkeypatch.setenv("REUNITE_ENCRYPTION_KEY", generate_key())


def write_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    astro = photo("astronaut.png")
    files = {
        "astro_jpeg": jpeg_bytes(astro, 70),
        "astro_crop": jpeg_bytes(astro.crop((60, 0, 400, 340))),
        "camera": jpeg_bytes(photo("camera.png")),
        "coffee": jpeg_bytes(photo("coffee.png")),
    }
    out = {}
    for name, data in files.items():
        out[name] = folder / f"{name}.jpg"
        out[name].write_bytes(data)
    return out


def run_cli(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    """The real `reunite` entry point (api.cli:main), as the console script runs it."""
    cmd = [sys.executable, "-c", "from api.cli import main; main()", "--data", str(data), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("path", "label"), k))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_images(tmp_path_factory.mktemp("refs"))


def test_consent_rules() -> None:
    now = dt.datetime(2025, 6, 1, 12, 0)
    ok = enroll.check_consent({**VALID, "consent_date": "2025-05-01", "consent_expires": "2025-06-01"}, now)
    assert ok.expires == dt.datetime(2025, 6, 2)  # a date-only expiry holds through that day
    bad = [
        ({**VALID, "consent_by": ""}, "missing consent_by"),
        ({k: v for k, v in VALID.items() if k != "case_ref"}, "missing case_ref"),
        ({**VALID, "consent_date": "yesterday"}, "not an ISO date"),
        ({**VALID, "consent_date": "2025-07-01", "consent_expires": "2026-01-01"}, "in the future"),
        ({**VALID, "consent_date": "2025-01-01", "consent_expires": "2024-01-01"}, "not after"),
        ({**VALID, "consent_date": "2024-01-01", "consent_expires": "2025-05-31"}, "expired"),
    ]
    for row, reason in bad:
        with pytest.raises(ValueError, match=reason):
            enroll.check_consent(row, now)


def test_consent_is_never_stored_without_the_key(tmp_path: Path, pictures: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REUNITE_ENCRYPTION_KEY")
    store = Store(tmp_path / "data")
    with pytest.raises(MissingKey, match="REUNITE_ENCRYPTION_KEY"):
        enroll.enroll_records(store, "missing", "missing_person",
                              [{"path": str(pictures["camera"]), "label": "p", **VALID}])
    assert store.catalog.bank("missing") is None


def test_seal_round_trip() -> None:
    fields = {"consent_by": "parent", "case_ref": "CASE-9", "n": 3}
    assert privacy.unseal(privacy.seal(fields)) == fields
    assert privacy.unseal(None) == {}


def test_enroll_aggregates_per_subject_and_keeps_the_primary_face(
        tmp_path: Path, pictures: dict[str, Path]) -> None:
    store = Store(tmp_path / "data")
    rows = [{"path": str(pictures["astro_jpeg"]), "label": "person-a", **VALID},
            {"path": str(pictures["astro_crop"]), "label": "person-a", **VALID},
            {"path": str(pictures["camera"]), "label": "person-b", **VALID}]
    report = enroll.enroll_records(store, "missing", "missing_person", rows)
    assert report["enrolled"] == 3 and report["subjects"] == 2 and report["no_face_rows"] == []
    with store.catalog.session() as s:
        subjects = {x.label: x for x in s.scalars(select(Subject))}
        assert set(subjects) == {"person-a", "person-b"}
        a = subjects["person-a"]
        assert a.pseudonym.startswith("S-") and "person-a" not in a.pseudonym
        assert privacy.unseal(a.personal)["case_ref"] == "CASE-1"
        assert a.consent_expires is not None
        faces = s.scalars(select(Vector).where(Vector.signal == "face_dlib")).all()
        assert len(faces) == 3 and all(v.extra.get("primary") for v in faces)

    query = jpeg_bytes(photo("astronaut.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    bank = store.bank_or_error("missing")
    cands = Matcher(store).match(query, [bank])
    labels = [c.label for c in cands]
    assert labels[0] == "person-a" and labels.count("person-a") == 1  # one candidate per subject
    top = cands[0]
    assert top.decision == "match"
    with store.catalog.session() as s:
        a_items = {i.id for i in s.scalars(select(Item).where(Item.subject_id == a.id))}
    # The mirrored photo also matches by hash; the face evidence names its own reference.
    assert top.item in a_items and top.evidence["reference_item"] in a_items
    assert top.evidence["face_score"] >= 0.8
    assert 0.0 <= top.evidence["face_distance"] < 0.1
    left, _t, right, _b = top.evidence["query_face_box"]
    assert 512 - 265 - 15 < left < right < 512 - 175 + 15  # the mirrored face, in query pixels

    again = enroll.enroll_records(store, "missing", "missing_person", rows)
    assert again["enrolled"] == 0 and again["already_enrolled"] == 3


def test_expired_consent_stops_matching(tmp_path: Path, pictures: dict[str, Path]) -> None:
    store = Store(tmp_path / "data")
    long_ago = dt.datetime(2020, 3, 1)
    row = {"path": str(pictures["astro_jpeg"]), "label": "person-a", "consent_by": "parent",
           "consent_date": "2020-01-01", "consent_expires": "2020-12-31", "case_ref": "C"}
    enroll.enroll_records(store, "missing", "missing_person", [row], now=long_ago)
    bank = store.bank_or_error("missing")
    query = jpeg_bytes(photo("astronaut.png"), 80)
    matcher = Matcher(store)
    cands = matcher.match(query, [bank])
    assert all(c.label != "person-a" for c in cands)  # neither through the face nor the hashes
    vectors = matcher.prepare(query, [bank]).hashes.vectors
    hashes = {v.signal: signals.get(v.signal).to_hex(v.vector) for v in vectors
              if v.signal in ("pdq", "phash")}
    assert all(c.label != "person-a" for c in match_hashes(matcher, parse_hashes(hashes), [bank]))
    # Renewed consent makes the subject searchable again.
    renewed = {**row, "consent_date": TODAY.isoformat(),
               "consent_expires": (TODAY + dt.timedelta(days=30)).isoformat()}
    report = enroll.enroll_records(store, "missing", "missing_person", [renewed])
    assert report["consent_renewed"] == 1
    cands = Matcher(store).match(query, [bank])
    assert cands and cands[0].label == "person-a" and "face_score" in cands[0].evidence


def test_refused_row_refuses_the_manifest(tmp_path: Path, pictures: dict[str, Path]) -> None:
    store = Store(tmp_path / "data")
    rows = [{"path": str(pictures["astro_jpeg"]), "label": "person-a", **VALID},
            {"path": str(pictures["camera"]), "label": "person-b", **{**VALID, "consent_by": ""}}]
    with pytest.raises(enroll.EnrollError, match="row 2: refused: no valid consent record"):
        enroll.enroll_records(store, "missing", "missing_person", rows)
    with store.catalog.session() as s:
        assert s.scalars(select(Bank)).all() == [] and s.scalars(select(Item)).all() == []


def test_evaluation_consent_and_no_face_rows(tmp_path: Path, pictures: dict[str, Path]) -> None:
    store = Store(tmp_path / "data")
    rows = [{"path": str(pictures["astro_jpeg"]), "label": "a"},
            {"path": str(pictures["coffee"]), "label": "b"}]
    with pytest.raises(enroll.EnrollError, match="row 1"):
        enroll.enroll_records(store, "g", "missing_person", rows)
    report = enroll.enroll_records(store, "g", "missing_person", rows, for_evaluation=True)
    assert report["enrolled"] == 2 and report["no_face_rows"] == [2]


def test_venue_enroll_keeps_attributes(tmp_path: Path, pictures: dict[str, Path]) -> None:
    store = Store(tmp_path / "data")
    rows = [{"path": str(pictures["coffee"]), "label": "v1", "name": "Hotel X", "room": "12"}]
    enroll.enroll_records(store, "venues", "venue", rows)
    with store.catalog.session() as s:
        subject = s.scalars(select(Subject)).one()
        assert subject.attributes == {"name": "Hotel X", "room": "12"} and subject.personal is None


def test_cli_refuses_without_consent(tmp_path: Path, pictures: dict[str, Path], data_dir: Path) -> None:
    manifest = write_manifest(tmp_path / "refs.csv",
                              [{"path": str(pictures["astro_jpeg"]), "label": "person-a"}])
    done = run_cli("enroll", "--bank", "missing", "--kind", "missing_person", "--quiet",
                   str(manifest), data=data_dir)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "row 1: refused: no valid consent record" in lines[0]
    assert "person-a" not in done.stderr
    banks = run_cli("banks", data=data_dir)
    assert banks.returncode == 0 and "missing" not in banks.stdout

    ok = write_manifest(tmp_path / "ok.csv",
                        [{"path": str(pictures["astro_jpeg"]), "label": "person-a", **VALID}])
    done = run_cli("enroll", "--bank", "missing", "--kind", "missing_person", "--quiet", str(ok),
                   data=data_dir)
    assert done.returncode == 0, done.stderr
    assert "1 photos enrolled" in done.stdout and "person-a" not in done.stdout + done.stderr


def test_rerun_decodes_only_new_photos_and_reports_as_before(
        tmp_path: Path, pictures: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A no-op re-run skips the decode and face extraction of photos the bank holds (issue 15)."""
    from indexer import pipeline

    decoded: list[int] = []
    real_extract = pipeline.extract

    def counting_extract(data: bytes, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real one, counted
        decoded.append(len(data))
        return real_extract(data, *args, **kwargs)

    monkeypatch.setattr(pipeline, "extract", counting_extract)
    store = Store(tmp_path / "data")
    coffee = tmp_path / "coffee.jpg"  # a copy of its own: removed below
    coffee.write_bytes(pictures["coffee"].read_bytes())
    rows = [{"path": str(pictures["astro_jpeg"]), "label": "person-a", **VALID},
            {"path": str(coffee), "label": "person-b", **VALID}]  # no face: reported
    first = enroll.enroll_records(store, "missing", "missing_person", rows)
    assert len(decoded) == 2 and first["enrolled"] == 2 and first["no_face_rows"] == [2]
    decoded.clear()
    again = enroll.enroll_records(store, "missing", "missing_person", rows)
    assert decoded == []  # nothing decoded, nothing extracted
    assert (again["enrolled"], again["already_enrolled"], again["subjects"], again["no_face_rows"]) == (
        0, 2, 2, [2])
    grown = enroll.enroll_records(store, "missing", "missing_person",
                                  [*rows, {"path": str(pictures["camera"]), "label": "person-c", **VALID}])
    assert len(decoded) == 1 and (grown["enrolled"], grown["already_enrolled"]) == (1, 2)
    with store.catalog.session() as s:
        assert len(s.scalars(select(Item)).all()) == 3
    # A known photo is still read and checked: a row that now points at nothing refuses the manifest.
    coffee.unlink()
    with pytest.raises(enroll.EnrollError, match="row 2: refused: the file does not exist"):
        enroll.enroll_records(store, "missing", "missing_person", rows)
