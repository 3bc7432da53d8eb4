"""Text lines read from stored images (the ``text`` family), one row per line with its box.

Why a table and not vectors: a line of text is searched by what it says
("which photos show this number"), never by distance, so it has no FAISS
index; the rows are the source of truth and :mod:`matcher.networks.photo_contacts`
derives contacts from them. Deleting an image (consent withdrawal, retention)
deletes its lines by cascade. ``photo_contacts`` holds the contacts the
linking step read from those lines (defined here so that every store has the
table, whichever modules a process imported).
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from indexer.signals.base import Annotation
from indexer.store.catalog import Base, Item

# Longest line kept (characters): a painted contact is short; a screenshot's paragraph is cut.
MAX_TEXT = 500


class ImageText(Base):
    """One line of text read from one stored image."""

    __tablename__ = "image_texts"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    bank_id: Mapped[int] = mapped_column(Integer, index=True)
    annotator: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(MAX_TEXT))
    confidence: Mapped[float] = mapped_column(Float)
    left: Mapped[int] = mapped_column(Integer)
    top: Mapped[int] = mapped_column(Integer)
    right: Mapped[int] = mapped_column(Integer)
    bottom: Mapped[int] = mapped_column(Integer)

    @property
    def box(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


class PhotoContact(Base):
    """A contact read from a text line of a stored image (normalised; by matcher.networks.photo_contacts)."""

    __tablename__ = "photo_contacts"
    __table_args__ = (Index("ix_photo_contacts_lookup", "bank_id", "kind", "value"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    text_id: Mapped[int] = mapped_column(ForeignKey("image_texts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    confidence: Mapped[float] = mapped_column(Float)


def add_annotations(s: Session, item: Item, annotations: list[Annotation]) -> list[ImageText]:
    """Store ``annotations`` of a new ``item`` inside the caller's transaction."""
    rows = [ImageText(item_id=item.id, bank_id=item.bank_id, annotator=a.annotator,
                      text=a.text[:MAX_TEXT], confidence=float(a.confidence),
                      left=int(a.box[0]), top=int(a.box[1]), right=int(a.box[2]), bottom=int(a.box[3]))
            for a in annotations]
    s.add_all(rows)
    return rows


def texts_of(s: Session, item_ids: list[int]) -> dict[int, list[ImageText]]:
    """Item id -> its text lines in reading order."""
    out: dict[int, list[ImageText]] = {}
    for start in range(0, len(item_ids), 900):  # SQLite's bound-parameter limit
        chunk = item_ids[start:start + 900]
        for row in s.scalars(select(ImageText).where(ImageText.item_id.in_(chunk))
                             .order_by(ImageText.item_id, ImageText.top, ImageText.left, ImageText.id)):
            out.setdefault(int(row.item_id), []).append(row)
    return out
