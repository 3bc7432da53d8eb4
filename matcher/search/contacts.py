"""Which ads and images carry a contact: from the ads' text columns and from text read on their photos.

The one search every front end calls (``reunite search``, ``GET /v1/search``).
The query is normalised exactly as stored contacts are (E.164 phones in the
given region, canonical mailboxes, ``@handle``), so ``(212) 555-0143`` finds
``+1 212 555 0143`` painted on a photo. Only ``ads`` banks are searched:
reference banks (missing persons, venues) are never read by contact, so the
answer cannot reveal that a reference photo carries a number.

The query value is personal data: callers audit it by a digest
(:func:`query_ref`), never in clear.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from indexer.store.annotations import ImageText
from indexer.store.catalog import Bank, Catalog, Item, Subject
from matcher.networks import contacts, photo_contacts
from matcher.networks.store import AdContact, AdPhoto

KINDS = ("phone", "email", "handle")


class BadContact(ValueError):
    """The query is not a valid contact of its kind."""


def normalise_query(kind: str, text: str, region: str = contacts.DEFAULT_REGION) -> str:
    """The stored form of a queried contact; :class:`BadContact` when it is not one."""
    if kind == "phone":
        value = contacts.normalise_phone(text, region)
    elif kind == "email":
        value = contacts.normalise_email(text)
    elif kind == "handle":
        value = photo_contacts.normalise_handle(text)
    else:
        raise BadContact(f"unknown contact kind {kind!r} (phone, email or handle)")
    if value is None:
        where = f" in region {region}" if kind == "phone" else ""
        raise BadContact(f"{text!r} is not a valid {kind}{where}")
    return value


def query_ref(kind: str, value: str) -> str:
    """A 16-hex digest naming the query in the audit log (the contact itself is personal)."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]


@dataclass
class AdHit:
    """One ad that carries the contact, and where: its text columns, its photos (with boxes)."""

    bank: str
    ad: str
    pseudonym: str
    in_text: bool = False
    photos: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"bank": self.bank, "ad": self.ad, "subject": self.pseudonym, "in_text": self.in_text,
                "photos": self.photos}


def search(catalog: Catalog, kind: str, value: str, banks: list[Bank]) -> list[AdHit]:
    """Ads of ``banks`` (ads banks only) carrying the normalised contact ``value``, by ad label."""
    hits: dict[tuple[int, int], AdHit] = {}
    with catalog.session() as s:
        for bank in (b for b in banks if b.kind == "ads"):

            def hit(subject_id: int, bank: Bank = bank) -> AdHit:
                key = (bank.id, subject_id)
                if key not in hits:
                    subject = s.get(Subject, subject_id)
                    assert subject is not None
                    hits[key] = AdHit(bank.name, subject.label or "", subject.pseudonym)
                return hits[key]

            if kind in ("phone", "email"):
                for subject_id in s.scalars(select(AdContact.subject_id).where(
                        AdContact.bank_id == bank.id, AdContact.kind == kind, AdContact.value == value)):
                    hit(int(subject_id)).in_text = True
            rows = s.execute(
                select(photo_contacts.PhotoContact.item_id, ImageText, Item.sha256)
                .join(ImageText, ImageText.id == photo_contacts.PhotoContact.text_id)
                .join(Item, Item.id == photo_contacts.PhotoContact.item_id)
                .where(photo_contacts.PhotoContact.bank_id == bank.id,
                       photo_contacts.PhotoContact.kind == kind, photo_contacts.PhotoContact.value == value)
                .order_by(photo_contacts.PhotoContact.item_id, ImageText.id)).all()
            for item_id, line, sha in rows:
                ads = set(s.scalars(select(AdPhoto.subject_id).where(AdPhoto.item_id == item_id)))
                item = s.get(Item, item_id)
                if not ads and item is not None and item.subject_id is not None:
                    ads = {item.subject_id}
                for subject_id in sorted(ads):
                    hit(int(subject_id)).photos.append(
                        {"item": int(item_id), "sha256": sha, "box": line.box, "text": line.text,
                         "confidence": round(line.confidence, 3)})
    return sorted(hits.values(), key=lambda h: (h.bank, h.ad))
