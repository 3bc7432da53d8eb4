"""The dlib face signal (YuNet detection) on a real face (astronaut.png), its edits, a photo without a face,
and the fusion of dlib with SFace in the face searcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import images
from indexer.signals import base as signals
from indexer.signals import faces as F
from matcher.search import faces as fs
from tests.conftest import jpeg_bytes, photo, png_bytes

S_MATCH = signals.get("face_sface").default_thresholds.match
FACE_BOX = (178, 63, 268, 176)  # where YuNet finds the face in the 512x512 fixture


def extract(img: Image.Image, jpeg: int | None = None) -> list:
    data = jpeg_bytes(img, jpeg) if jpeg else png_bytes(img)
    return F.FACE_DLIB.extract(images.load(data, max_side=F.FACE_DLIB.decode_side))


def primary(found: list, size: tuple[int, int]):  # noqa: ANN201
    """The face the photo is about (the largest, most central one)."""
    assert found
    return max(found, key=lambda v: F.primary_weight(v.box, *size))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return primary(extract(photo("astronaut.png")), (512, 512)).vector


def near(box: tuple[int, ...], expected: tuple[float, ...], tol: float) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(box, expected, strict=True))


def test_registered_in_the_faces_family() -> None:
    signal = signals.get("face_dlib")
    assert signal.family == "faces" and signal.dim == 128
    assert signal in signals.select(["faces"])


def test_one_good_face_with_box_and_quality(reference: np.ndarray) -> None:
    v = primary(extract(photo("astronaut.png")), (512, 512))
    assert v.vector.dtype == np.float32 and v.vector.shape == (128,)
    assert abs(float(np.linalg.norm(v.vector)) - 1.0) < 1e-4
    assert near(v.box, FACE_BOX, 4)
    assert v.quality is not None and v.quality > 0.8 and v.extra["low_quality"] is False
    assert v.extra["detector"] == "yunet"
    assert np.array_equal(F.FACE_DLIB.from_bytes(F.FACE_DLIB.to_bytes(v.vector)), v.vector)
    assert np.allclose(primary(extract(photo("astronaut.png")), (512, 512)).vector, v.vector)


def test_each_face_keeps_its_five_landmarks_in_original_pixels() -> None:
    """YuNet's eyes, nose tip and mouth corners, kept with the box for the reviewer's drawing."""
    small = extract(photo("astronaut.png").resize((256, 256)))  # decoded at 256: scaled back below
    for found, scale in ((extract(photo("astronaut.png")), 1.0), (small, 0.5)):
        v = primary(found, (int(512 * scale), int(512 * scale)))
        assert v.extra["landmarks_from"] == "yunet"
        points = v.extra["landmarks"]
        assert len(points) == 5 and all(isinstance(c, int) for p in points for c in p)
        left, top, right, bottom = v.box
        assert all(left <= x <= right and top <= y <= bottom for x, y in points), (points, v.box)
        (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = points
        assert max(ry, ly) < ny < min(mry, mly)  # eyes above the nose tip above the mouth
        assert rx < lx and mrx < mlx  # the person's right eye and mouth corner on the picture's left
    full = primary(extract(photo("astronaut.png")), (512, 512)).extra["landmarks"]
    half = primary(small, (256, 256)).extra["landmarks"]
    assert all(abs(a - 2 * b) <= 6
               for p, q in zip(full, half, strict=True) for a, b in zip(p, q, strict=True))


@pytest.mark.parametrize("edit", ["crop", "resize", "jpeg", "mirror"])
def test_edits_keep_the_identity(edit: str, reference: np.ndarray) -> None:
    img = photo("astronaut.png")
    expected: tuple[float, ...] = FACE_BOX
    if edit == "crop":
        img = img.crop((100, 20, 380, 300))
        expected = (78, 43, 168, 156)
    elif edit == "resize":
        img = img.resize((300, 300), Image.Resampling.LANCZOS)
        expected = tuple(c * 300 / 512 for c in FACE_BOX)
    elif edit == "mirror":
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        expected = (512 - FACE_BOX[2], FACE_BOX[1], 512 - FACE_BOX[0], FACE_BOX[3])
    found = extract(img, jpeg=25 if edit == "jpeg" else None)
    main = primary(found, img.size)
    assert near(main.box, expected, 8)
    # Same person: far inside dlib's 0.6 Euclidean (~0.18 cosine) decision distance.
    assert F.FACE_DLIB.distance(main.vector, reference) < 0.06


def test_no_face_in_a_coffee_cup() -> None:
    picture = images.load(png_bytes(photo("coffee.png")))
    assert F.FACE_DLIB.extract(picture) == []
    assert F.detect(picture, fallback=False) == []


def test_yunet_finds_the_turned_head_hog_misses() -> None:
    picture = images.load(png_bytes(photo("camera.png")))  # the cameraman, a turned head
    assert F.detect_dlib(picture, cnn=False) == []
    found = F.FACE_DLIB.extract(picture)
    assert len(found) == 1 and found[0].extra["detector"] == "yunet"
    assert F.detect(picture)[0].points is not None  # five landmarks for SFace's alignment


def test_dlib_rect_from_yunet_landmarks_is_hogs_box() -> None:
    """The square rebuilt from YuNet's landmarks is where HOG puts the face (what shape5 expects)."""
    picture = images.load(png_bytes(photo("astronaut.png")))
    hog = max(F.detect_dlib(picture, cnn=False), key=lambda d: d.width)
    assert near(F.dlib_rect(F.detect(picture)[0]), (hog.left, hog.top, hog.right, hog.bottom), 5)


def test_dlib_detectors_run_only_as_a_fallback() -> None:
    picture = images.load(png_bytes(photo("camera.png")))
    cnn = F.detect_dlib(picture)  # HOG misses the turned head, its CNN finds it
    assert len(cnn) == 1 and cnn[0].detector == "cnn"
    coffee = images.load(png_bytes(photo("coffee.png")))
    assert F.detect(coffee, fallback=True) == [] and F.DLIB_FALLBACK is False


def test_blur_and_size_mark_low_quality(reference: np.ndarray) -> None:
    from PIL import ImageFilter

    blurred = primary(extract(photo("astronaut.png").filter(ImageFilter.GaussianBlur(3))), (512, 512))
    assert blurred.extra["low_quality"] is True and "blurred" in blurred.extra["reasons"]
    assert F.FACE_DLIB.distance(blurred.vector, reference) < 0.1  # kept, still useful
    small = primary(extract(photo("astronaut.png").resize((260, 260))), (260, 260))
    assert "small" in small.extra["reasons"]


def test_primary_weight_prefers_large_and_central() -> None:
    central = F.primary_weight((100, 100, 150, 150), 250, 250)
    corner = F.primary_weight((0, 0, 52, 52), 250, 250)
    assert central > corner
    assert F.primary_weight((0, 0, 120, 120), 250, 250) > F.primary_weight((110, 110, 140, 140), 250, 250)


def test_scores_normalise_by_reference_cohort_and_gap() -> None:
    model = fs.FaceModel(weights=(40.0, 40.0), bias=-20.0, alpha=0.5, ref_k=2, prior_mean=0.8,
                         prior_weight=1.0, prior_other=0.05)
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] = vectors[0] * 0.6 + vectors[1] * 0.8  # subjects 0 and 1 look alike
    ids = np.array([0, 1, 2, 2])
    means = fs.reference_cohort_means(vectors, ids, model)
    assert means[0] > means[2]  # a look-alike raises the cohort mean
    assert means[2] == pytest.approx(means[3])  # a subject's own photos are not its cohort
    feats = fs.features(np.array([0.9, 0.5, 0.1]), model)
    assert feats[0, 1] == pytest.approx(0.4) and feats[1, 1] == pytest.approx(-0.4)
    assert fs.features(np.array([0.9]), model)[0, 1] == pytest.approx(0.85)
    probs = fs.probabilities(feats, model)
    assert probs[0] > probs[1] > probs[2]
    tuned = fs.FaceModel(match=0.9, review=0.3)
    assert fs.to_common_scale(0.9, tuned) == pytest.approx(0.8)
    assert fs.to_common_scale(0.3, tuned) == pytest.approx(0.5)


def test_fusion_fills_a_signal_that_did_not_return_a_subject_with_its_floor() -> None:
    models = {"a": fs.FaceModel(prior_other=0.0), "b": fs.FaceModel(prior_other=0.0)}
    fusion = fs.FusionModel(("a", "b"), (10.0, 5.0, 10.0, 5.0), -8.0, 0.9, 0.3, (-0.2, -0.3))
    centred = {"a": np.array([0.6, 0.1, 0.0]), "b": np.array([0.5, np.nan, 0.05])}
    feats = fs.fused_features(centred, models, fusion)
    assert feats.shape == (3, 4)
    assert feats[1, 2] == pytest.approx(-0.3)  # b's floor, and its gap below b's best
    assert feats[1, 3] == pytest.approx(-0.8)
    probs = fs.fused_probabilities(centred, models, fusion)
    assert probs[0] > 0.5 > probs[2] > probs[1]
    # Both signals must agree for a high score: one signal alone at the top is not enough.
    split = fs.fused_probabilities({"a": np.array([0.6, 0.0]), "b": np.array([0.0, 0.5])}, models, fusion)
    assert probs[0] > split.max()


def test_face_candidates_keep_each_models_evidence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from indexer import enroll
    from indexer.crypto import generate_key
    from indexer.store.store import Store
    from matcher.search.query import Matcher

    monkeypatch.setenv("REUNITE_ENCRYPTION_KEY", generate_key())
    today = dt.date.today()
    consent = {"consent_by": "parent", "consent_date": (today - dt.timedelta(days=1)).isoformat(),
               "consent_expires": (today + dt.timedelta(days=30)).isoformat(), "case_ref": "C-1"}
    rows = []
    for name, label in (("astronaut", "person-a"), ("camera", "person-b")):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(photo(f"{name}.png"), 80))
        rows.append({"path": str(path), "label": label, **consent})
    store = Store(tmp_path / "data")
    enroll.enroll_records(store, "missing", "missing_person", rows)
    query = jpeg_bytes(photo("astronaut.png").crop((100, 20, 380, 300)).resize((200, 200)), 60)
    cands = [c for c in Matcher(store).match(query, [store.bank_or_error("missing")])
             if "face_score" in c.evidence]
    top = cands[0]
    assert top.label == "person-a" and top.decision == "match"
    ev = top.evidence
    assert ev["face_fusion"] == "face_dlib+face_sface" and ev["face_signal"] == "face_dlib"
    assert ev["face_dlib_distance"] == ev["face_distance"] < 0.1
    assert ev["face_sface_distance"] < S_MATCH
    assert 0.8 <= ev["face_dlib_score"] <= 1.0 and 0.8 <= ev["face_sface_score"] <= 1.0
    others = [c for c in cands if c.label == "person-b"]
    assert all(c.decision == "none" for c in others)


# --- which banks are searched by face (bank policy face_search; issue 18) ---------------------------

def test_face_search_is_on_for_missing_persons_and_ads_unless_the_policy_says_otherwise() -> None:
    from indexer.store.catalog import Bank

    for kind, default in (("missing_person", True), ("ads", True), ("venue", False), ("hashes", False)):
        assert fs.face_search_on(Bank(name="b", kind=kind, policy={})) is default, kind
        flipped = Bank(name="b", kind=kind, policy={"face_search": not default})
        assert fs.face_search_on(flipped) is not default


def _ads_bank(tmp_path: Path, policy: dict | None):  # noqa: ANN202 - (Store, Bank)
    """An ads bank indexed with its default families (faces included): the astronaut's ad and the
    cameraman's ad, as `reunite index` stores a crawl."""
    from api.cli.main import default_signals
    from indexer import ingest
    from indexer.store.store import Store

    records = []
    for name, label in (("astronaut", "ad-astronaut"), ("camera", "ad-camera")):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(photo(f"{name}.png"), 85))
        records.append(ingest.Record(path, label, str(path), {"site": "ads.example"}))
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("crawl", "ads", policy)
    names = [s.name for s in signals.select(default_signals("ads"))]
    assert {"face_dlib", "face_sface"} <= set(names)
    report = ingest.index_records(store, bank, records, names, source="test")
    assert report.indexed == 2, report.errors
    return store, bank


MISSING_PERSONS_PHOTO = (100, 20, 380, 300)  # a tighter, smaller, recompressed photo of the astronaut


def _query() -> bytes:
    return jpeg_bytes(photo("astronaut.png").crop(MISSING_PERSONS_PHOTO).resize((200, 200)), 60)


def test_a_missing_persons_face_finds_her_ad_in_an_ads_bank_at_most_for_review(tmp_path: Path) -> None:
    from matcher import defaults as defaults_mod
    from matcher.search.query import Matcher

    store, bank = _ads_bank(tmp_path, None)
    matcher = Matcher(store)
    searcher = next(s for s in matcher.searchers if s.name == "faces")
    assert searcher.applies(bank)
    query = matcher.prepare(_query(), [bank])
    found = fs.FaceSearcher(store, defaults_mod.load()).search(query, bank, 10)
    top = found[0]
    assert top.label == "ad-astronaut"
    # The same fused score makes a match in a missing-person bank (test above); in a crawl, a lead.
    assert top.evidence["face_score"] >= 0.8 and top.evidence["face_review_only"] is True
    assert top.decision == "review" and top.score < 0.8
    assert all(c.decision != "match" for c in found)
    merged = {c.label: c for c in matcher.match(_query(), [bank])}
    assert "face_score" in merged["ad-astronaut"].evidence  # the face searcher took part in the match


def test_an_ads_bank_whose_policy_says_no_is_not_searched_by_face(tmp_path: Path) -> None:
    from matcher.search.query import Matcher

    store, bank = _ads_bank(tmp_path, {"face_search": False})
    matcher = Matcher(store)
    assert not next(s for s in matcher.searchers if s.name == "faces").applies(bank)
    assert all("face_score" not in c.evidence for c in matcher.match(_query(), [bank]))


def test_http_bank_policy_takes_face_search(tmp_path: Path) -> None:
    from api_support import live_api

    with live_api(tmp_path / "data") as api:
        admin = api.as_("admin")
        made = admin.post("/v1/banks", json={"name": "crawl-eu", "kind": "ads",
                                             "policy": {"face_search": False}})
        assert made.status_code == 201, made.text
        assert made.json()["policy"] == {"face_search": False}
        assert api.service.store.catalog.bank("crawl-eu").policy == {"face_search": False}
        bad = admin.post("/v1/banks", json={"name": "crawl-us", "kind": "ads",
                                            "policy": {"face_search": "maybe"}})
        assert bad.status_code == 422 and "face_search" in bad.text
