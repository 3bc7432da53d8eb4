"""Watching: new ads checked against the banks that watch them, new references searched back.

The loop of ``../shared/DESIGN.md``: a crawl indexed by ``reunite index`` or
pushed over HTTP is matched against every bank that watches its ads bank
(:mod:`matcher.search.watch`: missing persons, venues, partners' hash lists), and an
enrolment (CLI or HTTP) checks every ad of the ads banks its bank watches
against the new references. Both are one function, :func:`check_ads`, over
the application layer, and both end in :meth:`Application.queue_candidates`,
the path HTTP and CLI ``match`` take: the same matcher (expired consent
dropped inside it), the same query photo kept, one row per ad image x subject.

Each ad is decoded once per check and matched against all its due watchers
at once. The faces of an ad indexed in the same run (:class:`Indexed`: the
CLI's ``index`` and HTTP ingest pass what they created and with which
signals) are not detected again: the vectors indexing stored for it are
handed to the face searcher (:func:`matcher.search.faces.seed_faces`), which
were the watch's largest cost (about 1.2 s of the 1.5 s an ad cost on a
loaded machine, BENCHMARKS.md). the check is recorded per (ad, watcher) only after its candidates
are in the queue, so a kill at any moment loses nothing and a re-run adds
nothing (the queue is idempotent and a recorded check is not repeated).

A watcher that needs the encryption key is skipped (not searched, not
marked) when none is configured: fail closed, and the next run with the key
catches up. The ad's bank, item, ad id, site, url and posted time travel
with each candidate as its ``context``; they describe a public ad, never a
person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.application import Actor, Application
from indexer.store.catalog import Bank, Item

PHOTO_ATTR = "photo"  # as api.enrollment.PHOTO_ATTR (kept here so this module imports no HTTP code)
CONTEXT_FIELDS = ("site", "url", "posted_at")
SYSTEM_REQUESTER = "watch"
# The watch runs on its own behalf over HTTP (the request that caused it is audited by the middleware).
SYSTEM_ACTOR = Actor(SYSTEM_REQUESTER, "system")


@dataclass(frozen=True)
class Indexed:
    """What an indexing run computed: the ad items it created and the signals it ran on each.

    For these items the catalog's face vectors are everything the face signals
    found (none stored: no face), so the watch reads them instead of detecting again.
    """

    items: frozenset[int]
    signals: frozenset[str]


@dataclass
class WatchReport:
    """What one watch pass did (counts only: no labels, nothing personal)."""

    watchers: list[str] = field(default_factory=list)
    skipped_watchers: list[str] = field(default_factory=list)
    checked: int = 0
    queued: int = 0
    no_photo: int = 0
    failed: int = 0
    faces_reused: int = 0  # ads whose faces came from indexing, not a second detection

    def summary(self) -> str:
        if not self.watchers and not self.skipped_watchers:
            return "watch: no bank watches this bank"
        line = (f"watch: {self.checked} ads checked against {', '.join(self.watchers) or 'no bank'}, "
                f"{self.queued} candidates in the review queue")
        if self.no_photo:
            line += f", {self.no_photo} without a kept photo (not checked)"
        if self.failed:
            line += f", {self.failed} unreadable"
        if self.faces_reused:
            line += f", faces of {self.faces_reused} from indexing"
        if self.skipped_watchers:
            line += (f"; not searched without REUNITE_ENCRYPTION_KEY: {', '.join(self.skipped_watchers)}"
                     " (run again with the key to catch up)")
        return line


def check_ads(app: Application, watched: Bank, actor: Actor, *, watchers: list[Bank] | None = None,
              item_ids: list[int] | None = None, paths: dict[str, Path] | None = None,
              progress: Callable[[int, int], None] | None = None,
              indexed: Indexed | None = None) -> WatchReport:
    """Check the due ads of ``watched`` against its watchers (or only ``watchers``) and queue candidates.

    ``item_ids`` narrows the pass to those ads (an HTTP ingest checks what it
    was sent); without it every ad not yet checked is (a resume, a back-search).
    ``paths`` (sha256 -> file) are the files of this run, read when no photo was kept.
    ``indexed``: the items this run created and its signals, whose faces are reused.
    """
    from matcher.search import watch

    report = WatchReport()
    candidates_of = watchers if watchers is not None else watch.watchers_of(app.store.catalog, watched)
    usable: list[tuple[Bank, int]] = []
    for w in candidates_of:
        if not watch.watches(w, watched):
            continue
        if app.cipher is None and _needs_key(w):
            report.skipped_watchers.append(w.name)
            continue
        usable.append((w, watch.watcher_extent(app.store.catalog, w)))
        report.watchers.append(w.name)
    if not usable:
        return report
    due: dict[int, list[tuple[Bank, int]]] = {}
    for w, extent in usable:
        for item_id in watch.due_items(app.store.catalog, watched, w, extent, item_ids):
            due.setdefault(item_id, []).append((w, extent))
    total = len(due)
    if progress:
        progress(0, total)
    for done, (item_id, against) in enumerate(sorted(due.items()), start=1):
        result = _check_one(app, watched, item_id, against, report, paths or {}, indexed)
        for w, extent in against:
            watch.mark_checked(app.store.catalog, item_id, w, extent, result)
        if progress:
            progress(done, total)
    app.record(actor, "watch.check", f"bank:{watched.name}", watchers=len(report.watchers),
               checked=report.checked, queued=report.queued, no_photo=report.no_photo or None,
               failed=report.failed or None, skipped=len(report.skipped_watchers) or None)
    return report


def back_search(app: Application, watcher: Bank, actor: Actor,
                progress: Callable[[int, int], None] | None = None) -> list[tuple[str, WatchReport]]:
    """Every ads bank ``watcher`` watches, checked against its references not yet searched for."""
    from matcher.search import watch

    return [(ads.name, check_ads(app, ads, actor, watchers=[watcher], progress=progress))
            for ads in watch.watched_by(app.store.catalog, watcher)]


def _needs_key(bank: Bank) -> bool:
    from indexer.store.photos import needs_encryption
    return needs_encryption(bank.kind, bank.policy)


def _check_one(app: Application, watched: Bank, item_id: int, against: list[tuple[Bank, int]],
               report: WatchReport, paths: dict[str, Path], indexed: Indexed | None = None) -> str:
    from indexer import images

    with app.store.catalog.session() as s:
        item = s.get(Item, item_id)
        if item is None:  # removed meanwhile
            return "gone"
        label = item.subject.label if item.subject is not None else None
        data = _photo(app, watched, item, paths.get(item.sha256))
        context = ad_context(watched, item, label)
        sha = item.sha256
    if data is None:
        report.no_photo += 1
        return "no_photo"
    banks = [w for w, _extent in against]
    try:
        query = app.matcher.prepare(data, banks)
    except images.ImageError:
        report.failed += 1
        return "unreadable"
    if indexed is not None and item_id in indexed.items and _seed_indexed_faces(app, query, item_id, banks,
                                                                                indexed.signals):
        report.faces_reused += 1
    candidates = app.matcher.match_query(query, banks, top=10)  # expired consent: dropped in the matcher
    queued = app.queue_candidates(candidates, banks, sha, data, SYSTEM_REQUESTER, context)
    report.checked += 1
    report.queued += len(queued)
    return "checked"


def _seed_indexed_faces(app: Application, query: Any, item_id: int, banks: list[Bank],
                        computed: frozenset[str]) -> bool:
    """Hand the query the faces indexing stored for the ad, for each face signal a watcher searches.

    Only signals the run computed on this item count (an empty list is "no face");
    a watcher's signal the run did not compute is left to the searcher to extract.
    """
    from sqlalchemy import select

    from indexer.signals import base as signals
    from indexer.signals.base import SignalVector
    from indexer.store.catalog import Vector
    from matcher.search.faces import FACE_FAMILY, seed_faces

    wanted = sorted({n for b in banks for n in app.store.index_signals(b)
                     if n in computed and signals.get(n).family == FACE_FAMILY})
    if not wanted:
        return False
    found: dict[str, list[SignalVector]] = {n: [] for n in wanted}
    with app.store.catalog.session() as s:
        rows = s.scalars(select(Vector).where(Vector.item_id == item_id, Vector.signal.in_(wanted))
                         .order_by(Vector.id))
        for row in rows:
            extra = {k: v for k, v in (row.extra or {}).items() if k != "ordinal"}
            vector = signals.get(row.signal).from_bytes(bytes(row.data))
            found[row.signal].append(SignalVector(row.signal, vector, row.quality,
                                                  tuple(row.box) if row.box else None, extra))
    for name, faces in found.items():
        seed_faces(query, name, faces)
    return True


def photo_reader(app: Application, bank: Bank) -> Callable[[Item], bytes | None]:
    """An image reader for the linker (matcher.networks.links.ImageReader): the kept photo, else the file.

    ``reunite networks`` after ``index --no-link`` has no crawl at hand: a WARC's
    payloads were spooled and removed, a folder may have moved. What indexing
    kept (the photo, bank policy ``keep_photos``) and the absolute path it stored
    are what is left to decode when a copy searcher needs the picture.
    """
    return lambda item: _photo(app, bank, item, None)


def _photo(app: Application, bank: Bank, item: Item, path: Path | None) -> bytes | None:
    """The ad's bytes: the kept photo, else the file it was indexed from when it is still there."""
    import hashlib

    from indexer.crypto import DecryptionFailed, MissingKey
    from indexer.store.photos import bank_namespace

    token = (item.attributes or {}).get(PHOTO_ATTR)
    if token:
        try:
            return app.photos.get(bank_namespace(bank.id), str(token))
        except (FileNotFoundError, MissingKey, DecryptionFailed, ValueError):
            pass
    if path is None and Path(item.source or "").is_absolute():
        path = Path(item.source)
    if path is not None and path.is_file():
        from indexer import images
        try:
            data = images._read_bytes(path, images.DEFAULT_MAX_BYTES)
        except (OSError, images.ImageError):
            return None
        if hashlib.sha256(data).hexdigest() == item.sha256:
            return data
    return None


def ad_context(bank: Bank, item: Item, label: str | None) -> dict[str, Any]:
    """What a reviewer needs to know about the ad a watched candidate came from."""
    attrs = item.attributes or {}
    out: dict[str, Any] = {"watched": True, "ad_bank": bank.name, "ad_item": item.id, "ad": label,
                           "indexed_at": _iso(item.created_at)}
    out.update({k: str(attrs[k]) for k in CONTEXT_FIELDS if attrs.get(k) not in (None, "")})
    return out


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat(timespec="seconds") if value else None


class WatchPolicyError(ValueError):
    """A watch policy change that cannot be made (a message safe to show).

    ``code`` is ``unknown_bank`` (no bank by that name: HTTP 404) or ``bad_policy`` (HTTP 422).
    """

    def __init__(self, detail: str, code: str = "bad_policy") -> None:
        super().__init__(detail)
        self.code = code


def set_watches(application: Application, actor: Actor, bank_name: str,
                names: list[str] | None, via: str = "cli") -> Bank:
    """Set which ads banks the watcher ``bank_name`` watches (``None``: all of them), audited.

    The one path for changing the ``watches`` key after a bank exists: the same checks as
    creating a bank with that policy (:func:`matcher.search.watch.check_policy`), one audit event
    naming the bank and how many banks it now watches (names of ads banks describe crawls,
    never a person, but the count is all the trail needs).
    """
    from matcher.search.watch import WATCHES_KEY, check_policy

    problem: str | None = None
    code = "bad_policy"
    with application.audited(actor, "bank.watches", f"bank:{bank_name[:120]}", via=via,
                             watches="all" if names is None else len(names)) as note:
        catalog = application.store.catalog
        bank = catalog.bank(bank_name)
        policy: dict[str, Any] = {}
        if bank is None:
            note.refuse("unknown_bank")
            problem, code = f"no bank named {bank_name!r}", "unknown_bank"
        else:
            policy = {k: v for k, v in (bank.policy or {}).items() if k != WATCHES_KEY}
            if names is not None:
                policy[WATCHES_KEY] = list(dict.fromkeys(n.strip() for n in names))
            try:
                check_policy(bank.kind, policy)
            except ValueError as exc:
                note.refuse("bad_policy")
                problem = str(exc)
        if problem is None and bank is not None:
            with catalog.session() as s:
                s.get(Bank, bank.id).policy = policy  # a new dict: the JSON column sees the change
    if problem is not None:  # refused: recorded as "rejected" above, nothing stored changed
        raise WatchPolicyError(problem, code)
    return catalog.bank(bank_name)
