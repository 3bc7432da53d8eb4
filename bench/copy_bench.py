"""Copy-detection benchmark: reunite vs PDQ-only vs pHash-only, in the same run.

    OMP_NUM_THREADS=1 python bench/copy_bench.py ../shared/bench/copydet \\
        [--records /tmp/copydet-records.jsonl] [--data /tmp/copydet-data] \\
        [--generated 30] [--growth 1,3,10] [--json out.json]

1. The suite: the gallery is indexed into a fresh ``ads`` bank (hashes + local
   features); every query is answered by the real Matcher, timed (wall and CPU
   seconds of this one process, decode included). The same hash extraction
   gives the baselines: PDQ (distance <= 31, HMA's default) and pHash
   (<= 10, imagededup's default), nearest first, no dihedral variants.
   Metrics follow ../shared/bench/score.py, overall and per transform, for
   the whole suite and for the held-out half that bench/calibrate_copy.py did
   not fit on.
2. ``--generated N``: the same 21 edits (bench/copy_transforms.py) applied to N
   photos the suite does not contain (one per place from the venues suite, none
   that copydet was made from, no two within pHash 10: at most 70; 20% held out as non-mated), with the
   faces suite's LFW photos as distractors.
   This checks that the numbers are not tuned to copydet's files.
3. ``--growth``: search cost and memory of the descriptor index at given reference counts
   (synthetic references: real descriptor sets plus noise, IVF-Flat and IVF-PQ,
   placed in their inverted lists), to see how query time grows toward 100,000
   references. Memory per reference is measured too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import copy_suite as cs  # noqa: E402
import copy_transforms as ct  # noqa: E402

from indexer.signals import local  # noqa: E402
from indexer.store import features  # noqa: E402
from indexer.store.features import LocalIndexSet  # noqa: E402
from matcher import defaults as defaults_mod  # noqa: E402
from matcher.search import copies as copy_search  # noqa: E402

SYSTEMS = ("reunite", "pdq", "phash")


def answers(defaults: defaults_mod.Defaults) -> dict[str, Any]:
    return {"reunite": cs.ours(defaults), "pdq": cs.baseline("pdq"), "phash": cs.baseline("phash")}


def run_suite(suite: Path, data: Path, records_path: Path) -> tuple[list[dict[str, Any]], Any, Any]:
    queries = cs.read_csv(suite / "queries.csv")
    if data.exists() and records_path.exists():
        from indexer.store.store import Store
        store = Store(data)
        bank = store.bank_or_error("copy")
    else:
        store, bank, secs = cs.build(suite, data)
        print(f"indexed {suite.name} gallery in {secs:.1f} s")
    return cs.collect(store, bank, suite, queries, records_path), store, bank


def table(title: str, per_system: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [f"### {title}", "",
             "| transform | n | " + " | ".join(f"{s} top1 | {s} rec@def | {s} FA" for s in SYSTEMS) + " |",
             "|---|---|" + "---|" * (3 * len(SYSTEMS))]
    for name, row in per_system["reunite"].items():
        cells = [f"{per_system[s][name]['top1']:.3f} | {per_system[s][name]['recall']:.3f} | "
                 f"{per_system[s][name]['false_accepts']}" for s in SYSTEMS]
        lines.append(f"| {name} | {row['n']} | " + " | ".join(cells) + " |")
    ours = per_system["reunite"]["OVERALL"]
    lines.append("")
    lines.append(f"reunite overall: top1 {ours['top1']:.4f}, top5 {ours['top5']:.4f}, recall at default "
                 f"{ours['recall']:.4f}, false accepts {ours['false_accepts']} / {ours['n']} "
                 f"({ours['false_accept']:.3%})")
    return "\n".join(lines)


def evaluate(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    fns = answers(defaults_mod.load())
    return {s: cs.metrics(records, fns[s]) for s in SYSTEMS}


def generated_pool(shared: Path) -> list[dict[str, str]]:
    """One gallery photo per venues place, none of them a file copydet was made from.

    Two venues photos are ScanNet frames that copydet also uses (checked through both
    suites' provenance.csv); a generated suite holding them would not be "photos the
    suite does not contain". A photo whose pHash is within imagededup's duplicate
    distance (10) of one already kept is left out too: venues holds skimage's stereo
    pair motorcycle_left / motorcycle_right (pHash distance 4), one scene seen by two
    cameras, whose edits a copy detector rightly links to each other; with both in the
    pool they made 14 of the 16 "false accepts" of a 70-photo run.
    """
    from indexer import images
    from indexer.signals import base as signal_base
    phash = signal_base.get("phash")
    def sources(name: str) -> dict[str, str]:
        path = shared / name / "provenance.csv"
        return {r["path"]: r["source_file"] for r in cs.read_csv(path)} if path.exists() else {}

    in_copydet = set(sources("copydet").values())
    venue_source = sources("venues")
    seen, pool, hashes = set(), [], []
    for row in cs.read_csv(shared / "venues" / "gallery.csv"):
        if row["label"] in seen or venue_source.get(row["path"]) in in_copydet:
            continue
        seen.add(row["label"])
        vector = phash.extract(images.load(shared / "venues" / row["path"], max_side=1024))[0].vector
        if any(phash.distance(vector, other) <= cs.BASELINES["phash"] for other in hashes):
            continue
        hashes.append(vector)
        pool.append(row)
    return pool


def generated_suite(shared: Path, out: Path, n_originals: int, seed: int = 7) -> Path:
    """A copydet-like suite from photos copydet does not contain (see the module docstring)."""
    if (out / "queries.csv").exists():
        return out
    rng = np.random.default_rng(seed)
    originals = generated_pool(shared)
    if n_originals > len(originals):
        raise SystemExit(f"--generated {n_originals}: only {len(originals)} venue photos qualify")
    originals = [originals[i] for i in sorted(rng.choice(len(originals), n_originals, replace=False))]
    held_out = {r["label"] for r in originals[: max(1, n_originals // 5)]}
    (out / "images").mkdir(parents=True, exist_ok=True)
    gallery, queries = [], []
    for n, row in enumerate(originals):
        img = Image.open(shared / "venues" / row["path"]).convert("RGB")
        if row["label"] not in held_out:
            path = f"images/g{n:05d}.jpg"
            ref = img.copy()
            ref.thumbnail((1600, 1600))
            ref.save(out / path, quality=90)
            gallery.append({"path": path, "label": row["label"]})
        for edit in ct.EDITS:
            path = f"images/q{len(queries):05d}.jpg"
            (out / path).write_bytes(ct.make_query(img, edit, rng))
            label = "" if row["label"] in held_out else row["label"]
            queries.append({"path": path, "label": label, "transform": edit})
    for row in cs.read_csv(shared / "faces" / "gallery.csv"):
        path = f"images/d{len(gallery):05d}.jpg"
        Image.open(shared / "faces" / row["path"]).convert("RGB").save(out / path, quality=90)
        gallery.append({"path": path, "label": row["label"]})
    for name, rows, cols in (("gallery.csv", gallery, ["path", "label"]),
                             ("queries.csv", queries, ["path", "label", "transform"])):
        with (out / name).open("w", encoding="utf-8") as f:
            f.write(",".join(cols) + "\n")
            f.writelines(",".join(r[c] for c in cols) + "\n" for r in rows)
    return out


def _real_descriptors(store: Any, bank: Any) -> tuple[np.ndarray, int]:
    """Every RootSIFT row of the bank (from the catalog) and the number of references."""
    rows, refs = [], 0
    index_set = LocalIndexSet(store.data_dir, store.catalog)
    for _ids, blobs in index_set._iter_vectors(bank.id, 0):
        for blob in blobs:
            rows.append(local.unpack(blob).rootsift())
            refs += 1
    return np.ascontiguousarray(np.concatenate(rows)), refs


BENCH_TRAIN_PER_LIST = 20
MAX_BENCH_NLIST = 8192


def _quantizer(real: np.ndarray, nlist: int, rng: np.random.Generator) -> faiss.IndexFlatL2:
    """Coarse centroids from FAISS k-means on a sample of the real descriptors."""
    sample = real[rng.choice(len(real), min(len(real), BENCH_TRAIN_PER_LIST * nlist), replace=False)]
    km = faiss.Kmeans(real.shape[1], nlist, niter=8, seed=1234)
    km.train(np.ascontiguousarray(sample))
    quantizer = faiss.IndexFlatL2(real.shape[1])
    quantizer.add(km.centroids)
    return quantizer


def _empty(kind: str, quantizer: faiss.IndexFlatL2, real: np.ndarray,
           rng: np.random.Generator) -> faiss.IndexIVF:
    """An empty IVF index of ``kind`` on ``quantizer`` (PQ codebooks trained on real residuals)."""
    d, nlist = real.shape[1], quantizer.ntotal
    index: faiss.IndexIVF
    if kind == "ivf_pq":
        index = faiss.IndexIVFPQ(quantizer, d, nlist, features.PQ_BYTES, 8)
        index.train(np.ascontiguousarray(real[rng.choice(len(real), min(len(real), 100_000),
                                                         replace=False)]))
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist)
        index.is_trained = True
    index.nprobe = features.NPROBE
    return index


def growth(store: Any, bank: Any, sizes: list[int], queries: list[np.ndarray],
           memory_limit_gb: float = 8.0) -> list[dict[str, Any]]:
    """Descriptor-search CPU per query and index memory at ``sizes`` references, per index kind.

    Synthetic references: the bank's real descriptor sets, copied with Gaussian
    noise (sigma 0.02 per dimension, re-normalised) and kept in the inverted list of
    the descriptor they copy, so that lists grow as they would with more photos.
    Index kinds: IVF-Flat (what banks below ``features.PQ_MIN_DESCRIPTORS`` use) and
    IVF-PQ (above); nlist from ``features.nlist_for`` capped at 8192 (k-means for
    more lists does not fit this 2-core machine). A kind whose index would exceed
    ``memory_limit_gb`` is not built and its size is reported as extrapolated.
    """
    import resource

    real, refs = _real_descriptors(store, bank)
    rng = np.random.default_rng(0)
    out = []
    quantizers: dict[int, tuple[faiss.IndexFlatL2, np.ndarray]] = {}
    for size in sizes:
        factor = max(1, int(round(size / refs)))
        n_desc = len(real) * factor
        nlist = min(MAX_BENCH_NLIST, features.nlist_for(refs * factor * local.MAX_KEYPOINTS))
        for kind in ("ivf_flat", "ivf_pq"):
            bytes_per = (features.PQ_BYTES if kind == "ivf_pq" else 4 * real.shape[1]) + 8 + 8
            row: dict[str, Any] = {"references": refs * factor, "descriptors": n_desc, "kind": kind,
                                   "nlist": nlist,
                                   "index_gb": round((n_desc * bytes_per + nlist * 512) / 2**30, 2)}
            if row["index_gb"] > memory_limit_gb:
                row["search_cpu_ms"] = None
                out.append(row)
                print(f"  growth {row} (not built: over {memory_limit_gb} GB)", flush=True)
                continue
            if nlist not in quantizers:
                t0 = time.process_time()
                quantizer = _quantizer(real, nlist, rng)
                _d, assign = quantizer.search(real, 1)
                quantizers[nlist] = (quantizer, np.ascontiguousarray(assign.ravel()))
                print(f"  trained {nlist} lists in {time.process_time() - t0:.0f} s CPU", flush=True)
            quantizer, assign = quantizers[nlist]
            index = _empty(kind, quantizer, real, rng)
            for copy in range(factor):
                x = real if copy == 0 else real + rng.normal(0, 0.02, real.shape).astype(np.float32)
                if copy:
                    faiss.normalize_L2(x)
                index.add_core(len(x), faiss.swig_ptr(np.ascontiguousarray(x)), None,
                               faiss.swig_ptr(assign))
                del x
            start = time.process_time()
            for q in queries:
                index.search(q, copy_search.NEIGHBOURS)
            row["search_cpu_ms"] = round(1000 * (time.process_time() - start) / len(queries), 1)
            row["max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
            out.append(row)
            print(f"  growth {row}", flush=True)
            index.own_fields = False  # the quantizer is shared between kinds
            del index
    return out


def retime(store: Any, bank: Any, suite: Path, every: int) -> dict[str, float]:
    """CPU time of ``Matcher.match`` on every ``every``-th query: a timing pass apart from recording."""
    from matcher.search.query import Matcher
    queries = cs.read_csv(suite / "queries.csv")[::every]
    matcher = Matcher(store)
    matcher.match((suite / queries[0]["path"]).read_bytes(), [bank])  # warm caches
    cpu = []
    for q in queries:
        data = (suite / q["path"]).read_bytes()
        start = time.process_time()
        matcher.match(data, [bank])
        cpu.append(time.process_time() - start)
    return {"n": len(cpu), "cpu_p50": float(np.percentile(cpu, 50)), "cpu_p95": float(np.percentile(cpu, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("--records", type=Path, default=Path("/tmp/copydet-records.jsonl"))
    ap.add_argument("--data", type=Path, default=Path("/tmp/copydet-data"))
    ap.add_argument("--generated", type=int, default=0, help="Originals in the generated suite (0: skip).")
    ap.add_argument("--generated-dir", type=Path, default=Path("/tmp/copygen"))
    ap.add_argument("--growth", default="",
                    help="Reference counts, e.g. 1000,10000,100000 (empty: skip).")
    ap.add_argument("--retime", type=int, default=0,
                    help="Time every Nth suite query again, answers not recorded (0: skip).")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)

    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "defaults": defaults_mod.load().version}
    records, store, bank = run_suite(args.suite, args.data, args.records)
    half = cs.split(args.suite, cs.read_csv(args.suite / "queries.csv"))
    full = evaluate(records)
    held = evaluate([r for r in records if half[r["query"]] == "test"])
    report.update(suite=full, held_out=held, times=cs.times(records))
    print(table(f"{args.suite.name}: all {len(records)} queries", full))
    print()
    print(table(f"{args.suite.name}: held-out half (not used by calibrate_copy.py)", held))
    t = report["times"]
    print("\nquery time (Matcher.match, decode included, one process): "
          f"wall p50 {t['wall_p50']*1000:.0f} ms p95 {t['wall_p95']*1000:.0f} ms; "
          f"CPU p50 {t['cpu_p50']*1000:.0f} ms p95 {t['cpu_p95']*1000:.0f} ms")

    if args.retime:
        report["retimed"] = retime(store, bank, args.suite, args.retime)
        print(f"re-timed every {args.retime}th query: {report['retimed']}")

    if args.generated:
        root = generated_suite(args.suite.parent, args.generated_dir / "suite", args.generated)
        gen_records, _s, _b = run_suite(root, args.generated_dir / "data",
                                        args.generated_dir / "records.jsonl")
        gen = evaluate(gen_records)
        report.update(generated=gen, generated_times=cs.times(gen_records))
        print()
        print(table(f"generated suite ({args.generated} photos not in copydet)", gen))

    if args.growth:
        from indexer import images
        sample = [r["path"] for r in cs.read_csv(args.suite / "queries.csv")[:50]]
        qs = [local.extract_features(images.load(args.suite / p, max_side=2048),
                                     max_keypoints=local.QUERY_KEYPOINTS, max_side=local.QUERY_SIDE
                                     ).rootsift()[:copy_search.SHORTLIST_DESCRIPTORS] for p in sample]
        report["growth"] = growth(store, bank, [int(f) for f in args.growth.split(",")], qs)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
