"""Ray Data crawl indexing against the worker pool, in one run on the same photos.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ray_bench.py --suite-root ../shared/bench --n 300 --repeat 2

One local Ray cluster of two nodes x one CPU (tests/ray_cluster.py: ``ray start --block`` twice,
in a network namespace of its own) is started once and timed; then, interleaved per repeat
(pool first, then ray first, ...),
``reunite index DIR --bank ads --quiet`` with ``--workers 2`` and with ``--engine ray --address
...`` (the ads defaults unless ``--signals``), each a fresh process on a fresh data folder, both
run inside the cluster's namespace so they differ only in the engine. Per run: the command's
wall time, the indexing time of its report (walk, sha256, extraction, catalog and index writes:
``index_records``), images/s over each, and the rest (process start, Ray connect, linking). The
images are the suites' mix of sizes (bench/hash_throughput.py's pick, as bench/ingest_bench.py).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest_bench import copy_set, mix_photos  # noqa: E402
from tests.ray_cluster import RayCluster, ray_bin  # noqa: E402


def index_run(cluster: RayCluster, photos: Path, data: Path, engine: list[str],
              signals: list[str]) -> dict[str, float]:
    cmd = [*cluster.enter(), sys.executable, "-m", "api.cli", "--data", str(data), "index", str(photos),
           "--bank", "ads", "--quiet", *signals, *engine]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"})
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    report = json.loads(sorted((data / "reports").glob("index-*.json"))[-1].read_text())
    return {"wall_s": round(took, 2), "indexing_s": round(report["seconds"], 2),
            "indexed": report["indexed"], "failed": report["failed"],
            "images_per_s_indexing": round(report["indexed"] / report["seconds"], 2),
            "images_per_s_wall": round(report["indexed"] / took, 2),
            "outside_indexing_s": round(took - report["seconds"], 2), "nodes": report["nodes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite-root", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--signals", default="", help="--signals value (default: the ads defaults)")
    args = parser.parse_args()
    signals = ["--signals", args.signals] if args.signals else []
    scratch = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    photos = copy_set(mix_photos(args.suite_root, args.n), scratch / "photos")
    result: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "machine": f"{os.cpu_count()}-core {platform.machine()}, "
                               f"CPython {platform.python_version()}",
                    "load_average_before": os.getloadavg(), "photos": args.n,
                    "signals": args.signals or "ads defaults", "runs": {"pool": [], "ray": []}}
    started = time.perf_counter()
    cluster = RayCluster(ray_bin())
    try:
        cluster.start()
        result["cluster_start_s"] = round(time.perf_counter() - started, 2)
        engines = {"pool": ["--workers", "2"], "ray": ["--engine", "ray", "--address", cluster.address]}
        for n in range(args.repeat):  # the order alternates: a load that falls or rises favours neither
            for name in (("pool", "ray") if n % 2 == 0 else ("ray", "pool")):
                engine = engines[name]
                run = index_run(cluster, photos, scratch / f"{name}-{n}", engine, signals)
                result["runs"][name].append(run)
                print(name, run, file=sys.stderr, flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    for name, runs in result["runs"].items():
        result[f"{name}_median"] = {key: round(statistics.median(r[key] for r in runs), 2)
                                    for key in ("wall_s", "indexing_s", "images_per_s_indexing",
                                                "images_per_s_wall", "outside_indexing_s")}
    result["ratio_ray_over_pool_indexing"] = [
        round(r["images_per_s_indexing"] / p["images_per_s_indexing"], 2)
        for p, r in zip(result["runs"]["pool"], result["runs"]["ray"], strict=True)]
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
