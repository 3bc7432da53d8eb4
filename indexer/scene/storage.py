"""Where the local features of every scene vector live: one row per vector, in the catalog.

The room descriptor depends on the bank (its vocabulary is trained on the
bank), so the local features it is computed from must be kept: they are what
the bank index is rebuilt and retrained from, and what geometric verification
compares. They live in their own table beside ``vectors`` (binary, about
270 KB per image at 2,000 features) rather than in a file store, so that the
catalog stays the one source of truth: deleting an item or purging a subject
deletes its features by the foreign key's cascade, in the same transaction.

The pipeline is a pure function and cannot write tables, so the scene signal
hands its features over in the vector's ``extra`` (base64 under
:data:`LOCAL_KEY`); a ``before_flush`` hook moves them into this table as the
vector is stored. Where the hook did not run (a process that stored vectors
without importing this module), the features stay in ``extra`` and
:func:`load_features` still finds them there.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from indexer.scene.features import LocalFeatures
from indexer.store.catalog import Base, Catalog, Vector

LOCAL_KEY = "scene_local"


class SceneFeatures(Base):
    """The local features (keypoints + SIFT) of one scene vector."""

    __tablename__ = "scene_features"
    vector_id: Mapped[int] = mapped_column(
        ForeignKey("vectors.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    vector: Mapped[Vector] = relationship()


def pack(features: LocalFeatures) -> str:
    """Features as text for a vector's JSON ``extra`` (the pipeline's hand-over)."""
    return base64.b64encode(features.to_bytes()).decode("ascii")


def unpack(text: str) -> LocalFeatures:
    return LocalFeatures.from_bytes(base64.b64decode(text))


@event.listens_for(Session, "before_flush")
def _move_features(session: Session, _context: Any, _instances: Any) -> None:
    pending = [obj for obj in session.new
               if isinstance(obj, Vector) and isinstance(obj.extra, dict) and LOCAL_KEY in obj.extra]
    if not pending:
        return
    for vec in pending:
        extra = dict(vec.extra)
        blob = base64.b64decode(extra.pop(LOCAL_KEY))
        vec.extra = extra
        session.add(SceneFeatures(vector=vec, data=blob))


def load_features(catalog: Catalog, vector_ids: Iterable[int]) -> dict[int, LocalFeatures]:
    """Local features of the given scene vectors (missing ids are left out)."""
    ids = [int(i) for i in vector_ids]
    out: dict[int, LocalFeatures] = {}
    with catalog.session() as s:
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 900]
            for vid, data in s.execute(select(SceneFeatures.vector_id, SceneFeatures.data)
                                       .where(SceneFeatures.vector_id.in_(chunk))):
                out[int(vid)] = LocalFeatures.from_bytes(bytes(data))
            missing = [i for i in chunk if i not in out]
            if missing:
                for vid, extra in s.execute(select(Vector.id, Vector.extra).where(Vector.id.in_(missing))):
                    if isinstance(extra, dict) and LOCAL_KEY in extra:
                        out[int(vid)] = unpack(extra[LOCAL_KEY])
    return out


def iter_bank_features(catalog: Catalog, bank_id: int, signal: str, batch: int = 500
                       ) -> Iterator[list[tuple[int, LocalFeatures]]]:
    """All (vector id, features) of a (bank, signal), in batches of ``batch`` vectors."""
    last = 0
    while True:
        with catalog.session() as s:
            ids = list(s.scalars(select(Vector.id).where(
                Vector.bank_id == bank_id, Vector.signal == signal, Vector.id > last)
                .order_by(Vector.id).limit(batch)))
        if not ids:
            return
        found = load_features(catalog, ids)
        yield [(vid, found[vid]) for vid in ids if vid in found]
        last = int(ids[-1])


def bank_vector_ids(catalog: Catalog, bank_id: int, signal: str) -> list[int]:
    with catalog.session() as s:
        return [int(v) for v in s.scalars(select(Vector.id).where(
            Vector.bank_id == bank_id, Vector.signal == signal).order_by(Vector.id))]
