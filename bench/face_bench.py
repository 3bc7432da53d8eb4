"""Faces benchmark: dlib alone, SFace alone and the fusion in one run, plus per-image cost.

    OMP_NUM_THREADS=1 python bench/face_bench.py ../shared/bench/faces [--cache F.pkl] [--time-every 5]
        [--json out.json]

Accuracy: each engine (``face_dlib`` alone, ``face_sface`` alone, ``fused``) is
scored exactly as :mod:`matcher.search.faces` scores (the functions are shared
with ``bench/calibrate_faces.py``), with the models and thresholds of
defaults.json, on the same cached extraction, overall and on the held-out half
of identities (the half calibrate_faces.py did not fit on). Metrics follow
../shared/bench/score.py.

Detection: images where YuNet finds no face, per part of the suite, and how many
of them dlib's HOG + CNN detectors find a face in (the measurement behind
``indexer.signals.faces.DLIB_FALLBACK``).

Cost: on every N-th image of the suite, in this run and in turn, the pipeline
before YuNet (dlib HOG, CNN where HOG finds nothing, flip-averaged dlib
descriptor: what rank-1 96.3% was measured with) and today's (YuNet, dlib and
SFace descriptors of each face), CPU seconds of this process per image (decode
excluded; run with ``OMP_NUM_THREADS=1`` so that it is one core).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate_faces as cal  # noqa: E402
from face_extract import Faces, extract_all  # noqa: E402

from indexer import images  # noqa: E402
from indexer.signals import faces as F  # noqa: E402
from indexer.signals.sface import FACE_SFACE  # noqa: E402
from matcher import defaults as defaults_mod  # noqa: E402
from matcher.search import faces as fs  # noqa: E402


def dlib_only_pipeline(picture: images.Picture) -> int:
    """The face pipeline as it was before YuNet: HOG, CNN on HOG's misses, flip-averaged dlib."""
    rgb = picture.rgb
    n = 0
    for det in F.detect_dlib(picture, cnn=True):
        shape = F._dlib_shape(rgb, det)
        F.dlib_embedding(rgb, shape, flip=True)
        n += 1
    return n


def current_pipeline(picture: images.Picture) -> int:
    """Today's: YuNet once, then both signals' descriptors of every face (as indexing runs them)."""
    return len(F.FACE_DLIB.extract(picture)) + len(FACE_SFACE.extract(picture))


def stats(secs: list[float]) -> dict[str, float]:
    ordered = sorted(secs)
    return {"n": len(ordered), "mean_ms": round(1000 * statistics.fmean(ordered), 1),
            "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}


def timing(suite: Path, paths: list[str], every: int) -> dict[str, dict[str, float]]:
    """Both pipelines on the same images, alternating, in this process."""
    import cv2

    cv2.setNumThreads(1)
    old, new = [], []
    for path in paths[::every]:
        data = (suite / path).read_bytes()
        for pipeline, out in ((dlib_only_pipeline, old), (current_pipeline, new)):
            picture = images.load(data, max_side=F.FACE_DLIB.decode_side)  # fresh: no cached detection
            start = time.process_time()
            pipeline(picture)
            out.append(time.process_time() - start)
    before, now = stats(old), stats(new)
    return {"dlib_only_before": before, "yunet_dlib_sface": now,
            "ratio_p50": round(now["p50_ms"] / before["p50_ms"], 3),
            "ratio_p95": round(now["p95_ms"] / before["p95_ms"], 3)}


def detection_misses(gallery: list[dict[str, str]], queries: list[dict[str, str]],
                     faces: dict[str, Faces]) -> dict[str, dict[str, int]]:
    parts: dict[str, list[str]] = {"gallery": [r["path"] for r in gallery]}
    for q in queries:
        parts.setdefault("queries:" + ("mated" if q["label"] else "non-mated"), []).append(q["path"])
        parts.setdefault("queries:" + (q.get("transform") or "none"), []).append(q["path"])
    out = {}
    for name, paths in parts.items():
        missed = [faces[p] for p in paths if not faces[p].boxes]
        out[name] = {"images": len(paths), "yunet_no_face": len(missed),
                     "dlib_finds_a_face_there": sum(1 for f in missed if f.dlib_found)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/reunite-faces-yunet.pkl"))
    ap.add_argument("--time-every", type=int, default=5, help="Time both pipelines on every N-th image.")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--timing-only", action="store_true", help="Only the per-image cost of both pipelines.")
    a = ap.parse_args()
    gallery, queries = cal.read_suite(a.suite)
    paths = [r["path"] for r in gallery] + [q["path"] for q in queries]
    if a.timing_only:
        result = {"time_per_image": timing(a.suite, paths, a.time_every)}
        print(json.dumps(result, indent=1))
        if a.json:
            a.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
        return
    faces = extract_all(a.suite, paths, a.cache)
    section = defaults_mod.load().section("faces")
    models = {s: fs.FaceModel.from_section(section, s) for s in cal.SIGNALS}
    fusion = fs.FusionModel.from_section(section)
    if not all(m.calibrated for m in models.values()) or fusion is None:
        sys.exit("defaults.json has no calibrated faces section for both signals: "
                 "run bench/calibrate_faces.py")
    bank, missing = cal.build_bank(gallery, faces)
    scoring = cal.Scoring.for_bank(bank, models, fusion)
    result = {"accuracy": cal.report(bank, scoring, faces, queries, (*cal.SIGNALS, cal.FUSED)),
              "gallery_without_face": missing,
              "detection": detection_misses(gallery, queries, faces),
              "cost_components_ms_p50": {
                  k: round(1000 * float(np.median([f.seconds[k] for f in faces.values()])), 1)
                  for k in next(iter(faces.values())).seconds},
              "time_per_image": timing(a.suite, paths, a.time_every) if a.time_every else {}}
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
