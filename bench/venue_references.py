"""Every query's raw evidence against every gallery *photo* of the venues suite, for offline rescoring.

    OMP_NUM_THREADS=1 python bench/venue_references.py ../shared/bench/venues --out /tmp/vref
    python bench/venue_references.py ../shared/bench/venues --out /tmp/vref --rescore /tmp/rnv/vectors.npz \
        --key 'lite2@448/p1/features'

Why: the venue evidence of bench/venue_bench.py (``ours_evidence.jsonl``) is
per venue, its best reference chosen with the learned descriptor's cosine
(``scene_net``) in the ranking; comparing descriptors (bench/room_net_variants.py)
on the fused decision needs the verified evidence of each reference apart.
The first form indexes the gallery into a venue bank in which every photo is
its own venue (so the searcher returns one candidate per reference: inliers,
VLAD similarity, colour and the shipped descriptor's cosine; the vocabulary,
trained on the same photos, is the same) and writes ``references.jsonl``.
The second form replaces the descriptor's cosine by another one
(``vectors.npz`` of room_net_variants.py, key = variant@side/p/map) and writes
an ``ours_evidence.jsonl`` per venue for bench/calibrate_venues.py: each
venue's reference is the one the shipped searcher would keep (the best
inliers + 25 x VLAD + 20 x colour + 25 x max(cosine - 0.5, 0)).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.venue_bench import build_bank, evidence_row, read_csv, with_shortlist  # noqa: E402
from matcher.search.query import Matcher  # noqa: E402
from matcher.search.venues import SceneSearcher  # noqa: E402

# The shipped ranking's weights (matcher/defaults.json, section scene), used to pick a venue's reference.
VLAD_W, COLOUR_W, NET_W, NET_BASE = 25.0, 20.0, 25.0, 0.5


def collect(suite: Path, out: Path) -> None:
    gallery, queries = read_csv(suite / "gallery.csv"), read_csv(suite / "queries.csv")
    per_photo = out / "per_photo"
    per_photo.mkdir(parents=True, exist_ok=True)
    with (per_photo / "gallery.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows({"path": str(suite / g["path"]), "label": g["path"]} for g in gallery)
    store, bank, _index_s = build_bank(per_photo, out / "data")
    matcher = Matcher(store)
    everything = SceneSearcher(store, with_shortlist(matcher.defaults, 1_000_000))
    with (out / "references_evidence.jsonl").open("w") as raw:
        for q in queries:
            query = matcher.prepare((suite / q["path"]).read_bytes(), [bank])
            every_photo = everything.search(query, bank, top=1_000_000)
            raw.write(json.dumps({"query": q["path"], "label": q["label"], "transform": q["transform"],
                                  "candidates": [evidence_row(c) for c in every_photo]}) + "\n")


def rescore(suite: Path, out: Path, vectors: Path, key: str | None, net_w: float = NET_W,
            net_base: float = NET_BASE) -> Path:
    gallery = read_csv(suite / "gallery.csv")
    venue_of = {g["path"]: g["label"] for g in gallery}
    cos = None
    if key:
        data = np.load(vectors)
        paths = [str(p) for p in data["_paths"]]
        index = {p: i for i, p in enumerate(paths)}
        # "a+b": both vectors concatenated, each L2-normalised, with equal weight.
        parts = [data[k] for k in key.split("+")]
        vecs = np.concatenate(parts, axis=1) / np.sqrt(len(parts))
        cos = (index, vecs)
    name = (key or "shipped").replace("/", "_").replace("@", "_").replace("+", "_")
    target = out / f"evidence_{name}.jsonl"
    with (out / "references_evidence.jsonl").open() as src, target.open("w") as dst:
        for line in src:
            row = json.loads(line)
            best: dict[str, tuple[float, dict]] = {}
            for c in row["candidates"]:
                ref = c["label"]
                net = c["net"]
                if cos is not None:
                    index, vecs = cos
                    net = round(float(vecs[index[row["query"]]] @ vecs[index[ref]]), 4)
                fused = c["inliers"] + VLAD_W * max(c["similarity"], 0) + COLOUR_W * max(c["colour"], 0)
                rank = fused + net_w * max(net - net_base, 0) if net is not None else fused
                venue = venue_of[ref]
                if venue not in best or rank > best[venue][0]:
                    best[venue] = (rank, {**c, "label": venue, "net": net})
            cands = [c for _r, c in sorted(best.values(), key=lambda rc: -rc[0])]
            dst.write(json.dumps({**row, "candidates": cands}) + "\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rescore", type=Path, help="vectors.npz of bench/room_net_variants.py")
    parser.add_argument("--key", action="append", default=[], help="Which vectors (repeatable).")
    parser.add_argument("--net-weight", type=float, default=NET_W)
    parser.add_argument("--net-base", type=float, default=NET_BASE)
    args = parser.parse_args()
    suite = args.suite.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rescore is None:
        collect(suite, args.out)
        return
    for key in args.key or [None]:
        print(rescore(suite, args.out, args.rescore, key, args.net_weight, args.net_base))


if __name__ == "__main__":
    main()
