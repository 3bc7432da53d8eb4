"""Faces benchmark: reunite's face search vs the face_recognition-style peer, same run, same suite.

    OMP_NUM_THREADS=1 python bench/face_bench.py ../shared/bench/faces [--cache-dir /tmp] [--json out.json]

Peer = face_recognition's pipeline rebuilt on dlib directly (the package itself
is not needed): HOG detector upsampled once, the largest face, 5-point
landmarks, the ResNet descriptor without jitter, Euclidean distance, accept at
0.6, rank by distance. Ours = the production signal (HOG, CNN fallback,
flip-averaged descriptor, every query face) scored exactly as
:mod:`matcher.face_search` scores (the functions are shared), with the
thresholds of defaults.json. Times are CPU seconds of one core per image for
detection + alignment + embedding (decode excluded), measured in this run.

Metrics follow ../shared/bench/score.py; they are given overall and for the
held-out half of identities (the half bench/calibrate_faces.py did not fit on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate_faces as cal  # noqa: E402

from indexer import images  # noqa: E402
from indexer.signals import faces as F  # noqa: E402
from indexer.signals.base import SignalVector  # noqa: E402
from matcher import defaults as defaults_mod  # noqa: E402
from matcher import face_search as fs  # noqa: E402

PEER_TOLERANCE = 0.6


def peer_extract(picture: images.Picture) -> list[SignalVector]:
    """face_recognition.face_locations(img, 1, "hog") + face_encodings(num_jitters=1), largest face."""
    rects = F.MODELS.get("hog")(picture.rgb, 1)
    if not rects:
        return []
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = F.MODELS.get("shape5")(picture.rgb, rect)
    vec = np.asarray(F.MODELS.get("resnet").compute_face_descriptor(picture.rgb, shape, 1), dtype=np.float32)
    box = (rect.left(), rect.top(), rect.right(), rect.bottom())
    return [SignalVector("peer", vec, box=box)]


def peer_answers(gallery: list[dict[str, str]], queries: list[dict[str, str]],
                 faces: dict[str, cal.Faces]) -> dict[str, list[tuple[str, float, str]]]:
    vecs = [(g["label"], faces[g["path"]].vectors[0]) for g in gallery if len(faces[g["path"]].vectors)]
    labels = np.array([lab for lab, _ in vecs])
    matrix = np.stack([v for _, v in vecs])
    out = {}
    for q in queries:
        f = faces[q["path"]]
        if not len(f.vectors):
            continue
        dist = np.linalg.norm(matrix - f.vectors[0], axis=1)
        order = np.argsort(dist)[:cal.TOP_CANDIDATES]
        out[q["path"]] = [(str(labels[i]), float(1.0 - dist[i]),
                           "match" if dist[i] <= PEER_TOLERANCE else "none") for i in order]
    return out


def no_face_share(rows: list[dict[str, str]], faces: dict[str, cal.Faces]) -> float:
    return sum(1 for r in rows if not len(faces[r["path"]].vectors)) / len(rows)


def timing(faces: dict[str, cal.Faces]) -> dict[str, float]:
    secs = [f.seconds for f in faces.values()]
    return {"mean_ms": round(1000 * statistics.fmean(secs), 1),
            "p50_ms": round(1000 * statistics.median(secs), 1),
            "p95_ms": round(1000 * sorted(secs)[int(0.95 * (len(secs) - 1))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    gallery, queries = cal.read_suite(a.suite)
    paths = [r["path"] for r in gallery] + [q["path"] for q in queries]
    ours = cal.extract_all(a.suite, paths, a.cache_dir / "reunite-faces-extract.pkl")
    peer = cal.extract_all(a.suite, paths, a.cache_dir / "reunite-faces-peer.pkl", extract=peer_extract)

    model = fs.FaceModel.from_section(defaults_mod.load().section("faces"), cal.SIGNAL)
    if not model.calibrated:
        sys.exit("defaults.json has no calibrated faces section: run bench/calibrate_faces.py first")
    bank, _missing = cal.build_bank(gallery, ours)
    means = fs.reference_cohort_means(bank.vectors, np.unique(bank.labels, return_inverse=True)[1], model)
    our_answers = {q["path"]: cal.answer(bank, means, ours[q["path"]], model) for q in queries}
    held = [q for q in queries if cal.query_half(q) == 1]
    result = {}
    for name, answers, faces in (("reunite", our_answers, ours),
                                 ("peer", peer_answers(gallery, queries, peer), peer)):
        result[name] = {
            "overall": {k: round(v, 4) for k, v in cal.metrics(answers, queries).items()},
            "held_out_half": {k: round(v, 4) for k, v in cal.metrics(answers, held).items()},
            "no_face_gallery": round(no_face_share(gallery, faces), 4),
            "no_face_queries": round(no_face_share(queries, faces), 4),
            "time_per_image": timing(faces),
        }
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
