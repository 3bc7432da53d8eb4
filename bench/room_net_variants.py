"""The learned room descriptor alone, EfficientNet-Lite0 vs Lite1 vs Lite2 (and earlier maps), in one run.

    OMP_NUM_THREADS=1 python bench/room_net_variants.py ../shared/bench/venues --out /tmp/rnv

Every gallery and query photo of the venues suite is decoded and masked once
(the scene family's people mask, as indexing and search do), then embedded
by each network at each long side; beside the head's 1280-channel map the
last block outputs of stages 4 and 5 are pooled too (masked GeM), so that a
concatenation with an earlier map can be scored. Scores: per query, each
venue's best reference by cosine; top-1 / top-5 over the mated queries, and
the per-photo CPU time of each network (``time.process_time``). The vectors
are written to ``vectors.npz`` so that fused evidence can be rescored
offline without running the networks again.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import images  # noqa: E402
from indexer.scene import effnet_onnx, room_net  # noqa: E402
from indexer.scene import features as local  # noqa: E402
from indexer.signals.onnx_runtime import open_session  # noqa: E402
from indexer.signals.scene import scene_features  # noqa: E402

TAPS = (4, 5)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def pooled(maps: dict[str, np.ndarray], keep: np.ndarray, p: float, signed: bool = False
           ) -> dict[str, np.ndarray]:
    """Masked GeM of each map, L2-normalised.

    The stage outputs are linear bottlenecks (no ReLU): GeM clamps them at 0, ``signed``
    takes their plain masked mean instead (p ignored for them).
    """
    out = {}
    for name, fmap in maps.items():
        weights = None if keep.all() else room_net.cell_weights(keep, fmap.shape[1:])
        if signed and name != effnet_onnx.FEATURES:
            w = np.ones(fmap.shape[1:]) if weights is None or weights.sum() <= 0 else weights
            v = (fmap * w[None]).reshape(fmap.shape[0], -1).sum(axis=1) / w.sum()
        else:
            v = room_net.gem(np.maximum(fmap, 0), weights, p)
        out[name] = (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)
    return out


def run_maps(session, rgb: np.ndarray, side: int) -> dict[str, np.ndarray]:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(32, round(w * s)), max(32, round(h * s)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    x = ((small.astype(np.float32) / 255.0 - room_net.MEAN) / room_net.STD).transpose(2, 0, 1)[None]
    names = [effnet_onnx.FEATURES, *(f"stage{t}" for t in TAPS)]
    outs = session.run(names, {effnet_onnx.INPUT: np.ascontiguousarray(x)})
    return {n: o[0] for n, o in zip(names, outs, strict=True)}


def topk(q: np.ndarray, g: np.ndarray, g_labels: list[str], q_labels: list[str],
         mated: np.ndarray) -> tuple[int, int]:
    sims = q @ g.T
    venues = sorted(set(g_labels))
    col = {v: [i for i, lab in enumerate(g_labels) if lab == v] for v in venues}
    per_venue = np.stack([sims[:, col[v]].max(axis=1) for v in venues], axis=1)
    order = np.argsort(-per_venue, axis=1)
    top1 = top5 = 0
    for i in np.flatnonzero(mated):
        ranked = [venues[j] for j in order[i, :5]]
        top1 += ranked[0] == q_labels[i]
        top5 += q_labels[i] in ranked
    return top1, top5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="lite0,lite1,lite2")
    parser.add_argument("--sides", default="448")
    parser.add_argument("--gem", default="1")
    parser.add_argument("--signed-taps", action="store_true",
                        help="Pool the stage outputs by their signed mean instead of clamped GeM.")
    parser.add_argument("--limit", type=int, default=0, help="Only the first N queries (exploration).")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    suite = args.suite.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    gallery, queries = read_csv(suite / "gallery.csv"), read_csv(suite / "queries.csv")
    if args.limit:
        queries = queries[: args.limit]
    variants = args.variants.split(",")
    sides = [int(s) for s in args.sides.split(",")]
    ps = [float(p) for p in args.gem.split(",")]
    sessions = {v: open_session(effnet_onnx.cached_model(name=v, taps=TAPS), "bench") for v in variants}
    vectors: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, list[float]] = {}
    for row in [*gallery, *queries]:
        picture = images.load(suite / row["path"])
        _feats, mask = scene_features(picture)
        rgb = picture.shrunk(local.FEATURE_SIDE).rgb
        for v in variants:
            for side in sides:
                t = time.process_time()
                maps = run_maps(sessions[v], rgb, side)
                seconds.setdefault(f"{v}@{side}", []).append(time.process_time() - t)
                for p in ps:
                    for name, vec in pooled(maps, mask.keep, p, args.signed_taps).items():
                        vectors.setdefault(f"{v}@{side}/p{p:g}/{name}", []).append(vec)
    n = len(gallery)
    g_labels = [g["label"] for g in gallery]
    q_labels = [q["label"] for q in queries]
    mated = np.array([lab in set(g_labels) for lab in q_labels])
    stacked = {k: np.stack(v) for k, v in vectors.items()}
    np.savez_compressed(args.out / "vectors.npz", **stacked,
                        _paths=np.array([r["path"] for r in [*gallery, *queries]]))
    results = {}
    for key, allv in stacked.items():
        results[key] = topk(allv[n:], allv[:n], g_labels, q_labels, mated)
    # Concatenations of the head with an earlier map (each part L2-normalised, equal weight).
    for key in list(stacked):
        if not key.endswith(effnet_onnx.FEATURES):
            continue
        for t in TAPS:
            other = key.replace(effnet_onnx.FEATURES, f"stage{t}")
            cat = np.concatenate([stacked[key], stacked[other]], axis=1) / np.sqrt(2)
            results[key + f"+stage{t}"] = topk(cat[n:], cat[:n], g_labels, q_labels, mated)
    total = int(mated.sum())
    report = {"mated": total, "queries": len(queries),
              "cpu_s_per_photo": {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
                                  for k, v in seconds.items()},
              "top1_top5": {k: [a / total, b / total] for k, (a, b) in sorted(results.items())}}
    (args.out / "summary.json").write_text(json.dumps(report, indent=2))
    for k, (a, b) in sorted(results.items()):
        print(f"{k:45s} top-1 {a / total:.3f} ({a})  top-5 {b / total:.3f} ({b})")
    print(json.dumps(report["cpu_s_per_photo"], indent=1))


if __name__ == "__main__":
    main()
