"""A partner hash lookup through the application layer alone (no HTTP): CPU per lookup, and per stage.

    python bench/hash_lookup_inproc.py --data /tmp/refs10m [--stages]

The same calls as ``POST /v1/match/hashes`` makes (api/http/routes/match.py):
the query id, the hash parsed, the banks chosen, :func:`api.hash_matching.lookup`
(search, consent, minors, queue write) and the audit append, on a data folder
made by ``bench/hash_http.py build``, with the lookups of that script (half
near a fixture photo, half unrelated; their CPU is also shown apart). ``--stages`` adds
the CPU spent inside the main stages (nested: a stage includes those it calls).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = [("indexer.store.catalog", "Catalog", "banks"),
          ("indexer.store.catalog", "Catalog", "signals_in_bank"),
          ("indexer.store.catalog", "Catalog", "subjects"),
          ("indexer.store.mih", "MultiIndexHashIndex", "radius_arrays"),
          ("indexer.store.mih", "MultiIndexHashIndex", "radius_owned"),
          ("matcher.search.query", "HashSearcher", "_vector_items"),
          ("matcher.search.query", "HashSearcher", "_nearest_items"),
          ("matcher.search.query", "HashSearcher", "_rank"),
          ("matcher.search.query", "HashSearcher", "_match_bank"),
          ("matcher.review.queue", "ReviewQueue", "record"),
          ("api.audit", "AuditLog", "append"),
          ("api.audit", "AuditLog", "append_after"),
          ("matcher.review.queue", "ReviewQueue", "record_in")]


def instrument(spent: dict[str, float]) -> None:
    import importlib

    for module, cls, name in STAGES:
        owner = getattr(importlib.import_module(module), cls)
        if not hasattr(owner, name):
            continue
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, __f=original, __label=f"{cls}.{name}", **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.process_time()
            try:
                return __f(*args, **kwargs)
            finally:
                spent[__label] = spent.get(__label, 0.0) + time.process_time() - start

        setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument("--top", type=int, default=10, help="candidates asked for (HMA's routes ask 100)")
    parser.add_argument("--separate-event", action="store_true",
                        help="append the audit event after the lookup, in a transaction of its own "
                             "(what main does; its lookup() takes no event)")
    args = parser.parse_args()
    os.environ.update({"REUNITE_BUDGET_ADDRESS": "off", "REUNITE_BUDGET_PARTNER": "off",
                       "REUNITE_BUDGET_PARTNER_QUEUE": "off"})
    spent: dict[str, float] = {}
    if args.stages:
        instrument(spent)
    from api import hash_matching
    try:
        from api.audit import PlannedEvent
    except ImportError:  # a tree before the one-transaction write: only --separate-event runs there
        PlannedEvent = None  # noqa: N806
        args.separate_event = True
    from api.auth import Principal
    from api.service import Service, ServiceConfig
    from bench.hash_http import BANK, lookups
    from matcher.search.hashes import parse_hashes

    svc = Service(ServiceConfig.from_env(args.data))
    svc.warm()
    partner = Principal(key_id=0, name=f"bench-inproc-{os.getpid()}", role="partner")

    def one(h: str) -> None:
        hashes = {"pdq": h}
        qid = hash_matching.query_id(hashes)
        if args.separate_event:  # the event in a transaction of its own, after the queue write's
            chosen = hash_matching.choose_banks(svc, [BANK], partner=True)
            found = hash_matching.lookup(svc, partner, parse_hashes(hashes, None), chosen, args.top, qid)
            svc.audit.append(partner.name, partner.role, "match.hashes", f"hashes:{qid}", "ok",
                             {"candidates": len(found.candidates), "queued": len(found.queued),
                              "status": 200})
        else:  # as the route does: banks, search and the write (with the event) on one unit
            event = PlannedEvent(partner.name, partner.role, "match.hashes", f"hashes:{qid}", "ok",
                                 {"status": 200})
            with svc.store.catalog.unit():
                chosen = hash_matching.choose_banks(svc, [BANK], partner=True)
                hash_matching.lookup(svc, partner, parse_hashes(hashes, None), chosen, args.top, qid, event)

    bodies = lookups(args.lookups + 30)
    for h in bodies[:30]:
        one(h)
    spent.clear()
    each: list[float] = []  # CPU s per lookup, in order: near a fixture photo and unrelated alternate
    for h in bodies[30:]:
        start = time.process_time()
        one(h)
        each.append(time.process_time() - start)
    n = len(bodies) - 30
    out = {"lookups": n, "cpu_ms_per_lookup": round(sum(each) / n * 1000, 2),
           # bodies[30:] starts at an even position: even = near (a hit), odd = unrelated (no hit)
           "hit_cpu_ms": round(sum(each[0::2]) / len(each[0::2]) * 1000, 2),
           "miss_cpu_ms": round(sum(each[1::2]) / max(len(each[1::2]), 1) * 1000, 2)}
    out.update({f"{k}_ms": round(v / n * 1000, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
