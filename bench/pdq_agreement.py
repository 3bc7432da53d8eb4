"""How far reunite's PDQ is from the reference's, and what it costs, in one run.

    python bench/pdq_agreement.py [--suite-root ../shared/bench] [--pdq-data ../shared/peers/pdq] [--repeat 3]

A partner's PDQ list is computed by the reference (``pdqhash.compute``, the
C++ hasher) on the full decode of each photo; a hash that drifts more than 31
bits from it (HMA's default threshold) misses that identical photo. For every
photo of the copydet gallery and the venue suite larger than 256 px (smaller
ones are hashed as decoded, exactly) this prints the bit distance between
reunite's PDQ (``pipeline.extract``, the hashes family) and ``pdqhash.compute``
on the full, EXIF-upright RGB decode, as mean, p99, max and count over 31;
the same for the old way (the reference run on the 256-px copy) and for the
worst of the eight dihedral variants against ``pdqhash.compute_dihedral``.

On ThreatExchange's reference images (pdq/data, BSD) it compares both with
the published hashes, and hashes each of the eight dihedral files of the bridge
photo to see how far it lands from the original's variant of that symmetry.

With ``--copydet`` it also replays copy detection by PDQ alone on the copydet
suite (nearest gallery photo over the query's eight variants), old way and new,
at the copy radius (70) and HMA's 31: the calibrated radii in
matcher/defaults.json assume PDQ distances of that size.

Last, the hashing throughput of reunite's one-decode pipeline against the naive
peer (``imagehash.phash``, ``imagehash.dhash``, ``pdqhash.compute``, one full
decode each) on the same photos, interleaved, one core.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, not whichever copy is installed
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import pdqhash  # noqa: E402
from hash_throughput import naive, timed  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from indexer import images, pipeline  # noqa: E402
from indexer.signals import base as signals  # noqa: E402
from indexer.signals import hashes  # noqa: E402

MATCH = 31  # HMA's default PDQ threshold


def suite_photos(suite_root: Path) -> list[bytes]:
    """Distinct copydet gallery and venue photos whose long side exceeds 256 px."""
    lists = [("copydet", "gallery.csv"), ("venues", "gallery.csv"), ("venues", "queries.csv")]
    seen: set[str] = set()
    out = []
    for suite, name in lists:
        with (suite_root / suite / name).open() as f:
            for row in csv.DictReader(f):
                data = (suite_root / suite / row["path"]).read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen or max(Image.open(io.BytesIO(data)).size) <= 256:
                    continue
                seen.add(digest)
                out.append(data)
    return out


def reference_rgb(data: bytes) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def bits(vector: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(vector, dtype=np.uint8))


def distance(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.asarray(a) != np.asarray(b)).sum())


def summary(label: str, values: list[int]) -> str:
    d = np.array(values)
    return (f"{label:58s} mean {d.mean():5.2f}  p99 {np.percentile(d, 99):5.1f}  max {d.max():3d}  "
            f"over {MATCH}: {(d > MATCH).sum()} of {len(d)}")


def reunite_pdq(data: bytes, names: list[str]) -> tuple[np.ndarray, list[np.ndarray], float]:
    ex = pipeline.extract(data, names, with_variants=True)
    vec = next(v for v in ex.vectors if v.signal == "pdq")
    return bits(vec.vector), [bits(v.vector) for _n, v in ex.variants["pdq"]], float(vec.quality or 0)


def suites(blobs: list[bytes], names: list[str]) -> None:
    ours, old, dihedral, quality = [], [], [], []
    for data in blobs:
        rgb = reference_rgb(data)
        ref, ref_quality = pdqhash.compute(rgb)
        ref_variants, _ = pdqhash.compute_dihedral(rgb)
        mine, variants, q = reunite_pdq(data, names)
        ours.append(distance(mine, ref))
        quality.append(abs(round(q * 100) - ref_quality))
        dihedral.append(max(distance(v, r) for v, r in zip(variants, ref_variants, strict=True)))
        small = images.load(data, max_side=hashes.PDQ_SIDE, grey=True).shrunk(hashes.PDQ_SIDE)
        old.append(distance(pdqhash.compute(np.ascontiguousarray(small.rgb))[0], ref))
    print(f"suite photos > 256 px: {len(blobs)} (copydet gallery, venue gallery and queries)")
    print(summary("reunite PDQ vs pdqhash.compute(full decode)", ours))
    print(summary("old: pdqhash.compute on the 256-px copy vs full decode", old))
    print(summary("reunite dihedral variants, worst of 8, vs compute_dihedral", dihedral))
    print(f"{'quality: |reunite - reference| (0-100)':58s} mean {np.mean(quality):5.2f}  max {max(quality)}")


def published(root: Path) -> dict[str, str]:
    out = {}
    for sheet in sorted(root.glob("expected-*.csv")):
        for line in sheet.read_text().splitlines():
            digest, _quality, path = line.strip().split(",")
            out[path] = digest
    return out


def hex_bits(digest: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(digest), dtype=np.uint8))


def reference_images(root: Path, names: list[str]) -> None:
    expected = published(root)
    ours, full = [], []
    for path, digest in expected.items():
        data = (root / path).read_bytes()
        want = hex_bits(digest)
        ours.append(distance(reunite_pdq(data, names)[0], want))
        full.append(distance(pdqhash.compute(reference_rgb(data))[0], want))
    print(f"ThreatExchange pdq/data images: {len(expected)}, against their published hashes")
    print(summary("reunite PDQ", ours))
    print(summary("pdqhash.compute on the full decode", full))

    dih = sorted((root / "dih").glob("*.jpg"))
    if len(dih) != 8:
        return
    _mine, variants, _q = reunite_pdq(dih[0].read_bytes(), names)
    ref_variants, _ = pdqhash.compute_dihedral(reference_rgb(dih[0].read_bytes()))
    print("dihedral files of the bridge photo: each file's hash vs the original's variant of its symmetry")
    for i, path in enumerate(dih):
        data = path.read_bytes()
        mine = reunite_pdq(data, names)[0]
        ref = pdqhash.compute(reference_rgb(data))[0]
        print(f"  {path.name:28s} reunite {distance(mine, variants[i]):3d}   "
              f"reference {distance(ref, ref_variants[i]):3d}")


def _old_pdq(data: bytes, with_variants: bool) -> np.ndarray:
    rgb = np.ascontiguousarray(images.load(data, max_side=hashes.PDQ_SIDE, grey=True)
                               .shrunk(hashes.PDQ_SIDE).rgb)
    if with_variants:
        return np.array(pdqhash.compute_dihedral(rgb)[0])
    return pdqhash.compute(rgb)[0]


def _new_pdq(data: bytes, with_variants: bool, names: list[str]) -> np.ndarray:
    mine, variants, _q = reunite_pdq(data, names)
    return np.array(variants) if with_variants else mine


def copy_replay(suite: Path, names: list[str]) -> None:
    """PDQ-only copy detection on copydet: hits, wrong labels and false accepts per radius."""
    with (suite / "gallery.csv").open() as f:
        gallery = list(csv.DictReader(f))
    with (suite / "queries.csv").open() as f:
        queries = list(csv.DictReader(f))
    labels = [g["label"] for g in gallery]
    ways = {"old (pdqhash on the 256-px copy)": lambda d, v: _old_pdq(d, v),
            "new (reunite)": lambda d, v: _new_pdq(d, v, names)}
    print(f"PDQ-only copy replay on copydet: {len(gallery)} gallery photos, {len(queries)} queries")
    for way, fn in ways.items():
        known = np.array([fn((suite / g["path"]).read_bytes(), False) for g in gallery]).astype(bool)
        hits = {31: 0, 70: 0}
        wrong = {31: 0, 70: 0}
        impostor = []
        for q in queries:
            variants = fn((suite / q["path"]).read_bytes(), True).astype(bool)
            nearest = (variants[:, None, :] != known[None]).sum(-1).min(0)
            best = int(nearest.argmin())
            if not q["label"]:
                impostor.append(int(nearest[best]))
                continue
            for radius in hits:
                if nearest[best] <= radius:
                    if labels[best] == q["label"]:
                        hits[radius] += 1
                    else:
                        wrong[radius] += 1
        mated = len(queries) - len(impostor)
        print(f"  {way:34s} mated found <=31: {hits[31]}/{mated}, <=70: {hits[70]}/{mated}, "
              f"wrong label <=70: {wrong[70]}; non-mated nearest: min {min(impostor)}, "
              f"<=70: {sum(d <= 70 for d in impostor)}, <=92 (review): {sum(d <= 92 for d in impostor)}"
              f" of {len(impostor)}")


def throughput(blobs: list[bytes], names: list[str], repeat: int) -> None:
    ratios, ours_rates, naive_rates = [], [], []
    for _ in range(repeat):  # interleaved so both see the same machine load
        t_naive = timed(naive, blobs)
        t_ours = timed(lambda b: pipeline.extract(b, names), blobs)
        naive_rates.append(len(blobs) / t_naive)
        ours_rates.append(len(blobs) / t_ours)
        ratios.append(t_naive / t_ours)
    print(f"throughput on these {len(blobs)} photos: reunite {statistics.median(ours_rates):.1f} images/s, "
          f"naive peer {statistics.median(naive_rates):.1f} images/s, ratio {statistics.median(ratios):.2f}x "
          f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite-root", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--pdq-data", type=Path, default=ROOT.parent / "shared" / "peers" / "pdq")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copydet", action="store_true", help="also replay PDQ-only copy detection")
    args = parser.parse_args()
    import cv2
    cv2.setNumThreads(1)

    names = [s.name for s in signals.select(["hashes"])]
    blobs = suite_photos(args.suite_root)
    suites(blobs, names)
    if args.pdq_data.is_dir():
        reference_images(args.pdq_data, names)
    if args.copydet:
        copy_replay(args.suite_root / "copydet", names)
    throughput(blobs, names, args.repeat)


if __name__ == "__main__":
    main()
