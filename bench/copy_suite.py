"""Shared by bench/calibrate_copy.py and bench/copy_bench.py: run reunite over a copy suite.

A suite is a folder with ``gallery.csv`` (path,label) and ``queries.csv``
(path,label,transform) as in ../shared/bench/README.md. The engine reads
nothing else; ``provenance.csv``, when present, is read here only to put all
queries made from one original photo into the same half of the split (so that
calibration never sees the photos it is tested on).

Each query is answered once by the real :class:`matcher.search.query.Matcher`; its
candidates with their full evidence, the PDQ-only and pHash-only baselines
(peers' defaults, no dihedral variants) and the query's wall and CPU time are
kept as one JSON record, so that thresholds can be chosen and re-scored
offline with :func:`matcher.search.decide.evidence_score`, the function that scores
live answers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from indexer import images, ingest
from indexer.signals import base as signals
from indexer.store.store import Store
from matcher import defaults as defaults_mod
from matcher.search import decide
from matcher.search.query import Matcher

BASELINES = {"pdq": 31.0, "phash": 10.0}  # HMA's and imagededup's defaults
INDEX_SIGNALS = ["hashes", "local"]
Answer = list[tuple[str, bool]]  # ranked (label, is a match decision)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def split(suite: Path, queries: list[dict[str, str]]) -> dict[str, str]:
    """query path -> "cal" or "test": half of the original photos each, by a hash of the original."""
    origin = {r["path"]: r["source_file"] for r in read_csv(suite / "provenance.csv")} \
        if (suite / "provenance.csv").exists() else {}
    out = {}
    for q in queries:
        group = q["label"] or origin.get(q["path"], q["path"])
        out[q["path"]] = "cal" if hashlib.sha1(group.encode()).digest()[0] % 2 == 0 else "test"
    return out


def build(suite: Path, data_dir: Path, bank_name: str = "copy") -> tuple[Store, Any, float]:
    """Index the suite's gallery (hashes + local features) into a fresh bank; returns seconds spent."""
    store = Store(data_dir)
    bank = store.catalog.ensure_bank(bank_name, "ads")
    records = ingest.read_source(suite / "gallery.csv")
    names = [s.name for s in signals.select(INDEX_SIGNALS)]
    start = time.perf_counter()
    report = ingest.index_records(store, bank, records, names, source=str(suite))
    store.checkpoint()
    if report.failed:
        raise RuntimeError(f"{report.failed} gallery images failed: {report.errors[:3]}")
    return store, bank, time.perf_counter() - start


def _baseline(store: Store, bank: Any, query_hashes: Any, signal: str) -> list[tuple[str, float]]:
    vectors = [v.vector for v in query_hashes.vectors if v.signal == signal]
    if not vectors:
        return []
    hits = store.indexes.get(bank.id, signal).search(np.stack(vectors[:1]), 10)[0]
    owners = store.catalog.vector_owners([h.vector_id for h in hits])
    out = []
    for h in hits:
        _vec, item, subject = owners[h.vector_id]
        out.append((subject.label if subject else str(item.id), h.distance))
    return out


def answer_one(matcher: Matcher, store: Store, bank: Any, suite: Path, q: dict[str, str]) -> dict[str, Any]:
    """One query's record: its candidates with their evidence, the baselines, wall and CPU time."""
    data = (suite / q["path"]).read_bytes()
    wall, cpu = time.perf_counter(), time.process_time()
    prepared = matcher.prepare(data, [bank])
    candidates = matcher.match_query(prepared, [bank], top=10)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"query": q["path"], "label": q["label"], "transform": q["transform"],
            "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
            "candidates": [c.to_json() for c in candidates],
            **{name: _baseline(store, bank, prepared.hashes, name) for name in BASELINES}}


def collect(store: Store, bank: Any, suite: Path, queries: list[dict[str, str]], out: Path,
            *, progress: bool = True) -> list[dict[str, Any]]:
    """Answer every query (resuming from ``out`` if it holds earlier records) and return the records."""
    done: dict[str, dict[str, Any]] = {}
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["query"]] = rec
    matcher = Matcher(store)
    matcher.match(images._read_bytes(suite / queries[0]["path"], images.DEFAULT_MAX_BYTES), [bank])
    with out.open("a", encoding="utf-8") as f:
        for n, q in enumerate(queries):
            if q["path"] in done:
                continue
            rec = answer_one(matcher, store, bank, suite, q)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            done[q["path"]] = rec
            if progress and n % 100 == 0:
                print(f"  {n}/{len(queries)} queries", flush=True)
    return [done[q["path"]] for q in queries]


def ours(defaults: defaults_mod.Defaults, policy: dict[str, Any] | None = None
         ) -> Callable[[dict[str, Any]], Answer]:
    """Answers re-scored from the recorded evidence with ``defaults`` (as the live matcher would)."""
    def answer(rec: dict[str, Any]) -> Answer:
        scored = [(decide.evidence_score(c["evidence"], defaults, policy), c["label"])
                  for c in rec["candidates"]]
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [(label, score >= decide.MATCH_SCORE) for score, label in scored]
    return answer


def baseline(signal: str) -> Callable[[dict[str, Any]], Answer]:
    limit = BASELINES[signal]
    return lambda rec: [(label, dist <= limit) for label, dist in rec[signal]]


def _score(rec: dict[str, Any], ans: Answer) -> dict[str, float]:
    label = rec["label"]
    mated = bool(label)
    top1 = bool(ans) and ans[0][0] == label
    # score.py: a wrong-label rank-1 match, or any match for a non-mated query.
    false_accept = (bool(ans) and ans[0][1] and ans[0][0] != label) if mated \
        else any(m for _l, m in ans)
    return {"mated": float(mated), "top1": float(mated and top1),
            "top5": float(mated and label in [lab for lab, _m in ans[:5]]),
            "recall": float(mated and top1 and ans[0][1]), "fa": float(false_accept)}


def metrics(records: Iterable[dict[str, Any]], answer: Callable[[dict[str, Any]], Answer]
            ) -> dict[str, dict[str, float]]:
    """score.py's metrics, overall and per transform (rates over mated / all queries)."""
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for rec in records:
        s = _score(rec, answer(rec))
        groups["OVERALL"].append(s)
        groups[rec["transform"]].append(s)
    out = {}
    for name, rows in groups.items():
        mated = sum(r["mated"] for r in rows)
        out[name] = {"n": len(rows), "mated": int(mated),
                     **{k: (sum(r[k] for r in rows) / mated if mated else 0.0)
                        for k in ("top1", "top5", "recall")},
                     "false_accept": sum(r["fa"] for r in rows) / len(rows),
                     "false_accepts": int(sum(r["fa"] for r in rows))}
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "OVERALL", kv[0])))


def times(records: list[dict[str, Any]]) -> dict[str, float]:
    wall = np.array([r["wall_s"] for r in records])
    cpu = np.array([r["cpu_s"] for r in records])
    return {"wall_p50": float(np.percentile(wall, 50)), "wall_p95": float(np.percentile(wall, 95)),
            "cpu_p50": float(np.percentile(cpu, 50)), "cpu_p95": float(np.percentile(cpu, 95))}
