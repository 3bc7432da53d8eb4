"""Where a review candidate happened: its site and region, for the site and region tables of a release.

Publishable statistics (:mod:`matcher.privacy.dp_stats`) count candidates by bank and
week, and, when a release names them, by **site** and by **region**. This
module only answers "which site, which region" for stored candidates, from
what the catalog already keeps about the ad and the venue:

- **site**: the host of the ad the candidate is about. A watched candidate
  (the query was an ad, :mod:`api.watching`) keeps the ad's ``site`` / ``url``
  in its ``context`` and names the ad's item (``ad_item``); a candidate whose
  reference is an ad (an ads bank was searched) has that ad's item as its
  reference. The ad item's manifest columns ``site`` (else the host of
  ``url``) are read (the first manifest row that brought the image; a WARC
  crawl fills both from the record's target URI).
- **region**: the optional ``region`` column of the venue a candidate is about
  (venue manifests and HTTP enrolment keep it in the subject's attributes),
  else the ``region`` column of the ad's manifest row (kept with every other
  free column of an ads crawl). A venue is a fixed place, so its region wins
  over the region an ad claims.

Keys never come from here: a release's sites and regions are *stated* by
whoever asks for it (:class:`matcher.privacy.dp_stats.ReleaseParams`), and anything
else, or nothing, is counted under :data:`OTHER`. A key list read from the data
would itself tell whether someone from a small site is in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.store.catalog import Bank, Item, Subject
from matcher.review.queue import StoredCandidate

OTHER = "(other)"  # every candidate whose site or region is not one the release names, or unknown
REGION_FIELD = "region"
SITE_FIELD, URL_FIELD = "site", "url"
CHUNK = 900  # SQLite's bound-parameter limit, with room to spare


@dataclass(frozen=True)
class Where:
    """A candidate's site and region as comparison keys (:func:`site_key`, :func:`region_key`), or None."""

    site: str | None = None
    region: str | None = None


def site_key(value: Any) -> str | None:
    """A host name for comparison: lower case, no ``www.``, no trailing dot; a URL gives its host."""
    text = str(value or "").strip().lower()
    if not text:
        return None
    if "://" in text or text.startswith("//"):
        text = (urlsplit(text).hostname or "").lower()
    else:
        text = text.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    text = text.rstrip(".").removeprefix("www.")
    return text or None


def region_key(value: Any) -> str | None:
    """A region for comparison: trimmed, case-folded (``NL-NH`` and ``nl-nh`` are one region)."""
    text = " ".join(str(value or "").split()).casefold()
    return text or None


def _site_of(attrs: dict[str, Any] | None) -> str | None:
    attrs = attrs or {}
    return site_key(attrs.get(SITE_FIELD)) or site_key(attrs.get(URL_FIELD))


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start:start + CHUNK]


def _ad_item(row: StoredCandidate, banks: dict[int, Bank]) -> int | None:
    """The item of the ad a candidate is about: the watched ad, else an ads bank's reference."""
    context = row.context or {}
    if isinstance(context.get("ad_item"), int):
        return int(context["ad_item"])
    bank = banks.get(row.bank_id)
    return row.ref_item_id if bank is not None and bank.kind == "ads" else None


def locate(session: Session, rows: Iterable[StoredCandidate], banks: dict[int, Bank]) -> dict[int, Where]:
    """Site and region of each candidate (by candidate id), read in a few queries."""
    rows = list(rows)
    ad_items = {row.id: _ad_item(row, banks) for row in rows}
    item_attrs: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(i for i in ad_items.values() if i is not None):
        for item_id, attrs in session.execute(select(Item.id, Item.attributes).where(Item.id.in_(chunk))):
            item_attrs[int(item_id)] = dict(attrs or {})
    venue_ids = [row.subject_id for row in rows if row.subject_id is not None
                 and (bank := banks.get(row.bank_id)) is not None and bank.kind == "venue"]
    venue_regions: dict[int, Any] = {}
    for chunk in _chunks(venue_ids):
        query = select(Subject.id, Subject.attributes).where(Subject.id.in_(chunk))
        for sid, attrs in session.execute(query):
            venue_regions[int(sid)] = (attrs or {}).get(REGION_FIELD)
    out: dict[int, Where] = {}
    for row in rows:
        context = row.context or {}
        ad = item_attrs.get(ad_items[row.id] or -1, {})
        site = _site_of(context) or _site_of(ad)
        region = (region_key(venue_regions.get(row.subject_id or -1))
                  or region_key(ad.get(REGION_FIELD)) or region_key(context.get(REGION_FIELD)))
        out[row.id] = Where(site, region)
    return out
