"""Which banks watch which: every new ad is checked against the references that watch its bank.

A *watcher* is a bank of things to look out for in the ads: consented
missing persons (``missing_person``), known rooms (``venue``) and partners'
hash lists (``hashes``). By default every watcher watches every ``ads`` bank
of the data folder, so indexing a crawl asks, without anyone submitting an
image by hand, whether a new ad shows one of them. A watcher's policy
narrows that with one key:

    ``watches: [names]``   the ads banks it watches (``[]``: none)

It sits on the watcher, not on the ads bank, because the watcher is what is
enrolled, consented and owned by a case: who looks out for a person is
decided where the person is. Names that are no bank (yet) are kept and
simply watch nothing until such an ads bank exists.

What was checked is kept in ``watch_checks``: one row per (ad item, watcher
bank) with the highest watcher item id the check covered. An ad is due for
a check when it has no row, or when the watcher gained references since
(a newly enrolled person: the back-search). So a re-run, or a resume after a
kill, checks only what was not checked, and the queue (idempotent per query
image x subject) gains nothing twice.

This module knows nothing of HTTP or of the review queue; the application
layer (:mod:`api.watching`) runs the checks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from indexer.store.catalog import Bank, Base, Catalog, Item, utcnow

WATCHED_KINDS = ("ads",)
WATCHER_KINDS = ("missing_person", "venue", "hashes")
WATCHES_KEY = "watches"
KEEP_PHOTOS_KEY = "keep_photos"
MAX_WATCHED_NAMES = 200


class WatchCheck(Base):
    """One ad item checked against one watcher bank, up to the watcher's item ``upto_item_id``."""

    __tablename__ = "watch_checks"
    __table_args__ = (UniqueConstraint("item_id", "watcher_bank_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    watcher_bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    upto_item_id: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str] = mapped_column(String(16), default="checked")
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def check_policy(kind: str, policy: dict[str, Any] | None) -> None:
    """Raise ValueError (a message safe to show) when the watch keys of a policy are malformed."""
    policy = policy or {}
    if WATCHES_KEY in policy:
        if kind not in WATCHER_KINDS:
            raise ValueError(f"policy '{WATCHES_KEY}' is for {', '.join(WATCHER_KINDS)} banks, "
                             f"not {kind} banks")
        names = policy[WATCHES_KEY]
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"policy '{WATCHES_KEY}' must be a list of bank names")
        if len(names) > MAX_WATCHED_NAMES:
            raise ValueError(f"policy '{WATCHES_KEY}' may name at most {MAX_WATCHED_NAMES} banks")
    if KEEP_PHOTOS_KEY in policy:
        if kind not in WATCHED_KINDS:
            raise ValueError(f"policy '{KEEP_PHOTOS_KEY}' is for ads banks (references always keep theirs)")
        if not isinstance(policy[KEEP_PHOTOS_KEY], bool):
            raise ValueError(f"policy '{KEEP_PHOTOS_KEY}' must be true or false")


def keeps_photos(bank: Bank) -> bool:
    """Whether a bank keeps each photo for reviewers: references always, ads unless the policy says no."""
    if bank.kind in WATCHED_KINDS:
        return bool((bank.policy or {}).get(KEEP_PHOTOS_KEY, True))
    return bank.kind != "hashes"


def watches(watcher: Bank, watched: Bank) -> bool:
    """Whether ``watcher`` looks out for itself in ``watched``."""
    if watcher.kind not in WATCHER_KINDS or watched.kind not in WATCHED_KINDS:
        return False
    names = (watcher.policy or {}).get(WATCHES_KEY)
    return names is None or watched.name in {str(n).strip() for n in names}


def watchers_of(catalog: Catalog, watched: Bank) -> list[Bank]:
    """The banks that watch ``watched`` (none when it is not an ads bank), by name."""
    return [b for b in catalog.banks() if watches(b, watched)]


def watched_by(catalog: Catalog, watcher: Bank) -> list[Bank]:
    """The ads banks ``watcher`` watches, by name."""
    return [b for b in catalog.banks() if watches(watcher, b)]


def watcher_extent(catalog: Catalog, watcher: Bank) -> int:
    """The highest item id of the watcher: a check up to it covers every reference enrolled so far."""
    with catalog.session() as s:
        return int(s.scalar(select(func.max(Item.id)).where(Item.bank_id == watcher.id)) or 0)


def due_items(catalog: Catalog, watched: Bank, watcher: Bank, extent: int,
              item_ids: list[int] | None = None) -> list[int]:
    """Ad item ids of ``watched`` not yet checked against ``watcher`` up to ``extent``, oldest first."""
    conditions = [Item.bank_id == watched.id, or_(WatchCheck.id.is_(None), WatchCheck.upto_item_id < extent)]
    chunks = [None] if item_ids is None else [sorted(set(item_ids))[n:n + 900]
                                              for n in range(0, len(set(item_ids)), 900)]
    due: list[int] = []
    with catalog.session() as s:
        for chunk in chunks:  # an ingest request looks at its own items only, not the whole bank
            where = conditions if chunk is None else [*conditions, Item.id.in_(chunk)]
            q = (select(Item.id)
                 .outerjoin(WatchCheck, (WatchCheck.item_id == Item.id)
                            & (WatchCheck.watcher_bank_id == watcher.id))
                 .where(*where).order_by(Item.id))
            due.extend(int(i) for i in s.scalars(q))
    return sorted(due)


def mark_checked(catalog: Catalog, item_id: int, watcher: Bank, extent: int, result: str) -> None:
    """Record that ``item_id`` was checked against ``watcher`` up to ``extent`` (after its candidates).

    Two requests checking one ad at the same moment may both insert: the later one's
    unique-constraint failure is rolled back and it updates the earlier's row instead.
    """
    try:
        _mark(catalog, item_id, watcher, extent, result)
    except IntegrityError:
        _mark(catalog, item_id, watcher, extent, result)


def _mark(catalog: Catalog, item_id: int, watcher: Bank, extent: int, result: str) -> None:
    with catalog.session() as s:
        row = s.scalar(select(WatchCheck).where(WatchCheck.item_id == item_id,
                                                WatchCheck.watcher_bank_id == watcher.id))
        if row is None:
            s.add(WatchCheck(item_id=item_id, watcher_bank_id=watcher.id, upto_item_id=extent,
                             result=result, checked_at=utcnow()))
        else:
            row.upto_item_id = max(row.upto_item_id, extent)
            row.result, row.checked_at = result, utcnow()
