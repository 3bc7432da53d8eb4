"""Hash lookups over HTTP: ``POST /v1/match/hashes`` and HMA's ``GET /m/lookup`` on a real server.

    python bench/hash_http.py --references 10000000 --data /tmp/refs10m build
    python bench/hash_http.py --data /tmp/refs10m run --workers 1 2 4 --seconds 20 --connections 8
    python bench/hash_http.py --data /tmp/refs10m run --workers 1 --route hma   # HMA's GET /m/lookup
    python bench/hash_http.py --data /tmp/refs10m profile --requests 300 --out profile.txt

``build`` makes a data folder holding the six fixture photos (through the real
store) and ``--references`` hash-only PDQ references grown from the benchmark
photos' real hashes (bench/pdq_corpus.py), written to the catalog in bulk (the
same rows the store writes, by executemany, because ten million photos cannot
be indexed in an afternoon); the PDQ index is then built by the service's own
rebuild-from-catalog path and saved, as a server start would.

``run`` starts ``reunite serve --workers N`` on loopback and measures, for each
N, a sequential client (one request after the other, the latency a single
partner sees) and ``wrk`` with ``--connections`` keep-alive connections
(requests/s and latency percentiles); the lookups are the partner's: the
fixture photos' hashes (hits) and unrelated photos' hashes (no hit), half each.

``profile`` runs one server under ``py-spy`` (every thread: the event loop and
the worker threads where sync routes run) while a client sends requests, and
prints the functions that hold the most samples.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

FIXTURES = ROOT / "fixtures"
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "brick.png"]
BANK = "bench-hashes"
# One client address sending thousands of lookups is what the per-address, per-key and
# partner-queue budgets exist to refuse (429); the benchmark measures the lookup, so they are off.
BUDGETS_OFF = {"REUNITE_BUDGET_ADDRESS": "off", "REUNITE_BUDGET_PARTNER": "off",
               "REUNITE_BUDGET_PARTNER_QUEUE": "off"}


def build(data: Path, references: int, suite_root: Path, cache: Path) -> dict:
    from bench.pdq_corpus import grow, real_hashes
    from indexer import pipeline
    from indexer.signals import base as signals
    from indexer.store.store import NewImage, Store

    t0 = time.perf_counter()
    store = Store(data)
    # A partner hash list is a bank of kind "hashes": PDQ match at 31 (HMA's), review at 50.
    bank = store.catalog.ensure_bank(BANK, "hashes", {"signals": ["hashes"], "partner_lookup": True})
    real = [pipeline.extract((FIXTURES / p).read_bytes(), ["pdq"]) for p in PHOTOS]
    store.add_images(bank, [NewImage(ex, f"photo-{n}") for n, ex in enumerate(real)])
    n = max(0, references - len(real))
    codes = grow(real_hashes(suite_root, cache), n, np.random.default_rng(0))
    con = sqlite3.connect(data / "catalog.sqlite", isolation_level=None)
    bulk_write(con, bank.id, codes, n)
    con.close()
    inserted = time.perf_counter() - t0
    fresh = Store(data)
    t1 = time.perf_counter()
    index = fresh.indexes.get(bank.id, "pdq")
    rebuilt = time.perf_counter() - t1
    del signals
    return {"references": references, "index": type(index).__name__, "catalog_write_s": round(inserted, 1),
            "index_rebuild_s": round(rebuilt, 1)}


# Bulk loading: the same rows the store writes, but with the secondary indexes of the two tables
# dropped while loading and made again at the end (CREATE INDEX sorts once instead of ten million
# random b-tree inserts), a large page cache and no fsync per transaction. Their definitions are
# read back from the catalog itself, so the schema stays the migrations'.
BULK_TABLES = ("items", "vectors")
BULK_CHUNK = 500_000


def bulk_write(con: sqlite3.Connection, bank_id: int, codes: np.ndarray, n: int) -> None:
    """Append ``n`` hash-only references (an item and a PDQ vector each) to ``bank_id``, in bulk."""
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")  # KiB: 1 GB
    con.execute("PRAGMA temp_store=MEMORY")
    indexes = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({', '.join('?' * len(BULK_TABLES))})", BULK_TABLES).fetchall()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    first_item = int(con.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0]) + 1
    first_vector = int(con.execute("SELECT COALESCE(MAX(id), 0) FROM vectors").fetchone()[0]) + 1
    t0 = time.perf_counter()
    con.execute("BEGIN")
    for name, _sql in indexes:
        con.execute(f'DROP INDEX "{name}"')
    for lo in range(0, n, BULK_CHUNK):
        hi = min(n, lo + BULK_CHUNK)
        con.executemany(
            "INSERT INTO items (id, bank_id, subject_id, sha256, source, width, height, format, "
            "attributes, created_at) VALUES (?, ?, NULL, ?, '', 512, 512, 'JPEG', '{}', ?)",
            ((first_item + i, bank_id, hashlib.sha256(b"ref-%d" % i).hexdigest(), now)
             for i in range(lo, hi)))
        con.executemany(
            "INSERT INTO vectors (id, item_id, bank_id, signal, data, quality, box, extra) "
            "VALUES (?, ?, ?, 'pdq', ?, 1.0, NULL, '{}')",
            ((first_vector + i, first_item + i, bank_id, codes[i].tobytes()) for i in range(lo, hi)))
        print(json.dumps({"written": hi, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    for _name, sql in indexes:
        con.execute(sql)
    # A change of the (bank, pdq) vectors: the saved index is stale and rebuilt from the catalog.
    con.execute("UPDATE index_revisions SET revision = revision + 1 WHERE bank_id = ? AND signal = 'pdq'",
                (bank_id,))
    con.execute("COMMIT")
    print(json.dumps({"indexed": n, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def lookups(n: int) -> list[str]:
    """Partner lookups: the fixture photos' PDQ (hits) and unrelated photos' (misses), alternating."""
    from bench.pdq_corpus import flip_bits
    from indexer import pipeline

    rng = np.random.default_rng(1)
    hits = [next(v for v in pipeline.extract((FIXTURES / p).read_bytes(), ["pdq"]).vectors)
            for p in PHOTOS]
    hits_arr = np.stack([np.asarray(h.vector, dtype=np.uint8) for h in hits])
    near = flip_bits(hits_arr[rng.integers(0, len(hits_arr), n)], rng.integers(0, 9, n), rng)
    far = flip_bits(hits_arr[rng.integers(0, len(hits_arr), n)], rng.integers(96, 129, n), rng)
    return [(near if k % 2 == 0 else far)[k].tobytes().hex() for k in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def partner_key(data: Path) -> str:
    from api.auth import create_key
    from indexer.store.catalog import Catalog

    catalog = Catalog.open(data)
    key = create_key(catalog, "partner", f"bench-{os.getpid()}-{time.time_ns()}")
    catalog.engine.dispose()
    return key


def start_server(data: Path, workers: int, prefix: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", **BUDGETS_OFF}
    cmd = [*(prefix or []), sys.executable, "-c", "from api.cli import main; main()", "--data", str(data),
           "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           *(["--workers", str(workers)] if workers > 1 else [])]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the server did not become ready")
        time.sleep(0.3)
    return server, url


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (uvicorn's workers), from /proc.

    On a shared machine requests/s say more about the neighbours than about the
    server; CPU seconds per request do not (they are what the server itself spent).
    """
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo.extend(c for c, parent in parents.items() if parent == p and c not in tree)
    return sum(times.get(p, 0.0) for p in tree)


def ask(c, route: str, h: str):  # noqa: ANN001, ANN201 - an httpx client and response
    """One lookup of hash ``h`` through ``route``: reunite's own (``v1``) or HMA's ``GET /m/lookup``."""
    if route == "hma":
        return c.get("/m/lookup", params={"signal_type": "pdq", "signal": h, "banks": BANK})
    return c.post("/v1/match/hashes", json={"hashes": {"pdq": h}, "banks": [BANK]})


def sequential(url: str, key: str, bodies: list[str], warmup: int = 20,
               server_pid: int | None = None, route: str = "v1") -> dict:
    import httpx

    latencies = []
    cpu_start = 0.0
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
        for n, h in enumerate(bodies):
            if n == warmup and server_pid is not None:
                cpu_start = tree_cpu_seconds(server_pid)
            start = time.perf_counter()
            r = ask(c, route, h)
            elapsed = time.perf_counter() - start
            if r.status_code != 200:
                raise SystemExit(f"lookup answered {r.status_code}: {r.text[:200]}")
            if n >= warmup:
                latencies.append(elapsed)
    lat = np.array(latencies)
    out = {"requests": int(lat.size), "requests_per_second": round(lat.size / lat.sum(), 1),
           "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
           "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2)}
    if server_pid is not None:
        cpu = tree_cpu_seconds(server_pid) - cpu_start
        out["server_cpu_ms_per_request"] = round(1000 * cpu / max(lat.size, 1), 2)
    return out


WRK_SCRIPT = """
local bodies = {}
local n = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
request = function()
  n = n + 1
  local line = bodies[(n % #bodies) + 1]
  if string.sub(line, 1, 1) == "/" then return wrk.format("GET", line) end
  return wrk.format("POST", "/v1/match/hashes", nil, line)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"errors\\": %d, \\"p50_ms\\": %.2f, "
    .. "\\"p90_ms\\": %.2f, \\"p99_ms\\": %.2f, \\"seconds\\": %.2f}\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, summary.duration / 1e6))
end
"""


def with_wrk(url: str, key: str, bodies: list[str], seconds: int, connections: int,
             server_pid: int | None = None, route: str = "v1") -> dict:
    folder = Path(tempfile.mkdtemp(prefix="reunite-wrk-"))
    cpu_start = tree_cpu_seconds(server_pid) if server_pid is not None else 0.0
    try:
        (folder / "bodies.txt").write_text("".join(
            (f"/m/lookup?signal_type=pdq&signal={h}&banks={BANK}" if route == "hma"
             else json.dumps({"hashes": {"pdq": h}, "banks": [BANK]})) + "\n" for h in bodies))
        (folder / "post.lua").write_text(WRK_SCRIPT)
        out = subprocess.run(
            ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency",
             "-H", f"X-API-Key: {key}", "-H", "Content-Type: application/json",
             "-s", str(folder / "post.lua"), url, "--", str(folder / "bodies.txt")],
            capture_output=True, text=True, check=True).stdout
    finally:
        shutil.rmtree(folder)
    line = next(x for x in out.splitlines() if x.startswith("JSON "))
    result = json.loads(line[5:])
    result["requests_per_second"] = round(result["requests"] / result["seconds"], 1)
    result["connections"] = connections
    if server_pid is not None:
        cpu = tree_cpu_seconds(server_pid) - cpu_start
        result["server_cpu_ms_per_request"] = round(1000 * cpu / max(result["requests"], 1), 2)
    return result


def run(data: Path, workers: list[int], seconds: int, connections: int, sequential_n: int,
        route: str = "v1") -> dict:
    bodies = lookups(2000)
    key = partner_key(data)
    report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "runs": []}
    for n in workers:
        server, url = start_server(data, n)
        try:
            seq = sequential(url, key, bodies[:sequential_n], server_pid=server.pid, route=route)
            load = with_wrk(url, key, bodies, seconds, connections, server_pid=server.pid, route=route) \
                if seconds > 0 else {}
        finally:
            server.terminate()
            server.wait(timeout=60)
        entry = {"workers": n, "route": route, "load_average": os.getloadavg()[0], "sequential": seq,
                 "wrk": load}
        print(json.dumps(entry), flush=True)
        report["runs"].append(entry)
    return report


def profile(data: Path, requests: int, out: Path) -> None:
    import httpx

    bodies = lookups(requests + 20)
    key = partner_key(data)
    raw = out.with_suffix(".collapsed")
    server, url = start_server(data, 1)
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
            for h in bodies[:20]:
                c.post("/v1/match/hashes", json={"hashes": {"pdq": h}, "banks": [BANK]})
            spy_exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen([spy_exe, "record", "--pid", str(server.pid), "--format", "raw",
                                    "--output", str(raw), "--rate", "500", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2)
            t0 = time.perf_counter()
            for h in bodies[20:]:
                r = c.post("/v1/match/hashes", json={"hashes": {"pdq": h}, "banks": [BANK]})
                if r.status_code != 200:
                    raise SystemExit(f"lookup answered {r.status_code}: {r.text[:200]}")
            elapsed = time.perf_counter() - t0
            time.sleep(0.5)
            spy.send_signal(2)
            spy.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=60)
    out.write_text(summarise(raw, requests, elapsed))
    print(out.read_text())


PROJECT = ("(api/", "(matcher/", "(indexer/")
LIBRARIES = {"SQLAlchemy (all)": "sqlalchemy/", "FastAPI + Starlette routing": "fastapi/",
             "pydantic": "pydantic", "uvicorn + h11": "uvicorn/protocols", "json": "json/"}


def summarise(raw: Path, requests: int, elapsed: float) -> str:
    """Shares of the busy samples (those inside a request: project, FastAPI, uvicorn frames),
    inclusive, for reunite's own functions and a few libraries as wholes."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not any(m in stack for m in (*PROJECT, "fastapi/", "starlette/", "uvicorn/protocols")):
            continue  # an idle thread or the event loop waiting
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # per function, not line
        for f in dict.fromkeys(f for f in frames if any(p in f for p in PROJECT)):
            inclusive[f] = inclusive.get(f, 0) + n
        for label, marker in LIBRARIES.items():
            if marker in stack:
                inclusive[label] = inclusive.get(label, 0) + n
    top = sorted(inclusive.items(), key=lambda kv: -kv[1])
    lines = [f"{requests} sequential requests in {elapsed:.2f} s ({requests / elapsed:.1f}/s); "
             f"{total} busy samples; share of them per function (inclusive):"]
    lines += [f"{100 * c / max(total, 1):5.1f}%  {name}" for name, c in top[:30]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--references", type=int, default=10_000_000)
    parser.add_argument("--suite-root", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "reunite-pdq-real.npy")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build")
    r = sub.add_parser("run")
    r.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    r.add_argument("--seconds", type=int, default=20)
    r.add_argument("--connections", type=int, default=8)
    r.add_argument("--sequential", type=int, default=500)
    r.add_argument("--route", choices=["v1", "hma"], default="v1",
                   help="POST /v1/match/hashes, or HMA's GET /m/lookup")
    p = sub.add_parser("profile")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--out", type=Path, default=Path("hash_http_profile.txt"))
    args = parser.parse_args()
    if args.command == "build":
        print(json.dumps(build(args.data, args.references, args.suite_root, args.cache), indent=2))
    elif args.command == "run":
        print(json.dumps(run(args.data, args.workers, args.seconds, args.connections, args.sequential,
                                         args.route),
                         indent=2))
    else:
        profile(args.data, args.requests, args.out)


if __name__ == "__main__":
    main()
