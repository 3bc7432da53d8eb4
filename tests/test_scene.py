"""Venue search on synthetic rooms: other viewpoints of a fixture photo, with a person in front.

A "room" is a fixture photo; another photo of the room is a perspective warp
and crop of it (a camera moved and turned), and the ad photo has a
person-shaped occluder pasted in: the astronaut's portrait, whose face dlib
finds, or a solid red box as in the Hotel-ID test set.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from indexer import images, ingest, pipeline
from indexer.scene import features, people, storage, vlad
from indexer.scene.bank import VOCABULARY_RULE, SceneBankIndex
from indexer.scene.features import LocalFeatures
from indexer.scene.geometry import verify
from indexer.signals import base as signals
from indexer.signals.scene import SCENE, scene_features
from indexer.store.store import Store
from matcher.search.query import Candidate, Matcher
from matcher.search.venues import (
    SceneParams,
    SceneSearcher,
    evidence_score,
    interleave,
    rank_venues,
)
from tests.conftest import jpeg_bytes, photo

ROOMS = {"cafe": "coffee.png", "cat_room": "chelsea.png", "launch_hall": "rocket.jpg"}


def view(img: Image.Image, seed: int, strength: float = 0.12, out: int = 480) -> Image.Image:
    """Another photo of the same place: corners moved by up to ``strength``, then cropped."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-strength, strength, (4, 2)) * [w, h]
    dst = (src + jitter).astype(np.float32)
    warped = cv2.warpPerspective(arr, cv2.getPerspectiveTransform(src, dst), (w, h),
                                 borderMode=cv2.BORDER_REFLECT)
    x0, y0 = int(w * rng.uniform(0.0, 0.12)), int(h * rng.uniform(0.0, 0.12))
    crop = warped[y0:y0 + int(h * 0.85), x0:x0 + int(w * 0.85)]
    small = Image.fromarray(crop)
    small.thumbnail((out, out))
    return small


def with_person(img: Image.Image, where: float = 0.55) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Paste the astronaut's head and shoulders as a person standing in the room."""
    portrait = photo("astronaut.png").crop((100, 0, 400, 340))
    h = int(img.height * 0.6)
    portrait = portrait.resize((int(h * 300 / 340), h))
    x = int(img.width * where) - portrait.width // 2
    y = img.height - h
    out = img.copy()
    out.paste(portrait, (x, y))
    return out, (x, y, x + portrait.width, y + h)


def with_red_box(img: Image.Image) -> Image.Image:
    out = np.asarray(img).copy()
    h, w = out.shape[:2]
    out[h // 3:h, w // 3:w // 3 + w // 4] = (255, 0, 0)
    return Image.fromarray(out)


@pytest.fixture(scope="module")
def venue_bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """A venue bank of three rooms, two reference views each, indexed as `reunite index` does."""
    root = tmp_path_factory.mktemp("venues")
    rows = []
    for label, name in ROOMS.items():
        for seed in (1, 2):
            path = root / f"{label}_{seed}.jpg"
            path.write_bytes(jpeg_bytes(view(photo(name), seed)))
            rows.append({"path": path.name, "label": label, "name": label.title(), "room": str(seed)})
    manifest = root / "venues.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "name", "room"])
        writer.writeheader()
        writer.writerows(rows)
    store = Store(root / "data")
    bank = store.catalog.ensure_bank("venues", "venue")
    report = ingest.index_records(store, bank, ingest.read_source(manifest), ["pdq", SCENE])
    assert report.indexed == 6 and report.failed == 0
    store.checkpoint()
    return store, root


def test_masking_removes_keypoints_on_the_person() -> None:
    room, box = with_person(view(photo("coffee.png"), 3))
    picture = images.load(jpeg_bytes(room))
    feats, mask = scene_features(picture)
    assert mask.faces, "the pasted portrait's face is found"
    left, top, right, bottom = box
    inside = ((feats.xy[:, 0] >= left) & (feats.xy[:, 0] < right)
              & (feats.xy[:, 1] >= top) & (feats.xy[:, 1] < bottom))
    unmasked = features.extract(cv2.cvtColor(np.asarray(room), cv2.COLOR_RGB2GRAY))
    on_person = ((unmasked.xy[:, 0] >= left) & (unmasked.xy[:, 0] < right)
                 & (unmasked.xy[:, 1] >= top) & (unmasked.xy[:, 1] < bottom))
    assert on_person.sum() > 50  # without the mask the person is full of keypoints
    assert inside.sum() <= 0.15 * on_person.sum()  # the body box is an estimate
    assert len(feats) > 100  # the room itself keeps its keypoints


def test_red_redaction_box_is_masked() -> None:
    img = np.asarray(with_red_box(view(photo("chelsea.png"), 4)))
    boxes = people.detect_redactions(img)
    assert len(boxes) == 1
    left, top, right, bottom = boxes[0]
    h, w = img.shape[:2]
    assert abs(left - w // 3) <= 3 and abs(top - h // 3) <= 3 and bottom >= h - 3
    # A photo without a box has none.
    assert people.detect_redactions(np.asarray(view(photo("chelsea.png"), 4))) == []


def test_features_round_trip_and_rootsift() -> None:
    gray = np.asarray(photo("brick.png").convert("L"))
    feats = features.extract(gray)
    again = LocalFeatures.from_bytes(feats.to_bytes())
    assert np.array_equal(again.xy, feats.xy) and np.array_equal(again.sift, feats.sift)
    assert again.size == feats.size
    assert np.allclose(np.linalg.norm(feats.rootsift, axis=1), 1.0, atol=1e-4)
    assert storage.unpack(storage.pack(feats)).to_bytes() == feats.to_bytes()
    with pytest.raises(ValueError):
        LocalFeatures.from_bytes(b"nope")


def test_vlad_is_unit_norm_and_separates_rooms() -> None:
    a = features.extract(np.asarray(view(photo("coffee.png"), 1).convert("L"))).rootsift
    b = features.extract(np.asarray(view(photo("coffee.png"), 2).convert("L"))).rootsift
    c = features.extract(np.asarray(view(photo("rocket.jpg"), 1).convert("L"))).rootsift
    vocab = vlad.train_vocabulary(np.concatenate([a, c]), words=16)
    va, vb, vc = (vlad.encode(x, vocab) for x in (a, b, c))
    assert abs(float(np.linalg.norm(va)) - 1) < 1e-5
    assert float(va @ vb) > float(va @ vc)
    assert vlad.words_for(10) == 1 and vlad.words_for(10**6) == vlad.DEFAULT_WORDS


def test_geometric_verification_separates_same_room_from_other() -> None:
    def feats_of(img: Image.Image) -> LocalFeatures:
        return features.extract(np.asarray(img.convert("L")))

    ref = feats_of(view(photo("chelsea.png"), 1))
    same = verify(feats_of(view(photo("chelsea.png"), 5)), ref)
    other = verify(feats_of(view(photo("coffee.png"), 5)), ref)
    assert same.inliers >= 30
    assert other.inliers < 15


def test_right_venue_ranks_first_despite_the_person(venue_bank: tuple[Store, Path]) -> None:
    store, _root = venue_bank
    bank = store.bank_or_error("venues")
    matcher = Matcher(store)
    for label, name in ROOMS.items():
        occluded, _box = with_person(view(photo(name), 7, strength=0.1), where=0.4)
        for query in (occluded, with_red_box(view(photo(name), 8, strength=0.1))):
            found = matcher.match(jpeg_bytes(query), [bank], top=5)
            assert found and found[0].label == label, [(c.label, c.score) for c in found]
            assert found[0].decision == "match"
            assert found[0].evidence["scene_inliers"] >= 20
            assert found[0].evidence["venue"]["name"] == label.title()


def test_evidence_fuses_inliers_vlad_and_colour_and_margin_is_over_the_runner_up(
        venue_bank: tuple[Store, Path]) -> None:
    store, _root = venue_bank
    bank = store.bank_or_error("venues")
    matcher = Matcher(store)
    # The bank holds SIFT and colour only (no scene_net): it is decided with the scene_sift section.
    params = SceneParams.from_section(matcher.defaults.section("scene_sift"))
    query = with_red_box(view(photo("chelsea.png"), 9, strength=0.1))
    found = [c for c in matcher.match(jpeg_bytes(query), [bank], top=5) if "scene_evidence" in c.evidence]
    assert [c.label for c in found][:1] == ["cat_room"] and len(found) == 3
    for c in found:
        e = c.evidence
        fused = (e["scene_inliers"] + params.vlad_weight * max(e["scene_similarity"], 0)
                 + params.colour_weight * max(e["scene_colour"], 0))
        assert e["scene_evidence"] == pytest.approx(fused, abs=0.05)
    # (The matcher orders merged candidates by their best score over all signals.)
    first = found[0].evidence
    runner_up = max(max(c.evidence["scene_evidence"] for c in found[1:]), params.chance_evidence)
    assert first["scene_margin"] == pytest.approx(first["scene_evidence"] - runner_up, abs=0.05)
    # The room's own colours (the red box masked) are closer than any other room's.
    assert first["scene_colour"] > max(c.evidence["scene_colour"] for c in found[1:])


def test_unrelated_photo_gets_no_match(venue_bank: tuple[Store, Path]) -> None:
    store, _root = venue_bank
    bank = store.bank_or_error("venues")
    found = Matcher(store).match(jpeg_bytes(view(photo("camera.png"), 3)), [bank], top=5)
    assert all(c.decision != "match" for c in found)


def test_a_small_bank_trains_a_full_vocabulary(venue_bank: tuple[Store, Path]) -> None:
    """Similarities are calibrated on 64-word VLADs; a six-photo bank must not get fewer words."""
    store, _root = venue_bank
    bank = store.bank_or_error("venues")
    index = SceneSearcher(store, Matcher(store).defaults).bank_index(bank)
    assert index.vocabulary is not None and index.vocabulary.shape[0] == vlad.DEFAULT_WORDS
    # An index saved by an older release (fewer words, no rule recorded) is retrained, not trusted.
    meta_path = index.folder / f"{SCENE}-vlad.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("rule")
    meta_path.write_text(json.dumps(meta))
    reloaded = SceneBankIndex(store.catalog, index.folder, bank.id, SCENE)
    assert reloaded.vocabulary is None
    assert reloaded.current().vocabulary.shape[0] == vlad.DEFAULT_WORDS
    assert json.loads(meta_path.read_text())["rule"] == VOCABULARY_RULE


def test_far_hash_neighbours_do_not_crowd_out_venues(venue_bank: tuple[Store, Path]) -> None:
    """A photo stored with hashes only is no venue candidate: beyond the review radius a hash
    says "not the same photo", and ranked by that score it pushed right venues out of the top 5."""
    store, root = venue_bank
    bank = store.catalog.ensure_bank("mixed", "venue")
    rooms = ingest.read_source(root / "venues.csv")
    assert ingest.index_records(store, bank, rooms, ["pdq", SCENE]).indexed == 6
    stray = root / "stray.jpg"
    stray.write_bytes(jpeg_bytes(photo("camera.png")))
    assert ingest.index_records(store, bank, [ingest.Record(stray, "stray", "stray.jpg")],
                                ["pdq"]).indexed == 1
    query = jpeg_bytes(with_red_box(view(photo("chelsea.png"), 9, strength=0.1)))
    found = Matcher(store).match(query, [bank], top=10)
    assert [c.label for c in found][:1] == ["cat_room"]
    assert sorted(c.label for c in found) == sorted(ROOMS)
    assert all("scene_evidence" in c.evidence and "pdq" in c.evidence for c in found)


def test_index_catches_up_and_forgets_deleted_references(venue_bank: tuple[Store, Path],
                                                         tmp_path: Path) -> None:
    store, root = venue_bank
    bank = store.catalog.ensure_bank("venues-grow", "venue")
    first = tmp_path / "a.jpg"
    first.write_bytes(jpeg_bytes(view(photo("coffee.png"), 11)))
    ingest.index_records(store, bank, [ingest.Record(first, "cafe", "a.jpg")], ["pdq", SCENE])
    searcher = SceneSearcher(store, Matcher(store).defaults)
    assert len(searcher.bank_index(bank)) == 1
    second = tmp_path / "b.jpg"
    second.write_bytes(jpeg_bytes(view(photo("rocket.jpg"), 11)))
    ingest.index_records(store, bank, [ingest.Record(second, "launch_hall", "b.jpg")], ["pdq", SCENE])
    assert len(searcher.bank_index(bank)) == 2
    # A fresh process reloads the saved index without retraining.
    again = SceneSearcher(store, Matcher(store).defaults).bank_index(bank)
    assert len(again) == 2 and again.vocabulary is not None
    # Deleting an item deletes its features (cascade) and drops it from the index.
    with store.catalog.session() as s:
        items = store.subject_items(s, store.catalog.subject_by_label(s, bank.id, "cafe").id)
        ids = [i.id for i in items]
        vids = [v for v in storage.bank_vector_ids(store.catalog, bank.id, SCENE)]
        store.delete_items(s, ids)
    assert len(searcher.bank_index(bank)) == 1
    assert len(storage.load_features(store.catalog, vids)) == 1


def test_evidence_score_is_monotone_and_calibrated() -> None:
    p = SceneParams(match=60, review=30)
    assert evidence_score(30, p) == pytest.approx(0.5)
    assert evidence_score(60, p) == pytest.approx(0.8)
    values = [evidence_score(x, p) for x in range(-100, 200, 5)]
    assert values == sorted(values) and values[-1] == 1.0 and values[0] > 0


def _venue(label: str, inliers: int = 50) -> Candidate:
    return Candidate(bank="b", label=label, subject_id=None, pseudonym=None, item=1, score=0.0,
                     decision="none", evidence={"scene_inliers": inliers})


def test_decision_is_on_the_margin_over_the_best_other_venue() -> None:
    p = SceneParams(match=20, review=5, chance_evidence=8.0)
    # Lots of evidence, but another venue has nearly as much: a review at best, never a match.
    close = rank_venues([(95.0, _venue("a")), (100.0, _venue("b")), (12.0, _venue("c"))], p)
    assert [c.label for c in close] == ["b", "a", "c"]
    assert [c.evidence["scene_margin"] for c in close] == [5.0, -5.0, -88.0]
    assert close[0].decision == "review" and all(c.decision == "none" for c in close[1:])
    assert [c.score for c in close] == sorted((c.score for c in close), reverse=True)
    # A clear lead is a match, whatever the absolute level.
    clear = rank_venues([(40.0, _venue("a")), (12.0, _venue("b"))], p)
    assert clear[0].decision == "match" and clear[1].decision == "none"
    # Alone in the bank, the lead is over chance evidence, not over nothing.
    alone = rank_venues([(p.chance_evidence + 10, _venue("a"))], p)
    assert alone[0].evidence["scene_margin"] == 10 and alone[0].decision == "review"


def test_in_a_small_bank_the_lead_is_measured_from_chance_not_from_a_weak_runner_up() -> None:
    """With three venues the best other one is a poor estimate of chance: photos of unknown rooms
    then lead by a lot (measured: 44% of them matched in banks of 3 on the venues suite)."""
    p = SceneParams(match=3, review=1, chance_evidence=30.0)
    unknown_room = rank_venues([(28.0, _venue("a")), (12.0, _venue("b")), (9.0, _venue("c"))], p)
    assert unknown_room[0].evidence["scene_margin"] == -2.0
    assert all(c.decision == "none" for c in unknown_room)
    known_room = rank_venues([(36.0, _venue("a")), (12.0, _venue("b"))], p)
    assert known_room[0].evidence["scene_margin"] == 6.0 and known_room[0].decision == "match"
    # A bank may also ask for verified inliers: a lead made of global similarity is then a review.
    strict = SceneParams(match=3, review=1, chance_evidence=30.0, min_match_inliers=10)
    unverified = rank_venues([(36.0, _venue("a", inliers=9)), (12.0, _venue("b"))], strict)
    assert unverified[0].decision == "review" and unverified[0].score > unverified[1].score


def test_the_chance_floor_depends_on_how_many_venues_the_bank_holds() -> None:
    """The best wrong venue of a bank gets more evidence the more venues compete, so the floor a
    lead is measured from is set per bank size (fitted on real banks of 3-20 venues)."""
    p = SceneParams(match=3, review=1, chance_evidence=30.0, chance_slope=-2.0, chance_venues=20.0)
    assert p.chance_floor(20) == 30.0 and p.chance_floor(None) == 30.0
    assert p.chance_floor(5) == pytest.approx(34.0) and p.chance_floor(80) == pytest.approx(26.0)
    photo_of_a_room = [(35.0, _venue("a")), (12.0, _venue("b"))]
    in_a_big_bank = rank_venues(list(photo_of_a_room), p, bank_venues=80)
    assert in_a_big_bank[0].evidence["scene_margin"] == pytest.approx(9.0)
    assert in_a_big_bank[0].decision == "match"
    # The same lead in a bank of five venues is within chance there.
    in_a_small_bank = rank_venues(list(photo_of_a_room), p, bank_venues=5)
    assert in_a_small_bank[0].evidence["scene_margin"] == pytest.approx(1.0)
    assert in_a_small_bank[0].decision == "review"
    # Without a slope the bank's size does not matter (the decision before issue 22's floor).
    flat = SceneParams(match=3, review=1, chance_evidence=30.0)
    assert rank_venues(list(photo_of_a_room), flat, bank_venues=5)[0].evidence["scene_margin"] == 5.0


def test_venues_are_counted_per_subject_and_follow_the_catalog(venue_bank: tuple[Store, Path]) -> None:
    store, _root = venue_bank
    bank = store.bank_or_error("venues")
    searcher = SceneSearcher(store, Matcher(store).defaults)
    assert searcher.venue_count(bank) == len(ROOMS)  # six photos, three venues
    assert searcher.venue_count(bank) == len(ROOMS)  # cached until the catalog moves


def test_the_shortlist_takes_both_rankings_in_turn_and_stops_at_k() -> None:
    """VLAD's and the learned descriptor's rankings share the k verifications: none is crowded out,
    and a reference both rank is verified once."""
    assert interleave([1, 2, 3, 4], [9, 2, 8], 4) == [1, 9, 2, 3]
    assert interleave([1, 2, 3, 4], [9, 2, 8], 10) == [1, 9, 2, 3, 8, 4]
    assert interleave([5, 6], [], 3) == [5, 6]
    assert interleave([], [], 3) == []


def test_scene_parameters_come_from_defaults_and_bank_policy() -> None:
    section = {"match": 2.5, "review": 1.0, "chance_evidence": 31.0, "min_match_inliers": 0}
    p = SceneParams.from_section(section, {"scene": {"min_match_inliers": 12, "chance_slope": -1.5}})
    assert (p.match, p.chance_evidence, p.min_match_inliers) == (2.5, 31.0, 12)
    assert (p.chance_slope, p.chance_venues) == (-1.5, 20.0)


def _tiny_model(path: Path, dim: int = 6) -> None:
    """A 3-channel image -> ``dim`` embedding: global average and max pooling, then a fixed matrix."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(6, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["avg"]),
         helper.make_node("GlobalMaxPool", ["image"], ["max"]),
         helper.make_node("Concat", ["avg", "max"], ["pooled"], axis=1),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["embedding"])],
        "tiny_scene",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_scene_plugin(tmp_path: Path) -> None:
    from indexer.scene import onnx_backend

    model = tmp_path / "tiny.onnx"
    _tiny_model(model)
    signal = onnx_backend.configure(model, name="scene_tiny", replace=True)
    try:
        assert signal.family == SCENE and signal.dim == 6 and signal.side == 32
        assert signals.get("scene_tiny") is signal
        data = jpeg_bytes(view(photo("coffee.png"), 1))
        a = pipeline.extract(data, ["scene_tiny"]).vectors
        b = pipeline.extract(data, ["scene_tiny"]).vectors
        assert len(a) == 1 and np.array_equal(a[0].vector, b[0].vector)
        assert abs(float(np.linalg.norm(a[0].vector)) - 1) < 1e-5
        # Indexed beside the SIFT features, the embedding feeds the venue shortlist.
        store = Store(tmp_path / "data")
        bank = store.catalog.ensure_bank("v", "venue")
        ref = tmp_path / "ref.jpg"
        ref.write_bytes(jpeg_bytes(view(photo("coffee.png"), 2)))
        ingest.index_records(store, bank, [ingest.Record(ref, "cafe", "ref.jpg")],
                             ["pdq", SCENE, "scene_tiny"])
        query = Matcher(store).prepare(data, [bank])
        searcher = SceneSearcher(store, Matcher(store).defaults)
        shortlist = searcher._embedding_shortlist(query, bank, 5)
        assert len(shortlist) == 1
        found = searcher.search(query, bank, 5)
        assert found[0].label == "cafe" and "scene_embedding_similarity" in found[0].evidence
    finally:
        signals.unregister("scene_tiny")
    with pytest.raises(FileNotFoundError):
        onnx_backend.OnnxSceneSignal(tmp_path / "missing.onnx")
