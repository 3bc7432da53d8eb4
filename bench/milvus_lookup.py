"""Exact PDQ range lookups in Milvus (BIN_FLAT, Hamming) against FAISS's flat scan, same codes, same run.

    python bench/milvus_lookup.py [--sizes 100000 1000000] [--queries 200] [--tick-ms 20]

The bank is random 256-bit codes plus perturbed copies (0-40 bits flipped) of
1% of them; the lookups are copies of banked codes at 0-40 bits and unrelated
codes, at radius 31. Milvus is the embedded server of ``milvus==2.3.5`` started
in a network namespace of its own (tests/milvus_server.py), reached over
loopback through the same relay the tests use, with reunite's own index class
(indexer.store.milvus_vectors.MilvusVectorIndex: reads wait for the load's last
write's timestamp). FAISS is
``IndexBinaryFlat`` behind reunite's FaissBinaryIndex on one thread. Reported:
load time, sequential lookups/s (one query per request, as the API asks), one
batch of every query in a single request, and exactness (every query's ids and
distances equal to the flat scan's). ``--tick-ms`` is the server's
``proxy.timeTickInterval`` (Milvus's default is 200 ms), the wait of a Strong read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

RADIUS = 31
ROUNDS = 8


def _flip(rng: np.random.Generator, codes: np.ndarray, max_flips: int) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        row[rng.choice(256, size=int(rng.integers(0, max_flips + 1)), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def _bank(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size - size // 100, 32), dtype=np.uint8)
    copies = _flip(rng, base[: size // 100], 40)
    return np.arange(1, size + 1, dtype=np.int64), np.concatenate([base, copies])


def _queries(codes: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    near = _flip(rng, codes[rng.choice(len(codes) // 100, n // 2, replace=False)], 40)
    return np.concatenate([near, rng.integers(0, 256, (n - n // 2, 32), dtype=np.uint8)])


def _rows(hits: list) -> list[tuple[int, float]]:  # noqa: ANN401
    return [(h.vector_id, h.distance) for h in hits]


def run(sizes: list[int], n_queries: int, tick_ms: int) -> dict:
    os.environ["REUNITE_TEST_MILVUS_TICK_MS"] = str(tick_ms)
    import milvus_server
    from pymilvus import MilvusClient

    from indexer.signals import base as signals
    from indexer.store.milvus_vectors import MilvusVectorIndex, milvus_uri
    from indexer.store.vectors import FaissBinaryIndex

    server = milvus_server.MilvusServer()
    server.start()
    out: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.node(),
                 "cpus": os.cpu_count(), "tick_ms": tick_ms, "radius": RADIUS, "queries": n_queries,
                 "sizes": []}
    try:
        uri, token = milvus_uri(server.url)
        client = MilvusClient(uri=uri, token=token)
        for size in sizes:
            ids, codes = _bank(size, seed=size)
            queries = _queries(codes, n_queries, seed=size)
            flat = FaissBinaryIndex(256)
            flat.add(ids, codes)

            index = MilvusVectorIndex(client, f"bench_pdq_{size}", signals.get("pdq"))
            t = time.perf_counter()
            index.create()
            index.insert_new(ids, codes)
            index.seal()
            count = len(index)
            load_s = time.perf_counter() - t
            index.radius_search(queries[:2], RADIUS)  # the segment's first search loads it
            # Alternated in rounds (flat, Milvus, flat, ...) so that both see the same load.
            want: list = []
            got: list = []
            flat_s = milvus_s = 0.0
            for part in np.array_split(np.arange(len(queries)), ROUNDS):
                t = time.perf_counter()
                want += [flat.radius_search(queries[n][None, :], RADIUS)[0] for n in part]
                flat_s += time.perf_counter() - t
                t = time.perf_counter()
                got += [index.radius_search(queries[n][None, :], RADIUS)[0] for n in part]
                milvus_s += time.perf_counter() - t
            t = time.perf_counter()
            batch = index.radius_search(queries, RADIUS)
            batch_s = time.perf_counter() - t
            mismatched = sum(_rows(g) != _rows(w) for g, w in zip(got, want, strict=True))
            mismatched += sum(_rows(g) != _rows(w) for g, w in zip(batch, want, strict=True))
            row = {"size": size, "stored": count, "hits": sum(len(w) for w in want),
                   "flat_lookups_per_s": round(n_queries / flat_s, 1),
                   "milvus_lookups_per_s": round(n_queries / milvus_s, 1),
                   "milvus_batch_lookups_per_s": round(n_queries / batch_s, 1),
                   "milvus_vs_flat": round(flat_s / milvus_s, 3),
                   "milvus_load_s": round(load_s, 1), "queries_not_equal_to_flat": mismatched}
            print(json.dumps(row), flush=True)
            out["sizes"].append(row)
            client.drop_collection(index.name)
        client.close()
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tick-ms", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(args.sizes, args.queries, args.tick_ms), indent=1))


if __name__ == "__main__":
    main()
