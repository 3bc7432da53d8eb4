"""`reunite match`: the output format users parse, and the decisions they act on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import FIXTURES, jpeg_bytes, photo, run_reunite


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    done = run_reunite("index", str(FIXTURES), "--bank", "ads", "--quiet", data=data)
    # fixtures/ also holds fixtures/pdq/LICENSE and fixtures/legacy/make_folder.py, no images:
    # listed as failed, the photos indexed, and the run exits 1 (incomplete) saying so.
    assert done.returncode == 1, done.stderr
    assert re.fullmatch(r"incomplete: 2 of \d+ images failed \(2 unsupported_image\); the others were "
                        r"indexed, the report lists each failure", done.stderr.splitlines()[-1]), done.stderr
    return data


def _match(data: Path, *images: Path, extra: tuple[str, ...] = ()) -> list[dict]:
    done = run_reunite("match", *map(str, images), "--bank", "ads", "--json", *extra,
                       data=data, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_reencoded_photo_is_found_at_rank_one_with_match(indexed: Path, tmp_path: Path) -> None:
    src = photo("astronaut.png")
    query = tmp_path / "repost.jpg"
    query.write_bytes(jpeg_bytes(src.resize((src.width // 2, src.height // 2)), quality=50))
    [answer] = _match(indexed, query)
    assert answer["query"] == str(query)
    first = answer["candidates"][0]
    assert first["label"] == "astronaut" and first["decision"] == "match"
    # review_id: the queue entry it made (the path of HTTP match, api.application.queue_candidates)
    assert set(first) == {"label", "bank", "item", "score", "decision", "evidence", "review_id",
                          "minor_policy"}
    assert first["bank"] == "ads" and isinstance(first["item"], int)
    assert 0.0 <= first["score"] <= 1.0
    assert all(isinstance(v, int | float | str | list | dict) for v in first["evidence"].values())
    scores = [c["score"] for c in answer["candidates"]]
    assert scores == sorted(scores, reverse=True)


def test_mirrored_repost_matches_through_dihedral_hashes(indexed: Path, tmp_path: Path) -> None:
    query = tmp_path / "mirror.jpg"
    query.write_bytes(jpeg_bytes(ImageOps.mirror(photo("coffee.png"))))
    first = _match(indexed, query)[0]["candidates"][0]
    assert first["label"] == "coffee" and first["decision"] == "match"


def _unrelated_picture(width: int, height: int) -> Image.Image:
    """A photo-like picture that is in no bank: smooth colour fields with shapes on them."""
    rng = np.random.default_rng(11)
    fields = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), 25)
    canvas = np.clip(128 + 60 * fields / fields.std(), 0, 255).astype(np.uint8)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(canvas, (x, y), int(rng.integers(10, 60)), colour, -1)
    return Image.fromarray(canvas)


def test_unrelated_photo_gets_no_match(indexed: Path, tmp_path: Path) -> None:
    query = tmp_path / "unrelated.jpg"
    query.write_bytes(jpeg_bytes(_unrelated_picture(*photo("rocket.jpg").size)))
    answer = _match(indexed, query)[0]
    assert all(c["decision"] != "match" for c in answer["candidates"])


def test_small_rotated_crop_is_found_with_its_region(indexed: Path, tmp_path: Path) -> None:
    # The top-left 200 x 200 px of the astronaut photo (15% of it), enlarged and turned 45°:
    # hashes see nothing alike, the verified local features do, and say where.
    query = tmp_path / "crop.jpg"
    query.write_bytes(jpeg_bytes(photo("astronaut.png").crop((0, 0, 200, 200))
                                 .resize(photo("rocket.jpg").size).rotate(45)))
    first = _match(indexed, query)[0]["candidates"][0]
    assert first["label"] == "astronaut" and first["decision"] == "match"
    assert first["evidence"]["pdq"] > 70
    left, top, right, bottom = first["evidence"]["local_region"]
    assert 0 <= left < right <= 200 and 0 <= top < bottom <= 200


def test_top_limits_candidates(indexed: Path) -> None:
    answer = _match(indexed, FIXTURES / "chelsea.png", extra=("--top", "2"))[0]
    assert len(answer["candidates"]) == 2
    assert answer["candidates"][0]["evidence"].get("sha256") == 0  # the exact file


def test_manifest_queries_keep_paths_as_given(indexed: Path, tmp_path: Path) -> None:
    (tmp_path / "q.jpg").write_bytes(jpeg_bytes(photo("camera.png")))
    (tmp_path / "queries.csv").write_text("path\nq.jpg\n")
    done = run_reunite("match", "--manifest", str(tmp_path / "queries.csv"), "--bank", "ads",
                       "--json", data=indexed, check=True)
    answer = json.loads(done.stdout)
    assert answer["query"] == "q.jpg" and answer["candidates"][0]["label"] == "camera"


def test_bad_query_image_exits_2_and_keeps_other_answers(indexed: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    done = run_reunite("match", str(bad), str(FIXTURES / "coffee.png"), "--bank", "ads", "--json",
                       data=indexed)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {bad}: not a recognised image file"]
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert lines[0]["error"] == "unsupported_image" and lines[1]["candidates"]


def test_unknown_bank_exits_2(indexed: Path) -> None:
    done = run_reunite("match", str(FIXTURES / "coffee.png"), "--bank", "nope,ads,gone", data=indexed)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: unknown bank(s): nope, gone (banks: ads)"
    repeated = run_reunite("match", str(FIXTURES / "coffee.png"), "--bank", "nope", "--bank", "ads,gone",
                           data=indexed)
    assert repeated.returncode == 2
    assert repeated.stderr.strip() == "error: unknown bank(s): nope, gone (banks: ads)"


def test_bank_may_be_repeated(indexed: Path) -> None:
    [answer] = _match(indexed, FIXTURES / "coffee.png", extra=("--bank", " ads, ", "--top", "1"))
    assert answer["candidates"][0]["label"] == "coffee"  # the same bank named twice is searched once


def test_index_refuses_missing_person_banks(indexed: Path) -> None:
    done = run_reunite("index", str(FIXTURES), "--bank", "mp", "--kind", "missing_person",
                       data=indexed)
    assert done.returncode == 2 and "enroll" in done.stderr


def test_human_output_says_the_evidence_in_lines_not_a_dict(indexed: Path, tmp_path: Path) -> None:
    query = tmp_path / "crop.jpg"  # the rotated crop: local features spoke, the hashes did not
    query.write_bytes(jpeg_bytes(photo("astronaut.png").crop((0, 0, 200, 200))
                                 .resize(photo("rocket.jpg").size).rotate(45)))
    out = run_reunite("match", str(query), "--bank", "ads", "--top", "1", data=indexed, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == str(query)
    assert lines[1].split()[:3] == ["match", lines[1].split()[1], "ads/astronaut"]
    evidence = [line.strip() for line in lines[2:]]
    assert evidence and all(line for line in evidence)
    assert not any(line.startswith("{") or "': " in line for line in out.splitlines())  # no dict repr
    assert any("inliers" in line for line in evidence), evidence  # the local features, in words
    assert "local_shared_inliers: 0" in evidence  # a value no sentence explains is listed as it is
    assert not any(line.startswith("Score ") for line in evidence)  # the score is on the candidate line
    assert not any(key in out for key in ("_pairs", "_quad", "_hull"))  # drawing coordinates stay out
    repost = tmp_path / "repost.jpg"  # a re-encoded copy: the hashes speak, in their scale
    repost.write_bytes(jpeg_bytes(photo("coffee.png"), quality=60))
    out = run_reunite("match", str(repost), "--bank", "ads", "--top", "1", data=indexed, check=True).stdout
    pdq = [line for line in out.splitlines() if line.strip().startswith("PDQ distance ")]
    assert pdq and " of 256" in pdq[0], out
