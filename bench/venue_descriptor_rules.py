"""Room-descriptor variants and query-adaptive decisions on the venues suite, offline, in one run.

    OMP_NUM_THREADS=1 python bench/venue_references.py ../shared/bench/venues --out /tmp/vref
    OMP_NUM_THREADS=1 python bench/room_net_variants.py ../shared/bench/venues --out /tmp/rnv
    OMP_NUM_THREADS=1 python bench/venue_descriptor_rules.py ../shared/bench/venues \\
        --references /tmp/vref/references_evidence.jsonl --vectors /tmp/rnv/vectors.npz \\
        --key 'lite0@448/p1/features' [--key ...] [--maps /tmp/maps_lite0_448.npz]

Why: issue 22 asks whether the learned room descriptor can lift recall at the
default (the venues that show another wall of the room) through how it is
aggregated over a venue's references, query expansion, PCA-whitening on the
bank, regional (R-MAC style) matching of a wall seen in part, or a decision
whose chance estimate adapts to the query. Every variant here is scored the
same way, from the per-photo evidence of bench/venue_references.py (inliers,
VLAD similarity, colour; every query against every gallery photo):

- the ranking: inliers + 25 x VLAD + 20 x colour + 25 x max(c - 0.5, 0) per
  photo, each venue its best photo (the shipped searcher), where c is the
  variant's cosine mapped without labels onto the shipped descriptor's scale
  (same mean and spread over all query x gallery pairs), so that no weight is
  fitted per variant; top-1 / top-5 need no fit;
- the decision: the shipped rule (margin over max(runner-up, floor 29)),
  its margin fitted, OR a second path on the descriptor (the first venue's
  cosine over max(runner-up's cosine, a) by at least m), with a and m fitted,
  within 0.5% false accepts at every simulated bank size of 2-73 venues, in
  sample and leave-one-place-out / leave-one-dataset-out;
- query-adaptive chance: the margin over max(runner-up, floor, a statistic of
  the other venues' evidence for this query: median + k, mean + k x sd) or
  divided by their spread;
- the decision's fusion weights (VLAD and colour) with floor and margin
  fitted, held out by place and by source dataset;
- what a venue's second reference photo is worth: the shipped ranking and
  decision (nothing refitted) with one of the two references of every
  two-reference venue left out of the bank (``--references-only`` runs
  just this part).

``--maps`` caches Lite0's 448 px head maps with the people mask's cell weights
(computed on the first run), and those of the mirrored photos, for the regional
and test-time flip variants.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BANK_SIZES = (2, 3, 5, 10, 20, 40)
DRAWS = 30
BUDGET = 0.005
VLAD_W, COLOUR_W, NET_W, NET_BASE = 25.0, 20.0, 25.0, 0.5
FLOOR, MARGIN = 29.0, 3.365  # the shipped decision (matcher/defaults.json, scene)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class Suite:
    """Per-photo evidence as (queries, gallery photos) arrays, simulated banks, held-out groups."""

    def __init__(self, suite: Path, references: Path) -> None:
        gallery = read_csv(suite / "gallery.csv")
        self.photos = [g["path"] for g in gallery]
        self.venues = sorted({g["label"] for g in gallery})
        vi = {v: i for i, v in enumerate(self.venues)}
        self.photo_venue = np.array([vi[g["label"]] for g in gallery])
        self.rows = [json.loads(line) for line in references.read_text().splitlines() if line.strip()]
        q, g = len(self.rows), len(self.photos)
        pi = {p: i for i, p in enumerate(self.photos)}
        self.inliers, self.sim, self.colour, self.net = (np.zeros((q, g)) for _ in range(4))
        for qi, row in enumerate(self.rows):
            for c in row["candidates"]:
                j = pi[c["label"]]
                self.inliers[qi, j], self.sim[qi, j] = c["inliers"], c["similarity"]
                self.colour[qi, j], self.net[qi, j] = c["colour"], c["net"]
        self.truth = np.array([vi[r["label"]] if r["label"] else -1 for r in self.rows])
        rng = np.random.default_rng(0)
        banks = [np.ones(len(self.venues), bool)]
        for k in BANK_SIZES:
            for _ in range(DRAWS):
                m = np.zeros(len(self.venues), bool)
                m[rng.choice(len(self.venues), k, replace=False)] = True
                banks.append(m)
        self.banks = np.stack(banks)
        self.size = self.banks.sum(axis=1)

    def fused(self, vlad_w: float = VLAD_W, colour_w: float = COLOUR_W) -> np.ndarray:
        return self.inliers + vlad_w * np.maximum(self.sim, 0) + colour_w * np.maximum(self.colour, 0)

    def per_venue(self, rank_photo: np.ndarray, decide_photo: np.ndarray, *extra: np.ndarray
                  ) -> list[np.ndarray]:
        """Each venue's best photo by ``rank_photo``: its rank key, decision evidence and ``extra`` values."""
        shape = (len(self.rows), len(self.venues))
        out = [np.full(shape, -np.inf) for _ in range(2 + len(extra))]
        for j, v in enumerate(self.photo_venue):
            better = rank_photo[:, j] > out[0][:, v]
            for arr, src in zip(out, (rank_photo, decide_photo, *extra), strict=True):
                arr[better, v] = src[better, j]
        return out

    def venue_max(self, photo: np.ndarray, how: str = "max") -> np.ndarray:
        out = np.full((len(self.rows), len(self.venues)), -np.inf)
        for v in range(len(self.venues)):
            cols = self.photo_venue == v
            out[:, v] = photo[:, cols].max(axis=1) if how == "max" else photo[:, cols].mean(axis=1)
        return out

    def groups(self, hold_out: str) -> np.ndarray:
        return np.array([f"nonmated-{i}" if not r["label"] else
                         (r["label"].split("_")[0] if hold_out == "dataset" else r["label"])
                         for i, r in enumerate(self.rows)])


class Banked:
    """The first-ranked venue's decision evidence (and the best other's) in every simulated bank."""

    def __init__(self, s: Suite, ranked: np.ndarray, evidence: np.ndarray,
                 *values: np.ndarray) -> None:
        rows = np.arange(len(s.rows))
        first, e1, e2, others = [], [], [], []
        self.v1: list[list[np.ndarray]] = [[] for _ in values]
        self.v2: list[list[np.ndarray]] = [[] for _ in values]
        for mask in s.banks:
            r = np.where(mask[None], ranked, -np.inf)
            e = np.where(mask[None], evidence, -np.inf)
            f = np.argmax(r, axis=1)
            o = e.copy()
            o[rows, f] = -np.inf
            first.append(f)
            e1.append(e[rows, f])
            e2.append(o.max(axis=1))
            others.append(o)
            for i, val in enumerate(values):
                d = np.where(mask[None], val, -np.inf)
                self.v1[i].append(d[rows, f])
                d[rows, f] = -np.inf
                self.v2[i].append(d.max(axis=1))
        self.first, self.e1, self.e2 = np.stack(first), np.stack(e1), np.stack(e2)
        self.others = others  # per bank: (queries, venues) other venues' evidence (-inf: not in the bank)
        self.right = (self.first == s.truth[None]) & (s.truth[None] >= 0) & s.banks[:, np.maximum(s.truth, 0)]
        self.size = s.size


def lowest_threshold(score: np.ndarray, also: np.ndarray, b: Banked, cols: np.ndarray) -> float:
    """Smallest threshold on ``score`` such that (score >= t) | also keeps the budget at every size."""
    wrong = ~b.right
    t = 0.0
    for k in np.unique(b.size):
        sel = b.size == k
        w, sc, x = wrong[sel][:, cols], score[sel][:, cols], also[sel][:, cols]
        allowed = int(np.floor(BUDGET * w.size + 1e-9)) - int((w & x).sum())
        if allowed < 0:
            return np.inf
        values = np.sort(sc[w & ~x & np.isfinite(sc)])[::-1]
        if len(values) > allowed:
            t = max(t, float(np.nextafter(values[allowed], np.inf)))
    return t


Family = list[tuple[object, np.ndarray, np.ndarray]]  # (parameters, score, also-accepted)


def held_out(family: Family, b: Banked, groups: np.ndarray) -> dict:
    """Fit (most right accepts within the budget) on all queries and with each group held out."""
    def fit(cols: np.ndarray) -> tuple[int, object, np.ndarray]:
        best: tuple[int, object, np.ndarray] | None = None
        for params, score, also in family:
            t = lowest_threshold(score, also, b, cols)
            if not np.isfinite(t):
                continue
            acc = (score >= t) | also
            n = int((acc[0] & b.right[0])[cols].sum())
            if best is None or n > best[0]:
                best = (n, (params, round(t, 4)), acc)
        if best is None:  # nothing keeps the budget on these queries: no match at all
            return 0, None, np.zeros_like(b.right)
        return best
    n, params, _ = fit(np.arange(b.right.shape[1]))
    held = np.zeros_like(b.right)
    for g in np.unique(groups):
        h = groups == g
        held[:, h] = fit(np.nonzero(~h)[0])[2][:, h]
    wrong = held & ~b.right
    return {"in_sample": n, "params": str(params), "held_out": int((held[0] & b.right[0]).sum()),
            "held_out_false_accepts": int(wrong[0].sum()),
            "held_out_worst_bank_pct": round(100 * max(float(wrong[b.size == k].mean())
                                                       for k in np.unique(b.size)), 2)}


def shipped_rule(b: Banked, floor: float = FLOOR) -> np.ndarray:
    return b.e1 - np.maximum(b.e2, floor)


def descriptor_family(b: Banked) -> Family:
    """Shipped floor, margin fitted, OR the descriptor's lead over max(runner-up's cosine, a) >= m."""
    lead = shipped_rule(b)
    d1, d2 = np.stack(b.v1[0]), np.stack(b.v2[0])
    family: Family = [("shipped alone", lead, np.zeros_like(b.right))]
    for a in np.arange(0.5, 1.0, 0.05):
        for m in np.arange(0.0, 0.3, 0.02):
            family.append(((round(a, 2), round(m, 2)), lead, (d1 - np.maximum(d2, a)) >= m))
    return family


def topk(s: Suite, ranked: np.ndarray) -> tuple[int, int]:
    order = np.argsort(-ranked, axis=1)[:, :5]
    mated = s.truth >= 0
    return (int((order[:, 0] == s.truth)[mated].sum()),
            int(np.array([t in o for t, o in zip(s.truth, order, strict=True)])[mated].sum()))


def score_descriptor(s: Suite, name: str, cos: np.ndarray, aggregate: str = "best photo") -> dict:
    """Ranking and decision with ``cos`` (queries x gallery photos) as the descriptor."""
    spread = float(cos.std())
    # On the shipped descriptor's scale (no descriptor at all: no term).
    c = (cos - cos.mean()) / spread * s.net.std() + s.net.mean() if spread > 0 else np.zeros_like(cos)
    fused = s.fused()
    if aggregate == "best photo":
        ranked, evidence = s.per_venue(fused + NET_W * np.maximum(c - NET_BASE, 0), fused)
    else:  # the venue's mean cosine over its references beside its best verified photo
        ranked, evidence = s.per_venue(fused, fused)
        ranked = ranked + NET_W * np.maximum(s.venue_max(c, "mean") - NET_BASE, 0)
    b = Banked(s, ranked, evidence, s.venue_max(c))
    top1, top5 = topk(s, ranked)
    fam = descriptor_family(b)
    alone = topk(s, s.venue_max(cos)) if spread > 0 else (0, 0)
    out = {"descriptor": name, "aggregate": aggregate, "top1": top1, "top5": top5,
           "descriptor_alone_top1_top5": list(alone)}
    for hold in ("place", "dataset"):
        out[f"recall_{hold}"] = held_out(fam, b, s.groups(hold))
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def alpha_qe(qv: np.ndarray, gv: np.ndarray, k: int, alpha: float = 3.0) -> np.ndarray:
    """Query expansion: the query plus its k nearest gallery vectors weighted by cosine^alpha."""
    sims = qv @ gv.T
    out = qv.copy()
    for i, row in enumerate(np.argsort(-sims, axis=1)[:, :k]):
        for j in row:
            out[i] += max(sims[i, j], 0.0) ** alpha * gv[j]
    return unit(out)


def whiten(qv: np.ndarray, gv: np.ndarray, dims: int, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """PCA-whitening fitted on the gallery (the bank, label-free), eigenvalues^(1 - shrink)."""
    mu = gv.mean(axis=0)
    _u, sv, vt = np.linalg.svd(gv - mu, full_matrices=False)
    proj = vt[:dims].T / ((sv[:dims] / np.sqrt(len(gv))) ** (1 - shrink) + 1e-6)
    return unit((qv - mu) @ proj), unit((gv - mu) @ proj)


def regions(fmap: np.ndarray, keep: np.ndarray, levels: tuple[int, ...]) -> np.ndarray:
    """Masked-mean vectors of R-MAC style square regions (level L: L regions across the short side)."""
    _c, h, w = fmap.shape
    fmap = np.maximum(fmap.astype(np.float32), 0)
    out = []
    for level in levels:
        if level == 0:
            boxes = [(0, h, 0, w)]
        else:
            side = max(1, int(np.ceil(2 * min(h, w) / (level + 1))))
            ys = np.unique(np.linspace(0, h - side, level if h <= w else level + 1).round().astype(int))
            xs = np.unique(np.linspace(0, w - side, level + 1 if w >= h else level).round().astype(int))
            boxes = [(y, y + side, x, x + side) for y in ys for x in xs]
        for y0, y1, x0, x1 in boxes:
            cw = keep[y0:y1, x0:x1]
            if cw.sum() < 0.3 * cw.size:  # mostly a person: not a view of the room
                continue
            out.append((fmap[:, y0:y1, x0:x1] * cw[None]).sum(axis=(1, 2)) / cw.sum())
    if not out:
        out.append(fmap.mean(axis=(1, 2)))
    return unit(np.stack(out))


def regional_cosines(s: Suite, maps: dict, levels: tuple[int, ...], how: str) -> np.ndarray:
    """Query x photo similarity: the best region pair, or the mean of each side's best matches."""
    qr = [regions(maps["m:" + r["query"]], maps["k:" + r["query"]], levels) for r in s.rows]
    gr = [regions(maps["m:" + p], maps["k:" + p], levels) for p in s.photos]
    out = np.zeros((len(qr), len(gr)))
    for i, a in enumerate(qr):
        for j, g in enumerate(gr):
            sims = a @ g.T
            out[i, j] = sims.max() if how == "best pair" else 0.5 * (sims.max(1).mean() + sims.max(0).mean())
    return out


def cache_maps(suite: Path, target: Path, flipped: bool = False) -> dict:
    """Lite0 448 px head maps (float16) and people-mask cell weights of every suite photo.

    ``flipped``: the maps of the mirrored photos, their cell weights mirrored from
    ``target``'s (the mask commutes with the mirror; ``target`` is made first).
    """
    if flipped:
        plain = cache_maps(suite, target)
        target = target.with_name(target.stem + "_flipped.npz")
    if not target.exists():
        import cv2

        from indexer import images
        from indexer.scene import features as local
        from indexer.scene import room_net
        from indexer.signals.scene import scene_features
        cv2.setNumThreads(1)
        net = room_net.RoomNetSignal("lite0", 448)
        saved = {}
        for row in [*read_csv(suite / "gallery.csv"), *read_csv(suite / "queries.csv")]:
            picture = images.load(suite / row["path"])
            rgb = picture.shrunk(local.FEATURE_SIDE).rgb
            if flipped:
                fmap = net.feature_map(np.ascontiguousarray(rgb[:, ::-1]))
                keep = np.ascontiguousarray(plain["k:" + row["path"]][:, ::-1])
            else:
                _feats, mask = scene_features(picture)
                fmap = net.feature_map(rgb)
                keep = (np.ones(fmap.shape[1:], np.float32) if mask.keep.all()
                        else room_net.cell_weights(mask.keep, fmap.shape[1:]))
            saved["m:" + row["path"]], saved["k:" + row["path"]] = fmap.astype(np.float16), keep
        np.savez(target, **saved)
    data = np.load(target)
    return {k: data[k] for k in data.files}


def pooled(maps: dict, names: list[str]) -> np.ndarray:
    """Masked mean (GeM p = 1, as shipped) of each photo's map, L2-normalised."""
    out = []
    for name in names:
        fmap, keep = np.maximum(maps["m:" + name].astype(np.float32), 0), maps["k:" + name]
        w = keep if keep.sum() > 0 else np.ones_like(keep)
        out.append((fmap * w[None]).sum(axis=(1, 2)) / w.sum())
    return unit(np.stack(out))


def adaptive_rules(s: Suite) -> list[dict]:
    """The shipped ranking, decided with a chance estimate that adapts to the query's other venues."""
    fused = s.fused()
    ranked, evidence = s.per_venue(fused + NET_W * np.maximum(s.net - NET_BASE, 0), fused)
    b = Banked(s, ranked, evidence)
    stats = {"median": [], "mean": [], "sd": []}
    for mask, o in zip(s.banks, b.others, strict=True):
        x = np.where(np.isfinite(o), o, np.nan)
        stats["median"].append(np.nanmedian(x, axis=1))
        stats["mean"].append(np.nanmean(x, axis=1))
        stats["sd"].append(np.nanstd(x, axis=1) if mask.sum() > 2 else np.zeros(len(s.rows)))
    med, mu, sd = (np.stack(stats[k]) for k in ("median", "mean", "sd"))
    none = np.zeros_like(b.right)
    families: dict[str, Family] = {
        "margin over max(runner-up, floor) (shipped form)":
            [(f, shipped_rule(b, f), none) for f in range(24, 36)],
        "margin over max(runner-up, floor, median of the others + k)":
            [((f, k), b.e1 - np.maximum(np.maximum(b.e2, f), med + k), none)
             for f in range(24, 34) for k in (0, 2, 4, 6, 8, 10)],
        "margin over max(runner-up, floor, mean + k sd of the others)":
            [((f, k), b.e1 - np.maximum(np.maximum(b.e2, f), mu + k * sd), none)
             for f in range(24, 34) for k in (1, 2, 3, 4)],
        "margin over max(runner-up, floor) / max(sd of the others, s0)":
            [((f, s0), shipped_rule(b, f) / np.maximum(sd, s0), none)
             for f in range(25, 34) for s0 in (0.5, 1, 2, 3, 4, 6)],
    }
    out = []
    for name, fam in families.items():
        row: dict = {"rule": name}
        for hold in ("place", "dataset"):
            row[f"recall_{hold}"] = held_out(fam, b, s.groups(hold))
        out.append(row)
    return out


def weight_rows(s: Suite) -> list[dict]:
    """The decision's VLAD and colour weights, floor and margin fitted, held out by place and dataset."""
    out = []
    for vw, cw in ((25, 20), (25, 10), (25, 0), (50, 0), (0, 0), (10, 20), (50, 10)):
        fused = s.fused(vw, cw)
        ranked, evidence = s.per_venue(fused + NET_W * np.maximum(s.net - NET_BASE, 0), fused)
        b = Banked(s, ranked, evidence)
        centre = int(cw * 0.8 + vw * 0.1)
        fam: Family = [(f, shipped_rule(b, f), np.zeros_like(b.right))
                       for f in range(max(5, centre - 5), centre + 40)]
        row: dict = {"vlad_weight": vw, "colour_weight": cw, "top1": topk(s, ranked)[0]}
        for hold in ("place", "dataset"):
            row[f"recall_{hold}"] = held_out(fam, b, s.groups(hold))
        out.append(row)
    return out


def reference_rows(s: Suite) -> list[dict]:
    """Recall by the venue's reference count, and with each two-reference venue's first or second left out."""
    counts = np.bincount(s.photo_venue, minlength=len(s.venues))
    mated = s.truth >= 0
    two = mated & (counts[np.maximum(s.truth, 0)] == 2)
    one = mated & (counts[np.maximum(s.truth, 0)] == 1)
    rank_photo = s.fused() + NET_W * np.maximum(s.net - NET_BASE, 0)
    out = []
    cases = (("every reference", None), ("first of two left out", 0), ("second of two left out", 1))
    for name, drop in cases:
        keep = np.ones(len(s.photos), bool)
        if drop is not None:
            for v in np.nonzero(counts == 2)[0]:
                keep[np.nonzero(s.photo_venue == v)[0][drop]] = False
        ranked, evidence = s.per_venue(np.where(keep[None], rank_photo, -np.inf),
                                       np.where(keep[None], s.fused(), -np.inf))
        b = Banked(s, ranked, evidence)
        acc = shipped_rule(b) >= MARGIN
        hit = acc & b.right
        wrong = acc & ~b.right
        out.append({"bank": name, "two_reference_venues_queries": int(two.sum()),
                    "their_top1": int(b.right[0][two].sum()), "their_recall": int(hit[0][two].sum()),
                    "one_reference_venues_queries": int(one.sum()),
                    "one_reference_recall": int(hit[0][one].sum()), "suite_recall": int(hit[0][mated].sum()),
                    "false_accept_pct_by_bank_size": {int(k): round(100 * float(wrong[b.size == k].mean()), 2)
                                                      for k in np.unique(b.size)}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--references", type=Path, required=True, help="references_evidence.jsonl")
    parser.add_argument("--vectors", type=Path, action="append", default=[],
                        help="vectors.npz of bench/room_net_variants.py (repeatable; later files win)")
    parser.add_argument("--key", action="append", default=[], help="variant@side/p/map (repeatable)")
    parser.add_argument("--maps", type=Path, help="Lite0 448 px maps cache (.npz) for the regional variants")
    parser.add_argument("--out", type=Path, help="Write the report (JSON) here too.")
    parser.add_argument("--references-only", action="store_true", help="Only the reference-count rows.")
    parser.add_argument("--maps-only", action="store_true", help="Only the variants of the maps cache.")
    args = parser.parse_args()
    suite = args.suite.resolve()
    s = Suite(suite, args.references)
    if args.references_only:
        for row in reference_rows(s):
            print(json.dumps(row), flush=True)
        return
    report: dict = {"descriptors": []}

    def emit(row: dict) -> None:
        report["descriptors"].append(row)
        print(json.dumps(row), flush=True)

    if not args.maps_only:
        emit(score_descriptor(s, "none", np.zeros_like(s.net)))
        emit(score_descriptor(s, "shipped (evidence's scene_net)", s.net))
        emit(score_descriptor(s, "shipped (evidence's scene_net)", s.net, "venue mean"))
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in [] if args.maps_only else args.vectors:
        data = np.load(path)
        index = {str(p): i for i, p in enumerate(data["_paths"])}
        for key in args.key:
            if key in data.files:
                v = data[key]
                vectors[key] = (np.stack([v[index[r["query"]]] for r in s.rows]),
                                np.stack([v[index[p]] for p in s.photos]))
    variants: list[tuple[str, Callable[[], np.ndarray]]] = []
    for key, (qv, gv) in vectors.items():
        variants.append((key, lambda qv=qv, gv=gv: qv @ gv.T))
        for k in (1, 2):
            variants.append((f"{key} alpha-QE k={k}", lambda qv=qv, gv=gv, k=k: alpha_qe(qv, gv, k) @ gv.T))
        for dims in (16, 64):
            for shrink in (0.0, 0.5):
                def whitened(qv=qv, gv=gv, dims=dims, shrink=shrink) -> np.ndarray:
                    a, g = whiten(qv, gv, dims, shrink)
                    return a @ g.T
                variants.append((f"{key} PCA-whitened on the gallery, {dims} dims, shrink {shrink:g}",
                                 whitened))
    for name, cos in variants:
        c = cos()
        emit(score_descriptor(s, name, c))
        if "QE" not in name and "whitened" not in name:
            emit(score_descriptor(s, name, c, "venue mean"))
    if args.maps:
        maps = cache_maps(suite, args.maps)
        flips = cache_maps(suite, args.maps, flipped=True)
        queries = [r["query"] for r in s.rows]
        q0, g0 = pooled(maps, queries), pooled(maps, s.photos)
        q1, g1 = pooled(flips, queries), pooled(flips, s.photos)
        emit(score_descriptor(s, "lite0@448 from the maps cache", q0 @ g0.T))
        summed = unit(q0 + q1) @ unit(g0 + g1).T
        emit(score_descriptor(s, "lite0@448 + mirrored photo, vectors summed", summed))
        emit(score_descriptor(s, "lite0@448, best of query and its mirror", np.maximum(q0 @ g0.T, q1 @ g0.T)))
        for levels in ((0,), (1, 2), (2, 3), (0, 2, 3)):
            for how in ("best pair", "mutual best mean"):
                emit(score_descriptor(s, f"lite0@448 regions levels {levels}, {how}",
                                      regional_cosines(s, maps, levels, how)))
    if args.maps_only:
        return
    report["adaptive_chance"] = adaptive_rules(s)
    report["decision_weights"] = weight_rows(s)
    report["references"] = reference_rows(s)
    for row in report["adaptive_chance"] + report["decision_weights"] + report["references"]:
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
