"""PDQ lookups at scale: multi-index hashing against FAISS's flat scan, same hashes, same run.

    python bench/hash_scale.py [--sizes 1000000 10000000] [--queries 300]
                               [--suite-root ../shared/bench] [--faiss-multihash-max 1000000]

The bank is grown from the PDQ hashes of the benchmark photos (bench/pdq_corpus.py:
real hashes, unrelated photos with their substring skew, near-duplicates and
further copies); the lookups are copies of banked and of real hashes at 0-40
bits and unrelated photos. Every engine runs in its own child process, one at a
time, on one thread, so that its peak memory (ru_maxrss) is its own:

* ``flat``: ``faiss.IndexBinaryFlat.range_search`` (the exact baseline);
* ``mih16`` / ``mih12``: reunite's multi-index hash (indexer/store/mih.py) with
  16 substrings of 16 bits probed at one flip, or 12 of 21-22 bits at two;
* ``mih-mapped``: the chosen layout saved and loaded back as the service loads
  it (memory-mapped), then searched: what one API worker holds;
* ``faiss-multihash``: ``faiss.IndexBinaryMultiHash`` (16 tables of 16 bits,
  nflip 1: exact at 31), at the sizes up to ``--faiss-multihash-max``.

Every engine's hits (ids and distances) at radius 31 are compared with the
flat scan's: ``misses`` and ``extra`` must be 0. Ratios are what to read;
absolute rates move with the machine's load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.pdq_corpus import grow, queries, real_hashes  # noqa: E402

RADIUS = 31


def _rss_mb(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident memory in MB.

    Not ``ru_maxrss``: Linux carries that across exec, so a spawned child would
    report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _hits_of(lims: np.ndarray, dist: np.ndarray, ids: np.ndarray) -> list[set[tuple[int, int]]]:
    return [set(zip(ids[lims[q]:lims[q + 1]].tolist(), dist[lims[q]:lims[q + 1]].tolist(), strict=True))
            for q in range(len(lims) - 1)]


def _engine(name: str, folder: str, out: str) -> None:
    """Build one engine over the saved bank, search the saved queries, write what it found."""
    import faiss

    faiss.omp_set_num_threads(1)
    folder_path = Path(folder)
    codes = np.load(folder_path / "codes.npy", mmap_mode="r" if name == "mih-mapped" else None)
    q = np.load(folder_path / "queries.npy")
    ids = np.arange(len(codes), dtype=np.int64)
    base_rss = _rss_mb("VmRSS")
    t0 = time.perf_counter()
    if name == "flat":
        index = faiss.IndexBinaryFlat(256)
        index.add(codes)

        def search(qs: np.ndarray) -> list[set[tuple[int, int]]]:
            return _hits_of(*index.range_search(qs, RADIUS + 1))
    elif name == "faiss-multihash":
        index = faiss.IndexBinaryMultiHash(256, 16, 16)
        index.nflip = 1
        index.add(codes)

        def search(qs: np.ndarray) -> list[set[tuple[int, int]]]:
            return _hits_of(*index.range_search(qs, RADIUS + 1))
    else:
        from indexer.signals import base as signals
        from indexer.store.mih import MultiIndexHashIndex
        from indexer.store.vectors import load_saved

        if name == "mih-mapped":
            mih = load_saved(signals.get("pdq"), folder_path / "pdq.mih")
            assert isinstance(mih, MultiIndexHashIndex)
        else:
            layout = {"mih16": (16, 1), "mih12": (12, 2)}[name]
            mih = MultiIndexHashIndex.from_vectors(256, ids, codes, *layout)

        def search(qs: np.ndarray) -> list[set[tuple[int, int]]]:
            return [{(h.vector_id, int(h.distance)) for h in hits}
                    for hits in (mih.radius_search(qs[i:i + 1], RADIUS)[0] for i in range(len(qs)))]
    build = time.perf_counter() - t0
    built_rss = _rss_mb("VmRSS")
    search(q[:5])  # first touches (a mapped file's pages) are not lookups
    t1 = time.perf_counter()
    found = search(q)
    seconds = time.perf_counter() - t1
    result = {"engine": name, "build_s": round(build, 2), "lookups": len(q),
              "lookups_per_s": round(len(q) / seconds, 1), "ms_per_lookup": round(1000 * seconds / len(q), 2),
              "peak_rss_mb": round(_rss_mb(), 1), "rss_before_build_mb": round(base_rss, 1),
              "rss_after_build_mb": round(built_rss, 1), "rss_after_lookups_mb": round(_rss_mb("VmRSS"), 1),
              "hits": [sorted(h) for h in found]}
    Path(out).write_text(json.dumps(result))


def run_engine(name: str, folder: Path) -> dict:
    out = folder / f"{name}.json"
    proc = mp.get_context("spawn").Process(target=_engine, args=(name, str(folder), str(out)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"engine": name, "error": f"exit code {proc.exitcode}"}
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--suite-root", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "reunite-pdq-real.npy",
                        help="where the real photos' PDQ hashes are cached")
    parser.add_argument("--engines", nargs="+", default=["flat", "mih16", "mih12", "mih-mapped",
                                                          "faiss-multihash"])
    parser.add_argument("--mapped-layout", default="12x2", help="layout saved for mih-mapped")
    parser.add_argument("--faiss-multihash-max", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    seeds = real_hashes(args.suite_root, args.cache)
    report: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}",
                    "python": platform.python_version(), "real_hashes": len(seeds),
                    "radius": RADIUS, "sizes": []}
    for n in args.sizes:
        rng = np.random.default_rng(args.seed)
        with tempfile.TemporaryDirectory(prefix="reunite-hash-scale-") as tmp:
            folder = Path(tmp)
            t0 = time.perf_counter()
            codes = grow(seeds, n, rng)
            grow_s = time.perf_counter() - t0
            q = queries(codes, seeds, args.queries, rng)
            np.save(folder / "codes.npy", codes)
            np.save(folder / "queries.npy", q)
            skew = _bucket_skew(codes)
            del codes
            if "mih-mapped" in args.engines:
                _save_mapped(folder, args.mapped_layout)
            size: dict = {"n": n, "grow_s": round(grow_s, 1), "bucket_skew": skew, "engines": []}
            results = {}
            for name in args.engines:
                if name == "faiss-multihash" and n > args.faiss_multihash_max:
                    continue
                r = run_engine(name, folder)
                results[name] = r
                print(json.dumps({k: v for k, v in r.items() if k != "hits"}), flush=True)
            want = [set(map(tuple, h)) for h in results["flat"]["hits"]] if "hits" in results.get(
                "flat", {}) else None
            for r in results.values():
                hits = r.pop("hits", None)
                if hits is None or want is None:
                    continue
                got = [set(map(tuple, h)) for h in hits]
                r["hits_total"] = sum(len(h) for h in got)
                r["misses"] = sum(len(w - g) for w, g in zip(want, got, strict=True))
                r["extra"] = sum(len(g - w) for w, g in zip(want, got, strict=True))
                if "flat" in results and "lookups_per_s" in results["flat"]:
                    r["vs_flat"] = round(r["lookups_per_s"] / results["flat"]["lookups_per_s"], 2)
            size["engines"] = list(results.values())
            report["sizes"].append(size)
    print(json.dumps(report, indent=2))


def _bucket_skew(codes: np.ndarray) -> dict:
    """How unevenly the first 16-bit substring fills its 65,536 buckets (uniform codes: all ~n/65536)."""
    keys = (codes[:, 0].astype(np.int64) << 8) | codes[:, 1]
    counts = np.bincount(keys, minlength=1 << 16)
    return {"mean": round(float(counts.mean()), 1), "max": int(counts.max()),
            "p99": float(np.percentile(counts, 99)), "empty_share": round(float((counts == 0).mean()), 4)}


def _save_mapped(folder: Path, layout: str) -> None:
    from indexer.store.mih import MultiIndexHashIndex
    from indexer.store.vectors import save_atomically

    m, flips = (int(x) for x in layout.split("x"))
    codes = np.load(folder / "codes.npy")
    mih = MultiIndexHashIndex.from_vectors(256, np.arange(len(codes), dtype=np.int64), codes, m, flips)
    save_atomically(mih, folder / "pdq.mih")


if __name__ == "__main__":
    main()
