"""Indexing throughput with and without watching, in the same run (issue 16).

Builds a temporary data folder with the watchers a deployment has (a
missing-person bank of consented faces, a venue bank, a partner's PDQ list),
then indexes the same ad photos three times into three ads banks: once as
``reunite index --no-watch`` does (decode, signals, catalog, photo kept), once
followed by the watch pass as ``reunite index`` runs it
(:func:`api.watching.check_ads` with the run's :class:`api.watching.Indexed`:
each new ad matched against every watcher, its faces taken from indexing,
candidates queued), and once with the watch detecting the faces again (the
path before the reuse, and still the path of ads indexed by an earlier run).
Prints images/s of each and what the watch adds per ad.

    OMP_NUM_THREADS=1 .venv/bin/python bench/watch_bench.py --suite-root ../shared/bench --ads 200
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy


def _rows(suite: Path, name: str, limit: int, distinct_labels: bool = False) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    with (suite / name / "gallery.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if distinct_labels and row["label"] in seen:
                continue
            seen.add(row["label"])
            out.append((suite / name / row["path"], row["label"]))
            if len(out) >= limit:
                break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite-root", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/bench")
    parser.add_argument("--ads", type=int, default=200, help="ad photos indexed per run")
    parser.add_argument("--people", type=int, default=30, help="missing persons enrolled")
    parser.add_argument("--venues", type=int, default=20, help="venue photos enrolled")
    args = parser.parse_args()

    from indexer.crypto import KEY_ENV, generate_key
    os.environ.setdefault(KEY_ENV, generate_key())
    from api.application import cli_actor
    from api.cli.main import default_signals
    from api.watching import Indexed, check_ads
    from indexer import enroll, ingest, pipeline
    from indexer.signals import base as signals
    from indexer.store.photos import FileKeeper

    suite = args.suite_root
    with tempfile.TemporaryDirectory() as tmp:
        from api.application import Application
        app = Application(Path(tmp) / "data")
        people = _rows(suite, "faces", args.people, distinct_labels=True)
        enroll.enroll_records(app.store, "missing", "missing_person",
                              [{"path": str(p), "label": label} for p, label in people],
                              for_evaluation=True, photos=app.photos)
        venues = _rows(suite, "venues", args.venues)
        enroll.enroll_records(app.store, "venues", "venue",
                              [{"path": str(p), "label": label} for p, label in venues], photos=app.photos)
        partner = app.store.catalog.ensure_bank("partner", "hashes")
        from indexer.store.store import NewImage
        listed = [pipeline.extract(p.read_bytes(), ["pdq"]) for p, _l in _rows(suite, "copydet", 50)[25:]]
        app.store.add_images(partner, [NewImage(x, f"p{n}") for n, x in enumerate(listed)])
        ads = _rows(suite, "copydet", args.ads + 50)[50:]
        # Train the venue vocabulary before timing (it is trained once, at a bank's first search).
        app.matcher.match(ads[0][0].read_bytes(), [b for b in app.store.catalog.banks() if b.kind != "ads"])
        names = [s.name for s in signals.select(default_signals("ads"))]
        results = {}
        runs = (("ads_plain", None), ("ads_watched", True), ("ads_watched_detect", False))
        for bank_name, reuse in runs:
            bank = app.store.catalog.ensure_bank(bank_name, "ads")
            records = [ingest.Record(p, label, str(p), {"site": "bench.test"}) for p, label in ads]
            created: set[int] = set()
            start = time.perf_counter()
            report = ingest.index_records(app.store, bank, records, names,
                                          keeper=FileKeeper(app.photos, bank.id, False),
                                          after_batch=lambda stored, c=created: c.update(
                                              int(i.id) for i, new, _n in stored if new))
            indexed = time.perf_counter() - start
            watch_s, queued = 0.0, 0
            if reuse is not None:
                t = time.perf_counter()
                done = check_ads(app, bank, cli_actor(),
                                 indexed=Indexed(frozenset(created), frozenset(names)) if reuse else None)
                watch_s, queued = time.perf_counter() - t, done.queued
            results[bank_name] = (report.indexed, indexed, watch_s, queued)
        # What each kind of watcher costs on its own: the same ads, checked against one watcher at a time.
        per_watcher = {}
        for watcher in [b for b in app.store.catalog.banks() if b.kind != "ads"]:
            bank = app.store.catalog.ensure_bank(f"ads_{watcher.name}", "ads")
            records = [ingest.Record(p, label, str(p)) for p, label in ads]
            keeper = FileKeeper(app.photos, bank.id, False)
            created = set()
            ingest.index_records(app.store, bank, records, names, keeper=keeper,
                                 after_batch=lambda stored, c=created: c.update(
                                     int(i.id) for i, new, _n in stored if new))
            t = time.perf_counter()
            check_ads(app, bank, cli_actor(), watchers=[watcher],
                      indexed=Indexed(frozenset(created), frozenset(names)))
            per_watcher[f"{watcher.name} ({watcher.kind})"] = time.perf_counter() - t
    n_plain, t_plain, _w, _q = results["ads_plain"]
    plain_rate = n_plain / t_plain
    print(f"ads: {n_plain} photos (copydet gallery), signals {','.join(names)}; watchers: {len(people)} "
          f"missing persons, {len(venues)} venue photos, {len(listed)} partner hashes")
    print(f"index only (--no-watch):          {plain_rate:7.1f} images/s ({t_plain:.1f} s)")
    for name, what in (("ads_watched", "index + watch (faces reused)"),
                       ("ads_watched_detect", "index + watch (faces detected again)")):
        n_watch, t_index, t_watch, queued = results[name]
        watched_rate = n_watch / (t_index + t_watch)
        print(f"{what + ':':<34}{watched_rate:7.1f} images/s ({t_index:.1f} s index + {t_watch:.1f} s watch, "
              f"{queued} candidates queued); watch {1000 * t_watch / max(n_watch, 1):.1f} ms per ad; "
              f"throughput ratio watched/plain {watched_rate / plain_rate:.2f}")
    for name, seconds in per_watcher.items():
        print(f"  one watcher alone, {name}: {1000 * seconds / max(n_watch, 1):.1f} ms per ad")


if __name__ == "__main__":
    main()
