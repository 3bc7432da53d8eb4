"""Load test of the HTTP match endpoint: requests/s and p50/p99 latency on loopback.

What it measures: ``POST /v1/match`` (an uploaded JPEG, every searcher, the
review-queue write and the audit append included) against a real ``reunite
serve`` (uvicorn, one process) over a bank of ``--references`` references,
driven by ``--clients`` client processes, each sending a bounded number of
requests one after the other (closed loop, keep-alive).

The bank holds a few real photos (fixtures/) and synthetic hash-only
references for the rest: random PDQ / pHash / dHash / aHash / wHash vectors
stored through the real catalog and indexes, which is what 10,000 references
cost the matcher (faces are not part of this bank). Queries are recompressed,
resized copies of the fixture photos, so every query finds its reference.

Usage::

    .venv/bin/python bench/load_test.py --references 10000 --clients 4 --requests 150

Client processes share the machine with the server: on a small machine the
numbers are a floor for the server alone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "fixtures"
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "brick.png"]
BANK = "bench-refs"


def build_bank(data_dir: Path, references: int, seed: int = 0) -> None:
    """Real fixture photos plus synthetic hash-only references, through the real store."""
    from indexer import pipeline
    from indexer.signals import base as signals
    from indexer.signals.base import SignalVector
    from indexer.store.store import NewImage, Store

    store = Store(data_dir)
    bank = store.catalog.ensure_bank(BANK, "ads", {"signals": ["hashes"]})
    if store.catalog.count_items(bank.id) >= references:  # --data of an earlier run: reuse it
        return
    names = [s.name for s in signals.select(["hashes"])]
    real = [pipeline.extract((FIXTURES / p).read_bytes(), names) for p in PHOTOS]
    store.add_images(bank, [NewImage(ex, f"photo-{n}") for n, ex in enumerate(real)])
    rng = np.random.default_rng(seed)
    batch: list[NewImage] = []
    for n in range(max(0, references - len(real))):
        vectors = [SignalVector(name, rng.integers(0, 256, signals.get(name).nbytes, dtype=np.uint8),
                                quality=1.0 if name == "pdq" else None) for name in names]
        sha = hashlib.sha256(f"synthetic-{seed}-{n}".encode()).hexdigest()
        batch.append(NewImage(pipeline.Extraction(sha, 512, 512, "JPEG", 1, vectors), f"ref-{n}"))
        if len(batch) == 1000:
            store.add_images(bank, batch)
            batch = []
    if batch:
        store.add_images(bank, batch)
    store.checkpoint()


def queries() -> list[bytes]:
    out = []
    for name in PHOTOS:
        img = Image.open(FIXTURES / name).convert("RGB")
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=75)
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(url: str, key: str, requests: int, warmup: int, seed: int) -> dict:
    import httpx

    bodies = queries()
    latencies: list[float] = []
    errors = 0
    began = 0.0
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
        for n in range(warmup + requests):
            if n == warmup:
                began = time.time()  # wall clock: comparable across the client processes
            body = bodies[(n + seed) % len(bodies)]
            start = time.perf_counter()
            r = c.post("/v1/match", data={"banks": BANK, "top": "10"},
                       files={"image": ("q.jpg", body, "image/jpeg")})
            elapsed = time.perf_counter() - start
            if n >= warmup:
                latencies.append(elapsed)
                if r.status_code != 200 or r.json()["candidates"][0]["decision"] != "match":
                    errors += 1
    return {"latencies": latencies, "errors": errors, "began": began, "ended": time.time()}


def _client_entry(args: tuple[str, str, int, int, int]) -> dict:
    return client(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=150, help="per client, after warm-up")
    parser.add_argument("--warmup", type=int, default=5, help="per client, not measured")
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: a temporary one)")
    args = parser.parse_args()

    from api.auth import create_key
    from indexer.store.catalog import Catalog

    tmp = tempfile.TemporaryDirectory(prefix="reunite-load-")
    data_dir = args.data or Path(tmp.name) / "data"
    t0 = time.perf_counter()
    build_bank(data_dir, args.references)
    build_seconds = time.perf_counter() - t0
    catalog = Catalog.open(data_dir)
    key = create_key(catalog, "investigator", f"load-test-{os.getpid()}")
    catalog.engine.dispose()

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "--data", str(data_dir),
         "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.2)
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.clients) as pool:
            results = pool.map(_client_entry, [(url, key, args.requests, args.warmup, n)
                                               for n in range(args.clients)])
    finally:
        server.terminate()
        server.wait(timeout=30)
        tmp.cleanup()

    latencies = np.array([x for r in results for x in r["latencies"]])
    # Throughput over the measured part only: from the first client's end of warm-up to the last finish.
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    summary = {
        "references": args.references, "clients": args.clients,
        "requests": int(latencies.size), "errors": int(sum(r["errors"] for r in results)),
        "requests_per_second": round(latencies.size / wall, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
        "mean_ms": round(float(latencies.mean()) * 1000, 1),
        "bank_build_seconds": round(build_seconds, 1),
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
