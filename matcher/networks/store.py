"""Tables of the ad graph, on the catalog's shared ``Base``: occurrences, contacts, links.

Why tables and not a graph rebuilt on demand: linking one new ad must cost
one search, not a pass over the crawl. Each table holds what has already been
worked out, so a new ad only adds rows:

- ``ad_photos``: which ad shows which stored image. An item is unique per
  bank by content, so an ad that reposts a photo another ad already has gets
  no item of its own; this row is what remembers that it showed it, with the
  manifest columns of that row (site, url, posted_at, phones, emails, ...).
- ``ad_contacts``: normalised phones and e-mails per ad, indexed by value so
  that "who else uses this number" is one lookup.
- ``ad_links``: one row per (ad pair, link kind) with its strength in [0, 1]
  and the evidence that made it. Deleting an ad or an image (consent
  withdrawal, retention) deletes its rows by cascade.
- ``ad_linked_items``: the images already searched, so a run resumes where it
  stopped and never searches an image twice.
- ``ad_prints``: each image's PDQ keys and thumbnails (:mod:`matcher.networks.prints`),
  so a new image is compared with every stored one without decoding any of them.
- ``ad_item_links``: the image pairs behind hash-based photo links, with how
  many other images witness that the pair only shares a common template; a
  pair becomes a template pair (and stops grouping its ads) when later images
  bring the witnesses up to the threshold.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from indexer.store.catalog import Base, utcnow

LINK_KINDS = ("photo", "face", "scene", "phone", "email",
              "photo_text_phone", "photo_text_email", "photo_text_handle")  # matcher.networks.photo_contacts


class AdPhoto(Base):
    """One image shown by one ad (an ad may show many, an image may be in many ads)."""

    __tablename__ = "ad_photos"
    __table_args__ = (UniqueConstraint("subject_id", "item_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(Integer, index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Contacts and same-image links of this occurrence have been worked out.
    linked: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AdContact(Base):
    """A normalised phone number or e-mail address of an ad."""

    __tablename__ = "ad_contacts"
    __table_args__ = (UniqueConstraint("subject_id", "kind", "value"),
                      Index("ix_ad_contacts_lookup", "bank_id", "kind", "value"))
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(Integer)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))


class AdLink(Base):
    """Evidence that two ads belong together; ``a < b`` (subject ids)."""

    __tablename__ = "ad_links"
    __table_args__ = (UniqueConstraint("bank_id", "a", "b", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(Integer, index=True)
    a: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    b: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    strength: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LinkedItem(Base):
    """An image whose photo, face and room links have been searched."""

    __tablename__ = "ad_linked_items"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    bank_id: Mapped[int] = mapped_column(Integer, index=True)
    linked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AdPrint(Base):
    """The linker's print of one image (PDQ keys and 32x32 grey thumbnails)."""

    __tablename__ = "ad_prints"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    bank_id: Mapped[int] = mapped_column(Integer, index=True)
    pdq: Mapped[bytes] = mapped_column(LargeBinary)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    thumb: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    trim_pdq: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    trim_quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    trim_thumb: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The 8 dihedral PDQ variants (32 bytes each) of the full and trimmed picture, so that a
    # print written by the indexing worker is searched later without decoding the image again.
    variants: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    trim_variants: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class AdItemLink(Base):
    """Two images within the link distance of each other (``a < b``, item ids)."""

    __tablename__ = "ad_item_links"
    __table_args__ = (UniqueConstraint("a", "b"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(Integer, index=True)
    a: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    b: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    distance: Mapped[int] = mapped_column(Integer)
    # Other images that share what a and b share while showing something else.
    witnesses: Mapped[int] = mapped_column(Integer, default=0)
    template: Mapped[bool] = mapped_column(Boolean, default=False)


def upsert_link(s: Session, bank_id: int, x: int, y: int, kind: str, strength: float,
                evidence: dict[str, Any]) -> bool:
    """Record a link between ads ``x`` and ``y``; keeps the strongest evidence per kind.

    Returns True when a new link was created. Self-links are ignored.
    """
    if x == y:
        return False
    if kind not in LINK_KINDS:
        raise ValueError(f"unknown link kind {kind!r}")
    a, b = (x, y) if x < y else (y, x)
    strength = round(float(min(max(strength, 0.0), 1.0)), 4)
    row = s.scalar(select(AdLink).where(AdLink.bank_id == bank_id, AdLink.a == a, AdLink.b == b,
                                        AdLink.kind == kind))
    if row is None:
        s.add(AdLink(bank_id=bank_id, a=a, b=b, kind=kind, strength=strength, evidence=evidence))
        s.flush()
        return True
    if strength > row.strength:
        row.strength = strength
        row.evidence = evidence
        row.updated_at = utcnow()
    return False


def ads_showing(s: Session, item_ids: list[int]) -> dict[int, set[int]]:
    """Item id -> ids of the ads that show it."""
    out: dict[int, set[int]] = {}
    for start in range(0, len(item_ids), 900):  # SQLite's bound-parameter limit
        chunk = item_ids[start:start + 900]
        for item_id, subject_id in s.execute(select(AdPhoto.item_id, AdPhoto.subject_id)
                                             .where(AdPhoto.item_id.in_(chunk))):
            out.setdefault(int(item_id), set()).add(int(subject_id))
    return out
