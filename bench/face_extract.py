"""Faces of a suite's images as the production signals extract them, timed, cached.

Shared by ``bench/calibrate_faces.py`` and ``bench/face_bench.py``. One pass per
image: the shared detection (YuNet; faces.faces), then each face signal's
embedding of the same faces, each step timed in CPU seconds of this process
(run it with ``OMP_NUM_THREADS=1``: one core). Where YuNet finds no face, dlib's
HOG and CNN detectors are run as well and what they find is recorded: that is
the measurement behind :data:`indexer.signals.faces.DLIB_FALLBACK`.
"""

from __future__ import annotations

import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

from indexer import images  # noqa: E402
from indexer.signals import faces as F  # noqa: E402
from indexer.signals import sface  # noqa: E402

SIGNAL_NAMES = (F.FACE_DLIB.name, sface.FACE_SFACE.name)


@dataclass
class Faces:
    """The faces of one image, one row per face, the same faces for every signal."""

    vectors: dict[str, np.ndarray]  # signal -> n x 128
    boxes: list[tuple[int, int, int, int]]
    low: list[bool]
    size: tuple[int, int]
    seconds: dict[str, float] = field(default_factory=dict)  # "detect" and one per signal
    dlib_found: int | None = None  # faces HOG/CNN find where YuNet found none (None: not run)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


def extract_one(data: bytes) -> Faces:
    """Detect once, then embed each face with each model, with and without the mirrored pass.

    ``vectors[name]`` is what the signal stores with ``flip=False``,
    ``vectors[name + "+flip"]`` with ``flip=True`` (mean with the mirrored crop);
    ``seconds`` has the single pass and the mirrored pass separately, so that
    both configurations are measured in one run.
    """
    picture = images.load(data, max_side=F.FACE_DLIB.decode_side)
    rgb = picture.rgb
    t0 = time.process_time()
    found = F.faces(picture)
    seconds = {"detect": time.process_time() - t0, "face_dlib": 0.0, "face_dlib+flip": 0.0,
               "face_sface": 0.0, "face_sface+flip": 0.0}
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("face_dlib", "face_dlib+flip", "face_sface",
                                                        "face_sface+flip")}
    net = F.MODELS.get("resnet")
    for face, shape in found:
        t = time.process_time()
        chip = F.aligned_chip(rgb, shape)
        a = np.asarray(net.compute_face_descriptor(chip), dtype=np.float32)
        t1 = time.process_time()
        b = np.asarray(net.compute_face_descriptor(np.ascontiguousarray(chip[:, ::-1])), dtype=np.float32)
        t2 = time.process_time()
        crop = sface.aligned_crop(rgb, face.align_points, face.landmarks)
        c = sface.embedding(crop, flip=False)
        t3 = time.process_time()
        d = sface.embedding(np.ascontiguousarray(crop[:, ::-1]), flip=False)
        t4 = time.process_time()
        seconds["face_dlib"] += t1 - t
        seconds["face_dlib+flip"] += t2 - t1
        seconds["face_sface"] += t3 - t2
        seconds["face_sface+flip"] += t4 - t3
        out["face_dlib"].append(_unit(a))
        out["face_dlib+flip"].append(_unit((a + b) / 2))
        out["face_sface"].append(c)
        out["face_sface+flip"].append(_unit((c + d) / 2))
    vectors = {k: np.stack(v) if v else np.zeros((0, 128), dtype=np.float32) for k, v in out.items()}
    dlib_found = len(F.detect_dlib(picture)) if not found else None
    return Faces(vectors, [f.box for f, _ in found], [bool(f.quality < F.LOW_QUALITY) for f, _ in found],
                 picture.original_size, seconds, dlib_found)


class _Unpickler(pickle.Unpickler):
    """Reads caches written when this file ran as a script (``__main__.Faces``)."""

    def find_class(self, module: str, name: str) -> type:
        if name == "Faces":
            return Faces
        return super().find_class(module, name)


def extract_all(suite: Path, paths: list[str], cache: Path | None) -> dict[str, Faces]:
    """Faces of every path, cached (pickle) so that experiments need one extraction."""
    cv2.setNumThreads(1)
    done: dict[str, Faces] = {}
    if cache is not None and cache.exists():
        done = _Unpickler(cache.open("rb")).load()
    todo = [p for p in dict.fromkeys(paths) if p not in done]
    for n, path in enumerate(todo, start=1):
        done[path] = extract_one((suite / path).read_bytes())
        if n % 25 == 0:
            print(f"  extracted {n}/{len(todo)}", file=sys.stderr, flush=True)
            if cache is not None:
                cache.write_bytes(pickle.dumps(done))
    if cache is not None and todo:
        cache.write_bytes(pickle.dumps(done))
    return done


if __name__ == "__main__":
    import csv

    suite = Path(sys.argv[1])
    rows = []
    for name in ("gallery.csv", "queries.csv"):
        with (suite / name).open(newline="") as f:
            rows += [r["path"] for r in csv.DictReader(f)]
    import face_extract  # the cache's classes must be face_extract's, not __main__'s

    out = face_extract.extract_all(suite, rows, Path(sys.argv[2]))
    print(len(out), "images;", sum(1 for f in out.values() if not f.boxes), "without a YuNet face")
