"""What the two writes of a hash lookup cost: the audit event and the review-queue row.

    python bench/lookup_writes.py --data /tmp/writes-sqlite --n 300
    python bench/lookup_writes.py --data /tmp/writes-sqlite-full --n 300 --sqlite-synchronous FULL
    python bench/lookup_writes.py --data /tmp/writes-pg --n 300 --catalog-url postgresql://postgres@127.0.0.1:PORT/DB

Every partner lookup appends one hash-chained audit event (api.audit) and,
when it finds a hit, puts the candidate into the review queue (matcher.review.queue);
both go through the application layer as a request does. This measures them
alone, in one process, on a fresh catalog: CPU and wall milliseconds per
append and per queue write (a new query each, so each is an INSERT), on SQLite
(WAL, ``synchronous`` as the catalog sets it, NORMAL, or FULL to see what an
fsync per commit would add) or PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(data: Path, n: int, catalog_url: str | None, synchronous: str | None) -> dict:
    from sqlalchemy import event

    from api.application import Application
    from indexer import pipeline
    from indexer.store.store import NewImage
    from matcher.search import decide
    from matcher.search.query import Candidate

    app = Application(data, catalog_url)
    catalog = app.store.catalog
    if synchronous:
        def pragma(dbapi_connection, _record):  # noqa: ANN001 - after the catalog's own pragmas
            dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")
        event.listen(catalog.engine, "connect", pragma)
        catalog.engine.dispose()
    bank = catalog.ensure_bank("writes", "hashes", {"signals": ["hashes"], "partner_lookup": True})
    photo = (ROOT / "fixtures" / "astronaut.png").read_bytes()
    [(item, _created)] = app.store.add_images(bank, [NewImage(pipeline.extract(photo, ["pdq"]), "ref-1")])
    item_id = item.id
    out = {"catalog": "postgresql" if catalog_url else f"sqlite, synchronous={synchronous or 'NORMAL'}",
           "n": n}

    def timed(label: str, fn) -> None:  # noqa: ANN001
        for k in range(20):
            fn(-1 - k)
        cpu, wall = time.process_time(), time.perf_counter()
        for k in range(n):
            fn(k)
        out[f"{label}_cpu_ms"] = round((time.process_time() - cpu) / n * 1000, 3)
        out[f"{label}_wall_ms"] = round((time.perf_counter() - wall) / n * 1000, 3)

    stamp = time.time_ns()
    timed("audit_append", lambda k: app.audit.append(
        "bench", "partner", "match.hashes", f"hashes:{stamp}-{k}", "ok",
        {"candidates": 1, "queued": 1, "status": 200}))

    def queue(k: int) -> None:
        cand = Candidate(bank=bank.name, label="ref-1", subject_id=None, pseudonym=None, item=item_id,
                         score=0.95, decision=decide.MATCH, evidence={"pdq": 3})
        app.review.record([cand], {bank.name: bank}, f"{stamp:x}{k:+d}".ljust(64, "0")[:64], "bench")

    timed("queue_write", queue)
    catalog.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--catalog-url", default=None)
    parser.add_argument("--sqlite-synchronous", choices=["NORMAL", "FULL"], default=None)
    args = parser.parse_args()
    print(json.dumps(measure(args.data, args.n, args.catalog_url, args.sqlite_synchronous)))


if __name__ == "__main__":
    main()
