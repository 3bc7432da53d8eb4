"""``reunite eval``: index a benchmark suite's gallery, match its queries, score.

A suite folder holds ``gallery.csv`` (path,label) and ``queries.csv``
(path,label,transform; empty label = non-mated), paths relative to the suite.
Everything runs on a temporary data folder through the same code paths as
production (ingest or enroll, then ``Matcher``), so the numbers describe the
tool users run, not a special benchmark path.
"""

from __future__ import annotations

import csv
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer import images, ingest
from indexer.kinds import default_families
from indexer.signals import base as signals
from indexer.store.store import Store
from matcher.evaluation import metrics
from matcher.search.query import Matcher

KIND_TO_BANK = {"copy": "ads", "face": "missing_person", "venue": "venue"}


class SuiteError(ValueError):
    """The suite folder is not usable (missing or malformed manifests)."""


@dataclass
class EvalResult:
    kind: str
    suite: str
    summary: dict[str, Any]
    answers: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    index_report: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "suite": self.suite, "timing": self.timing,
                "index": self.index_report, **self.summary}


def read_suite(suite: Path) -> tuple[list[ingest.Record], list[metrics.QueryTruth]]:
    gallery_csv, queries_csv = suite / "gallery.csv", suite / "queries.csv"
    for f in (gallery_csv, queries_csv):
        if not f.is_file():
            raise SuiteError(f"{f} is missing (a suite needs gallery.csv and queries.csv)")
    try:
        gallery = ingest.read_source(gallery_csv)
    except ingest.ManifestError as exc:
        raise SuiteError(str(exc)) from None
    with queries_csv.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise SuiteError(f"{queries_csv}: needs columns path,label,transform")
        queries = [metrics.QueryTruth(r["path"], (r.get("label") or "").strip(),
                                      (r.get("transform") or "none").strip()) for r in reader]
    return gallery, queries


def _index_gallery(store: Store, kind: str, gallery: list[ingest.Record],
                   workers: int, progress: Callable[[int, int], None] | None = None,
                   signal_names: list[str] | None = None) -> dict[str, Any]:
    """Index (or enroll) the gallery; ``progress(done, total)`` after each image.

    ``signal_names`` (families or names; copy suites only) replaces the bank kind's
    defaults, so that a signal set can be measured as users would index with it.
    """
    bank_kind = KIND_TO_BANK[kind]
    if bank_kind in ("missing_person", "venue"):
        try:
            from indexer import enroll
        except ImportError:
            enroll = None  # type: ignore[assignment]
        if enroll is not None and hasattr(enroll, "enroll_records"):
            rows = [{"path": str(r.path), "label": r.label, **r.attributes} for r in gallery]
            report = enroll.enroll_records(store, "gallery", bank_kind, rows, for_evaluation=True,
                                           progress=progress)
            return report if isinstance(report, dict) else {"enrolled": len(rows)}
    # The copy suite names different photos of one person as different labels (README of the suite), so
    # the face leads an ads bank gives would count as wrong there: the copy eval measures copy detection.
    policy = {"face_search": False} if kind == "copy" else None
    bank = store.catalog.ensure_bank("gallery", bank_kind, policy)
    names = [s.name for s in signals.select(signal_names or default_families(bank_kind))]
    report = ingest.index_records(store, bank, gallery, names, workers=workers, source="gallery",
                                  progress=(lambda done, _failed: progress(done, len(gallery)))
                                  if progress else None)
    return {"seen": report.seen, "indexed": report.indexed, "failed": report.failed,
            "errors": report.errors[:50], "seconds": round(report.seconds, 2)}


def run_eval(suite: Path, kind: str, *, top: int = 10, limit: int | None = None,
             workers: int = 1, data_dir: Path | None = None,
             signal_names: list[str] | None = None,
             progress: Callable[[int, int], None] | None = None,
             index_progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Index the gallery, answer every query, and score the answers.

    ``index_progress(done, total)`` follows the gallery's images, ``progress`` the queries.
    """
    if kind not in KIND_TO_BANK:
        raise SuiteError(f"unknown eval kind {kind!r} (one of {', '.join(KIND_TO_BANK)})")
    if signal_names is not None:
        if kind != "copy":
            raise SuiteError("--signals applies to copy suites (faces and venues enroll their own signals)")
        try:
            signals.select(signal_names)
        except KeyError as exc:
            raise SuiteError(str(exc.args[0])) from None
    suite = Path(suite)
    gallery, queries = read_suite(suite)
    if limit is not None:
        queries = queries[:limit]
    with tempfile.TemporaryDirectory(prefix="reunite-eval-") as tmp:
        store = Store(data_dir or Path(tmp))
        t0 = time.monotonic()
        index_report = _index_gallery(store, kind, gallery, workers, index_progress, signal_names)
        index_seconds = time.monotonic() - t0
        store.checkpoint()
        bank = store.bank_or_error("gallery")
        matcher = Matcher(store)
        answers: dict[str, list[dict[str, Any]]] = {}
        lines: list[dict[str, Any]] = []
        times: list[float] = []
        for n, q in enumerate(queries, start=1):
            start = time.perf_counter()
            try:
                data = (suite / q.path).read_bytes()
                cands = [c.to_json() for c in matcher.match(data, [bank], top=top)]
                line: dict[str, Any] = {"query": q.path, "candidates": cands}
            except (images.ImageError, OSError) as exc:
                line = {"query": q.path, "candidates": [], "error": str(exc)}
            times.append(time.perf_counter() - start)
            answers[q.path] = line["candidates"]
            lines.append(line)
            if progress:
                progress(n, len(queries))
    summary = metrics.score(queries, answers)
    timing = {"gallery_images": len(gallery), "index_seconds": round(index_seconds, 2)}
    if times:
        ordered = sorted(times)
        timing.update({
            "query_ms_p50": round(1000 * statistics.median(ordered), 1),
            "query_ms_p95": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
            "query_ms_mean": round(1000 * statistics.fmean(ordered), 1),
        })
    return EvalResult(kind=kind, suite=suite.name, summary=summary, answers=lines, timing=timing,
                      index_report=index_report)
