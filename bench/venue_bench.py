"""Venue benchmark: ours vs PDQ nearest neighbour vs plain SIFT + RANSAC, in one run.

    OMP_NUM_THREADS=1 python bench/venue_bench.py ../shared/bench/venues --out bench/results/venues

Engines, each answering every query of the suite with ranked labels:

- ``ours``: `reunite`'s scene searcher on a venue bank indexed from gallery.csv
  (people masked, RootSIFT -> VLAD shortlist -> MAGSAC++ verification, the
  decision on the margin over the best other venue);
- ``pdq``: nearest gallery image by PDQ Hamming distance (match at <= 31 bits);
- ``sift_ransac``: the issue's baseline, over the whole gallery: 2,000 RootSIFT
  per image (OpenCV defaults, nothing masked), ratio test 0.8, RANSAC
  fundamental matrix (3 px), inlier count as score (match at >= 20 inliers,
  the usual rule of thumb; it has no calibration of its own).

Answers are scored by the suite's reference scorer (``score.py`` beside the
suite). Also written: ``ours_evidence.jsonl`` (raw inliers and similarities of
every shortlisted venue, for ``bench/calibrate_venues.py``) and
``summary.json`` with timings (CPU time, ``time.process_time``: wall time on a
shared machine measures the neighbours): per-query p50/p95 at the suite's
size, and the growth to 10,000 references (the VLAD search measured on 10,000
synthetic codes; ours verifies a fixed shortlist of references whatever the
bank's size, so that part does not grow; the baseline's grows linearly).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import images, ingest  # noqa: E402
from indexer.scene import vlad  # noqa: E402
from indexer.scene.room_net import NAME as ROOM_NET  # noqa: E402
from indexer.signals import base as signals  # noqa: E402
from indexer.signals.scene import SCENE  # noqa: E402
from indexer.store.store import Store  # noqa: E402
from indexer.store.vectors import FaissFloatIndex  # noqa: E402
from matcher.defaults import Defaults  # noqa: E402
from matcher.search.query import Matcher  # noqa: E402
from matcher.search.venues import SceneSearcher  # noqa: E402

PDQ_MATCH = 31
BASELINE_FEATURES = 2000
BASELINE_MATCH_INLIERS = 20
GROWTH_REFERENCES = 10_000


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def build_bank(suite: Path, data: Path) -> tuple[Store, object, float]:
    store = Store(data)
    bank = store.catalog.ensure_bank("venues", "venue")
    records = ingest.read_source(suite / "gallery.csv")
    t = time.process_time()
    report = ingest.index_records(store, bank, records, signals.resolve(["pdq", SCENE]))
    store.checkpoint()
    if report.failed:
        raise SystemExit(f"indexing failed for {report.failed} gallery images: {report.errors[:3]}")
    return store, bank, (time.process_time() - t) / max(1, report.indexed)


def run_ours(store: Store, bank: object, suite: Path, queries: list[dict[str, str]], out: Path,
             engine: str = "ours", evidence: bool = True) -> tuple[list[float], float]:
    """Answers and timings of the searcher as shipped, and every venue's evidence for calibration.

    The evidence comes from a second search of the same prepared query (its
    features are cached, so only the extra verifications cost) with a
    shortlist as large as the bank: calibrate_venues.py simulates smaller
    banks, in which every venue is shortlisted. It does not depend on the
    shortlist rule, so a run that only measures answers and times may skip it
    (``evidence=False``: half the run's CPU).
    """
    matcher = Matcher(store)
    searcher = next(s for s in matcher.searchers if isinstance(s, SceneSearcher))
    everything = SceneSearcher(store, with_shortlist(matcher.defaults, 1_000_000))
    t = time.process_time()
    searcher.bank_index(bank)  # train the vocabulary once, outside the query timings
    train_s = time.process_time() - t
    times = []
    raw_file = (out / f"{engine}_evidence.jsonl").open("w") if evidence else contextlib.nullcontext()
    with (out / f"{engine}.jsonl").open("w") as answers, raw_file as raw:
        for q in queries:
            data = (suite / q["path"]).read_bytes()
            t = time.process_time()
            query = matcher.prepare(data, [bank])
            found = searcher.search(query, bank, top=max(10, searcher_shortlist(matcher)))
            times.append(time.process_time() - t)
            answers.write(json.dumps({"query": q["path"], "candidates": [
                {"label": c.label, "score": c.score, "decision": c.decision} for c in found[:10]]}) + "\n")
            if not evidence:
                continue
            every_venue = everything.search(query, bank, top=1_000_000)
            raw.write(json.dumps({"query": q["path"], "label": q["label"], "transform": q["transform"],
                                  "candidates": [evidence_row(c) for c in every_venue]}) + "\n")
    return times, train_s


def with_shortlist(defaults: Defaults, shortlist: int) -> Defaults:
    raw = {**defaults.raw, "scene": {**defaults.section("scene"), "shortlist": shortlist}}
    if defaults.section("scene_sift"):
        raw["scene_sift"] = {**defaults.section("scene_sift"), "shortlist": shortlist}
    return Defaults(defaults.version, defaults.signals, raw)


@contextlib.contextmanager
def descriptor(enabled: bool) -> Iterator[None]:
    """With ``enabled`` False, index and search as before issue 22: no ``scene_net`` in the bank."""
    removed = None
    if not enabled and ROOM_NET in {s.name for s in signals.all_signals()}:
        removed = signals.get(ROOM_NET)
        signals.unregister(ROOM_NET)
    try:
        yield
    finally:
        if removed is not None:
            signals.register(removed)


def small_banks(suite: Path, gallery: list[dict[str, str]], queries: list[dict[str, str]],
                sizes: list[int], draws: int, work: Path, seed: int = 0,
                evidence: Path | None = None) -> dict[str, dict[str, float]]:
    """End to end in real banks of a few venues: false accepts and recall at the shipped defaults.

    calibrate_venues.py fits the decision on banks simulated from the full
    bank's evidence, with the full bank's vocabulary; a real small bank trains
    its vocabulary on its own few photos. This checks the fit where it
    matters most: photos of rooms the bank does not hold (most queries here).
    Every bank is built first and each query is prepared once for all of them
    (the features and the descriptor do not depend on the bank). With
    ``evidence``, every venue of every bank is verified for every query and
    written there (one line per query and bank, as ``ours_evidence.jsonl``
    plus the bank's draw and venues), so that calibrate_venues.py
    ``--real-banks`` can fit the decision on real small banks.
    """
    rng = np.random.default_rng(seed)
    labels = sorted({g["label"] for g in gallery})
    if max(sizes, default=0) > len(labels):
        raise SystemExit(f"--bank-sizes: the gallery has {len(labels)} venues, fewer than {max(sizes)}")
    built = []  # (size, draw, chosen, store, bank, searcher, every-venue searcher)
    for size in sizes:
        for draw in range(draws):
            chosen = {labels[i] for i in rng.choice(len(labels), size, replace=False)}
            folder = work / f"bank-{size}-{draw}"
            folder.mkdir(parents=True, exist_ok=True)
            manifest = folder / "gallery.csv"
            with manifest.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["path", "label"])
                writer.writeheader()
                writer.writerows({"path": str(suite / g["path"]), "label": g["label"]}
                                 for g in gallery if g["label"] in chosen)
            store = Store(folder / "data")
            bank = store.catalog.ensure_bank("venues", "venue")
            ingest.index_records(store, bank, ingest.read_source(manifest), signals.resolve([SCENE]))
            matcher = Matcher(store)
            searcher = next(s for s in matcher.searchers if isinstance(s, SceneSearcher))
            searcher.bank_index(bank)
            everything = SceneSearcher(store, with_shortlist(matcher.defaults, 1_000_000))
            built.append((size, draw, chosen, store, bank, searcher, everything))
    counts = {size: {"false": 0, "right": 0, "mated": 0, "total": 0} for size in sizes}
    prepare = Matcher(built[0][3]).prepare if built else None
    raw = evidence.open("w") if evidence is not None else contextlib.nullcontext()
    with raw as raw_file:
        for q in queries:
            assert prepare is not None
            query = prepare((suite / q["path"]).read_bytes(), [built[0][4]])
            for size, draw, chosen, _store, bank, searcher, everything in built:
                every_venue = everything.search(query, bank, top=1_000_000) if raw_file else None
                # A bank within the shortlist is searched whole either way: the same answer.
                whole = every_venue is not None and len(searcher.bank_index(bank)) <= \
                    searcher.params(bank, True).shortlist
                found = every_venue[:1] if whole and every_venue is not None else \
                    searcher.search(query, bank, top=1)
                holds = q["label"] in chosen
                accepted = bool(found) and found[0].decision == "match"
                correct = accepted and holds and found[0].label == q["label"]
                tally = counts[size]
                tally["total"] += 1
                tally["mated"] += holds
                tally["right"] += correct
                tally["false"] += accepted and not correct
                if every_venue is None:
                    continue
                raw_file.write(json.dumps({
                    "query": q["path"], "label": q["label"], "transform": q["transform"],
                    "bank_size": size, "draw": draw, "venues": sorted(chosen),
                    "candidates": [evidence_row(c) for c in every_venue]}) + "\n")
    out: dict[str, dict[str, float]] = {}
    for size in sizes:
        tally = counts[size]
        out[str(size)] = {"draws": draws, "queries": tally["total"], "false_accepts": tally["false"],
                          "false_accept_rate": tally["false"] / max(1, tally["total"]),
                          "mated": tally["mated"],
                          "recall_at_default": tally["right"] / max(1, tally["mated"])}
        print(f"bank of {size} venues: {out[str(size)]}", flush=True)
    return out


def evidence_row(c: object) -> dict[str, object]:
    """One venue's raw evidence, as calibrate_venues.py reads it."""
    e = c.evidence  # type: ignore[attr-defined]
    return {"label": c.label, "inliers": e["scene_inliers"],  # type: ignore[attr-defined]
            "similarity": e["scene_similarity"], "colour": e["scene_colour"],
            "net": e.get("scene_net_similarity")}


def searcher_shortlist(matcher: Matcher) -> int:
    return int(matcher.defaults.section("scene").get("shortlist", 20))


def run_pdq(suite: Path, gallery: list[dict[str, str]], queries: list[dict[str, str]], out: Path
            ) -> list[float]:
    from indexer.signals.hashes import PDQ

    def bits(path: Path) -> np.ndarray:
        return np.unpackbits(PDQ.extract(images.load(path, max_side=512))[0].vector)

    refs = np.stack([bits(suite / g["path"]) for g in gallery])
    labels = [g["label"] for g in gallery]
    times = []
    with (out / "pdq.jsonl").open("w") as answers:
        for q in queries:
            t = time.process_time()
            dist = (refs != bits(suite / q["path"])[None, :]).sum(axis=1)
            best: dict[str, int] = {}
            for label, d in zip(labels, dist, strict=True):
                best[label] = min(best.get(label, 257), int(d))
            ranked = sorted(best.items(), key=lambda kv: kv[1])[:10]
            times.append(time.process_time() - t)
            answers.write(json.dumps({"query": q["path"], "candidates": [
                {"label": label, "score": 1 - d / 256, "match": d <= PDQ_MATCH}
                for label, d in ranked]}) + "\n")
    return times


def baseline_features(path: Path, sift: cv2.SIFT) -> tuple[np.ndarray, np.ndarray]:
    gray = np.asarray(images.load(path).pil.convert("L"))
    kps, desc = sift.detectAndCompute(gray, None)
    if desc is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    desc = desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
    return np.array([k.pt for k in kps], np.float32), np.sqrt(desc).astype(np.float32)


def baseline_pair(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                  matcher: cv2.BFMatcher) -> int:
    if len(a[1]) < 8 or len(b[1]) < 8:
        return 0
    pairs = matcher.knnMatch(a[1], b[1], k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < 8:
        return 0
    p1 = a[0][[m.queryIdx for m in good]]
    p2 = b[0][[m.trainIdx for m in good]]
    _f, mask = cv2.findFundamentalMat(p1, p2, cv2.FM_RANSAC, 3.0, 0.99)
    return int(mask.sum()) if mask is not None else 0


def run_sift_ransac(suite: Path, gallery: list[dict[str, str]], queries: list[dict[str, str]],
                    out: Path) -> tuple[list[float], float]:
    sift = cv2.SIFT_create(nfeatures=BASELINE_FEATURES)
    bf = cv2.BFMatcher(cv2.NORM_L2)
    refs = [baseline_features(suite / g["path"], sift) for g in gallery]
    times, pair_times = [], []
    with (out / "sift_ransac.jsonl").open("w") as answers:
        for q in queries:
            t = time.process_time()
            feats = baseline_features(suite / q["path"], sift)
            best: dict[str, int] = {}
            for g, ref in zip(gallery, refs, strict=True):
                tp = time.process_time()
                inliers = baseline_pair(feats, ref, bf)
                pair_times.append(time.process_time() - tp)
                best[g["label"]] = max(best.get(g["label"], -1), inliers)
            ranked = sorted(best.items(), key=lambda kv: -kv[1])[:10]
            times.append(time.process_time() - t)
            answers.write(json.dumps({"query": q["path"], "candidates": [
                {"label": label, "score": float(n), "match": n >= BASELINE_MATCH_INLIERS}
                for label, n in ranked]}) + "\n")
    return times, float(np.mean(pair_times))


def vlad_search_growth(store: Store, bank: object, sizes: list[int]) -> dict[str, float]:
    """Time one VLAD search over ``n`` codes: the bank's own plus synthetic distractors."""
    searcher = SceneSearcher(store, Matcher(store).defaults)
    index = searcher.bank_index(bank)
    assert index.vocabulary is not None
    dim = index.vocabulary.size
    rng = np.random.default_rng(0)
    out = {}
    query = rng.normal(size=(1, dim)).astype(np.float32)
    for n in sizes:
        flat = FaissFloatIndex(dim)
        codes = rng.normal(size=(n, dim)).astype(np.float32)
        flat.add(np.arange(n, dtype=np.int64), codes)
        reps = []
        for _ in range(20):
            t = time.process_time()
            flat.search(query, 20)
            reps.append(time.process_time() - t)
        out[str(n)] = float(np.median(reps))
    return out


def score(suite: Path, answers: Path, out_json: Path) -> dict:
    scorer = suite.parent / "score.py"
    done = subprocess.run([sys.executable, str(scorer), str(suite), str(answers), "--json", str(out_json)],
                          capture_output=True, text=True, check=True)
    print(done.stdout)
    return json.loads(out_json.read_text())


def bank_sizes(text: str) -> list[int]:
    """``3,10,20`` -> [3, 10, 20]; argparse turns the ValueError into a one-line usage error."""
    sizes = [int(x) for x in text.split(",") if x.strip()]
    if any(k < 1 for k in sizes):
        raise ValueError(text)
    return sizes


ENGINES = ("ours", "ours_sift")


def engine_list(text: str) -> list[str]:
    """``ours,ours_sift`` -> the engines; argparse turns the ValueError into a usage error."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names or any(n not in ENGINES for n in names):
        raise ValueError(text)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "venues")
    parser.add_argument("--skip-baselines", action="store_true",
                        help="Reuse the baselines' answers and timings of an earlier run.")
    parser.add_argument("--bank-sizes", type=bank_sizes, default=[],
                        help="Also check banks of these many venues end to end (comma separated).")
    parser.add_argument("--bank-draws", type=int, default=1, help="Random banks per size.")
    parser.add_argument("--bank-seed", type=int, default=0, help="Seed of the random banks.")
    parser.add_argument("--engines", type=engine_list, default=list(ENGINES),
                        help="Which of ours (with the learned descriptor) and ours_sift (without it, "
                             "as before issue 22) to run (comma separated).")
    parser.add_argument("--no-evidence", action="store_true",
                        help="Skip the every-venue evidence pass (keeps an earlier ours_evidence.jsonl).")
    parser.add_argument("--bank-evidence", action="store_true",
                        help="With --bank-sizes: also write every venue's evidence in every small bank "
                             "(small_banks_evidence.jsonl, for calibrate_venues.py --real-banks).")
    parser.add_argument("--only-bank-sizes", action="store_true",
                        help="Run the small-bank check alone (keeps the rest of summary.json).")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    suite, out = args.suite.resolve(), args.out
    out.mkdir(parents=True, exist_ok=True)
    gallery, queries = read_csv(suite / "gallery.csv"), read_csv(suite / "queries.csv")
    data = out / "data"
    if data.exists():
        subprocess.run(["rm", "-rf", str(data)], check=True)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    sizes = args.bank_sizes
    if sizes:
        work = out / "small-banks"
        if work.exists():
            subprocess.run(["rm", "-rf", str(work)], check=True)
        for engine in args.engines:
            with descriptor(engine == "ours"):
                key = "small_banks" if engine == "ours" else f"small_banks_{engine}"
                raw = out / f"small_banks_evidence{'' if engine == 'ours' else '_' + engine}.jsonl"
                summary[key] = small_banks(suite, gallery, queries, sizes, args.bank_draws,
                                           work / engine, args.bank_seed,
                                           raw if args.bank_evidence else None)
        summary_path.write_text(json.dumps(summary, indent=2))
        if args.only_bank_sizes:
            return
    for engine in args.engines:
        with descriptor(engine == "ours"):
            store, bank, index_s = build_bank(suite, data / engine)
            ours_t, train_s = run_ours(store, bank, suite, queries, out, engine, not args.no_evidence)
            growth = vlad_search_growth(store, bank, [len(gallery), GROWTH_REFERENCES])
            extra_s = growth[str(GROWTH_REFERENCES)] - growth[str(len(gallery))]
            shortlist = searcher_shortlist(Matcher(store))
        summary[engine] = {"index_s_per_image": index_s, "vocabulary_train_s": train_s,
                           "p50_s": percentile(ours_t, 50), "p95_s": percentile(ours_t, 95),
                           "shortlist": shortlist, "verified_per_query": min(shortlist, len(gallery)),
                           "vlad_search_s": growth,
                           # The shortlist is verified whatever the bank's size: at 10,000
                           # references only the VLAD search grows (when shortlist <= gallery).
                           "p50_s_at_10000": percentile(ours_t, 50) + extra_s,
                           "p95_s_at_10000": percentile(ours_t, 95) + extra_s,
                           "metrics": score(suite, out / f"{engine}.jsonl", out / f"{engine}_score.json")}
        summary_path.write_text(json.dumps(summary, indent=2))
    if not args.skip_baselines:
        pdq_t = run_pdq(suite, gallery, queries, out)
        summary["pdq"] = {"p50_s": percentile(pdq_t, 50), "p95_s": percentile(pdq_t, 95),
                          "metrics": score(suite, out / "pdq.jsonl", out / "pdq_score.json")}
        sr_t, pair_s = run_sift_ransac(suite, gallery, queries, out)
        summary["sift_ransac"] = {"p50_s": percentile(sr_t, 50), "p95_s": percentile(sr_t, 95),
                                  "pair_s": pair_s,
                                  "projected_s_at_10000": pair_s * GROWTH_REFERENCES,
                                  "metrics": score(suite, out / "sift_ransac.jsonl",
                                                   out / "sift_ransac_score.json")}
    summary["machine"] = {"cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                          "gallery": len(gallery), "queries": len(queries), "vlad_words": vlad.DEFAULT_WORDS}
    summary_path.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "metrics"} for k, v in summary.items()
                      if isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
