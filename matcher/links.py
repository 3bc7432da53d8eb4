"""Linking ads incrementally: each new ad or image is searched once against what is there.

A link says "these two ads belong together, because ...", with a strength on
the common score scale of :mod:`matcher.decide` (0.8 = safe without a
person). Kinds and where their strength comes from:

- ``photo``: the two ads show the same image (same sha256: 1.0) or a copy of
  it (re-encoded, resized, mirrored, cropped, overlaid): a candidate at
  decision ``match`` from the matcher's copy searchers over the ads bank (the
  hash searcher with dihedral variants, the local-feature searcher with its
  geometric verification); the strength is the candidate's score. A hash
  candidate must be *crawl grade* (:meth:`Linker.crawl_grade`): in a crawl
  every photo meets every other, and the query-time thresholds (a 64-bit hash
  within a few bits, PDQ within 70) join unrelated portraits every few
  thousand pairs, which connected components then turn into merged networks.
  So hashes link only through PDQ at a strict distance;
- ``phone`` / ``email``: a shared normalised contact (:mod:`matcher.contacts`),
  strength :attr:`LinkConfig.contact_strength`;
- ``face``: the same face in both ads, found by a radius search in the bank's
  face index at a strict distance (a quarter tighter than the signal's match
  threshold by default, since in a crawl every face meets thousands of
  strangers and one false link merges two networks); low-quality faces never link;
- ``scene``: the same room background (float signals of family ``scene``,
  where installed), capped below the match score because it is not verified
  geometrically here: shown as evidence, not used to group by default.

Each image is searched once (``ad_linked_items``) and each (ad, image)
occurrence is worked out once (``ad_photos.linked``), so linking a new ad
costs one search per new image whatever the size of the crawl.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from indexer import images, pipeline
from indexer.signals import base as signals
from indexer.signals.base import SignalVector, Thresholds, VectorKind
from indexer.store.catalog import Bank, Item, Vector
from indexer.store.store import Store
from matcher import contacts, decide
from matcher.link_store import AdContact, AdPhoto, LinkedItem, ads_showing, upsert_link
from matcher.search import HASH_FAMILY, Candidate, HashSearcher, Matcher, merge

FACE_FAMILY = "faces"
SCENE_FAMILY = "scene"
# Searchers whose candidates are not copies of a photo (they link by person, not by image).
NON_COPY_SEARCHERS = frozenset({"faces"})

ImageReader = Callable[[Item], bytes | None]


@dataclass(frozen=True)
class LinkConfig:
    """How strict linking is; the defaults favour precision (see the module docstring)."""

    region: str = contacts.DEFAULT_REGION
    # Other ads kept per searched image: everything within the review radius is
    # searched anyway; linking to the best 20 ads is enough to connect a network.
    top: int = 20
    contact_strength: float = 0.9
    # PDQ distance at or below which a hash candidate links two ads: the
    # high-precision operating point of PDQ's authors for matching at scale
    # (bank policy ``link_pdq_distance`` overrides it).
    pdq_distance: float = 31.0
    face_tightening: float = 0.75
    scene_cap: float = decide.MATCH_SCORE - 0.01


@dataclass(frozen=True)
class Occurrence:
    """One manifest row of an ads crawl: the ad, the image's sha256 and the row's columns."""

    label: str
    sha256: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class LinkReport:
    """What one update did."""

    occurrences: int = 0
    images: int = 0
    new_links: int = 0
    images_from_vectors: int = 0

    def summary(self) -> str:
        extra = (f" ({self.images_from_vectors} from stored hashes: image file not readable)"
                 if self.images_from_vectors else "")
        return (f"linked {self.occurrences} ad photo(s) and searched {self.images} new image(s){extra}: "
                f"{self.new_links} new link(s)")


class Linker:
    """Keeps the links of one data folder's ads banks up to date."""

    def __init__(self, store: Store, matcher: Matcher | None = None,
                 config: LinkConfig | None = None) -> None:
        self.store = store
        self.matcher = matcher or Matcher(store)
        self.config = config or LinkConfig()

    # --- occurrences ---------------------------------------------------------
    def record(self, bank: Bank, occurrences: Iterable[Occurrence]) -> int:
        """Remember which ad shows which stored image (reposts included); returns rows added.

        Rows whose image is not in the bank (not indexed, or failed to decode)
        are skipped: they have nothing to link by but their contacts, and an ad
        is only known here through an image.
        """
        added = 0
        occurrences = list(occurrences)
        with self.store.catalog.session() as s:
            shas = {o.sha256 for o in occurrences}
            items = _items_by_sha(s, bank.id, shas)
            for occ in occurrences:
                item_id = items.get(occ.sha256)
                if item_id is None:
                    continue
                subject = self.store.catalog.ensure_subject(s, bank.id, occ.label)
                if s.scalar(select(AdPhoto.id).where(AdPhoto.subject_id == subject.id,
                                                     AdPhoto.item_id == item_id)) is None:
                    s.add(AdPhoto(bank_id=bank.id, subject_id=subject.id, item_id=item_id,
                                  attributes=dict(occ.attributes)))
                    s.flush()
                    added += 1
        return added

    def _adopt_items(self, bank: Bank) -> None:
        """Occurrences for images stored by plain ``reunite index`` or the HTTP ingest."""
        with self.store.catalog.session() as s:
            orphan = (select(Item.id, Item.subject_id, Item.attributes)
                      .where(Item.bank_id == bank.id, Item.subject_id.is_not(None),
                             ~exists().where(and_(AdPhoto.item_id == Item.id,
                                                  AdPhoto.subject_id == Item.subject_id))))
            rows = s.execute(orphan).all()
            s.add_all(AdPhoto(bank_id=bank.id, subject_id=int(sid), item_id=int(iid),
                              attributes=dict(attrs or {})) for iid, sid, attrs in rows)

    # --- the update ----------------------------------------------------------
    def update(self, bank: Bank, read: ImageReader | None = None) -> LinkReport:
        """Link every occurrence and image of ``bank`` not linked yet.

        ``read(item)`` returns the image bytes when they are at hand (copy
        search then uses the decoded picture: dihedral variants, local
        features); otherwise an image is searched by its stored hashes.
        """
        if bank.kind != "ads":
            raise ValueError(f"bank {bank.name!r} is a {bank.kind} bank: networks link ads banks")
        report = LinkReport()
        self._adopt_items(bank)
        with self.store.catalog.session() as s:
            pending = list(s.scalars(select(AdPhoto.id).where(AdPhoto.bank_id == bank.id,
                                                              AdPhoto.linked.is_(False))
                                     .order_by(AdPhoto.id)))
        for start in range(0, len(pending), 200):
            with self.store.catalog.session() as s:
                for occ_id in pending[start:start + 200]:
                    report.new_links += self._link_occurrence(s, bank, occ_id)
                    report.occurrences += 1
        with self.store.catalog.session() as s:
            todo = list(s.scalars(select(Item.id).where(
                Item.bank_id == bank.id,
                ~exists().where(LinkedItem.item_id == Item.id)).order_by(Item.id)))
        for item_id in todo:
            links, from_vectors = self._link_image(bank, item_id, read)
            report.new_links += links
            report.images += 1
            report.images_from_vectors += int(from_vectors)
        return report

    def _link_occurrence(self, s: Session, bank: Bank, occ_id: int) -> int:
        """Contacts and same-image links of one (ad, image) occurrence."""
        occ = s.get(AdPhoto, occ_id)
        if occ is None or occ.linked:
            return 0
        new = 0
        for kind, value in sorted(contacts.contacts_of(occ.attributes or {}, self.config.region)):
            known = s.scalar(select(AdContact.id).where(AdContact.subject_id == occ.subject_id,
                                                        AdContact.kind == kind, AdContact.value == value))
            if known is None:
                s.add(AdContact(bank_id=bank.id, subject_id=occ.subject_id, kind=kind, value=value))
                s.flush()
            others = s.scalars(select(AdContact.subject_id).where(
                AdContact.bank_id == bank.id, AdContact.kind == kind, AdContact.value == value,
                AdContact.subject_id != occ.subject_id))
            for other in set(others):
                new += upsert_link(s, bank.id, occ.subject_id, int(other), kind,
                                   self.config.contact_strength, {kind: value})
        same = s.scalars(select(AdPhoto.subject_id).where(AdPhoto.item_id == occ.item_id,
                                                          AdPhoto.subject_id != occ.subject_id))
        for other in set(same):
            new += upsert_link(s, bank.id, occ.subject_id, int(other), "photo", 1.0,
                               {"sha256": 0, "items": [occ.item_id, occ.item_id]})
        occ.linked = True
        return new

    def _link_image(self, bank: Bank, item_id: int, read: ImageReader | None) -> tuple[int, bool]:
        """Photo, face and room links of one new image; returns (new links, searched by hashes)."""
        with self.store.catalog.session() as s:
            item = s.get(Item, item_id)
            assert item is not None
            vectors = list(s.scalars(select(Vector).where(Vector.item_id == item_id)))
        data = read(item) if read is not None else None
        copies, from_vectors = self._copies(bank, item, vectors, data)
        found: list[tuple[str, int, float, dict[str, Any]]] = [
            ("photo", c.item, c.score, {**c.evidence, "items": [item_id, c.item]})
            for c in copies if c.decision == decide.MATCH and c.item != item_id]
        found += self._near_vectors(bank, item_id, vectors)
        new = 0
        with self.store.catalog.session() as s:
            showing = ads_showing(s, [item_id, *{other for _k, other, _st, _e in found}])
            mine = showing.get(item_id, set())
            for kind, other_item, strength, evidence in found:
                for ad in mine:
                    for other in showing.get(other_item, set()):
                        new += upsert_link(s, bank.id, ad, other, kind, strength, evidence)
            s.add(LinkedItem(item_id=item_id, bank_id=bank.id))
        return new, from_vectors

    def _copies(self, bank: Bank, item: Item, vectors: list[Vector], data: bytes | None
                ) -> tuple[list[Candidate], bool]:
        """Copy-search candidates of an image in its own bank, from its bytes or stored hashes."""
        if data is not None:
            try:
                query = self.matcher.prepare(data, [bank])
            except images.ImageError:
                query = None
            if query is not None:
                merged: dict[Any, Candidate] = {}
                for searcher in self.matcher.searchers:
                    if searcher.name in NON_COPY_SEARCHERS or not searcher.applies(bank):
                        continue
                    for cand in searcher.search(query, bank, self.config.top):
                        if not self.crawl_grade(searcher.name, cand, bank):
                            continue
                        key = cand.subject_id if cand.subject_id is not None else ("item", cand.item)
                        merged[key] = merge(merged.get(key), cand)
                return list(merged.values()), False
        hashes = [SignalVector(v.signal, np.frombuffer(v.data, dtype=np.uint8).copy(), quality=v.quality)
                  for v in vectors if _family(v.signal) == HASH_FAMILY]
        extraction = pipeline.Extraction(sha256=item.sha256, width=item.width, height=item.height,
                                         format=item.format, frames=1, vectors=hashes)
        searcher = next((x for x in self.matcher.searchers if isinstance(x, HashSearcher)), None)
        searcher = searcher or HashSearcher(self.store, self.matcher.defaults)
        found = searcher._match_bank(extraction, bank, self.config.top)
        return [c for c in found if self.crawl_grade(searcher.name, c, bank)], True

    def crawl_grade(self, searcher: str, cand: Candidate, bank: Bank) -> bool:
        """Whether a copy candidate may link two ads of a crawl (see the module docstring).

        Exact copies count, and so do candidates at decision ``match`` of a
        searcher that verifies geometrically (local features). A hash
        candidate needs PDQ within :attr:`LinkConfig.pdq_distance` at usable
        quality, whatever the query-time thresholds are: those are calibrated
        for one query against one gallery, not for every pair of a crawl.
        """
        ev = cand.evidence
        if ev.get("sha256") == 0:
            return True
        if searcher != HashSearcher.name:
            return cand.decision == decide.MATCH
        pdq, quality = ev.get("pdq"), ev.get("pdq_quality")
        limit = float((bank.policy or {}).get("link_pdq_distance", self.config.pdq_distance))
        min_quality = getattr(signals.get("pdq"), "min_quality", 0) / 100.0
        return pdq is not None and pdq <= limit and (quality is None or quality >= min_quality)

    def _near_vectors(self, bank: Bank, item_id: int, vectors: list[Vector]
                      ) -> list[tuple[str, int, float, dict[str, Any]]]:
        """Faces and rooms of other images within a strict radius of this image's."""
        out: list[tuple[str, int, float, dict[str, Any]]] = []
        for v in vectors:
            family = _family(v.signal)
            if family not in (FACE_FAMILY, SCENE_FAMILY) or (v.extra or {}).get("low_quality"):
                continue
            signal = signals.get(v.signal)
            if signal.kind is not VectorKind.FLOAT:
                continue
            t = self.matcher.defaults.thresholds(v.signal, bank.policy)
            radius = t.match * self.config.face_tightening if family == FACE_FAMILY else t.match
            query = signal.from_bytes(bytes(v.data))[None, :]
            hits = self.store.indexes.get(bank.id, v.signal).radius_search(query, radius)[0]
            owners = self.store.catalog.vector_owners(h.vector_id for h in hits)
            kind = "face" if family == FACE_FAMILY else "scene"
            for hit in hits:
                owner = owners.get(hit.vector_id)
                if owner is None or owner[1].id == item_id or (owner[0].extra or {}).get("low_quality"):
                    continue
                strength = decide.signal_score(hit.distance, Thresholds(radius, radius * 1.5),
                                               signal.max_distance())
                if kind == "scene":
                    strength = min(strength, self.config.scene_cap)
                out.append((kind, owner[1].id, strength,
                            {"signal": v.signal, "distance": round(hit.distance, 4),
                             "items": [item_id, owner[1].id]}))
        return out


def _family(signal_name: str) -> str | None:
    try:
        return signals.get(signal_name).family
    except KeyError:  # vectors of a plug-in not loaded in this process
        return None


def _items_by_sha(s: Session, bank_id: int, shas: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    ordered = sorted(shas)
    for start in range(0, len(ordered), 900):
        chunk = ordered[start:start + 900]
        for sha, item_id in s.execute(select(Item.sha256, Item.id)
                                      .where(Item.bank_id == bank_id, Item.sha256.in_(chunk))):
            out[str(sha)] = int(item_id)
    return out


def file_reader(paths_by_sha: dict[str, Path] | None = None) -> ImageReader:
    """Image bytes of an item: from a known path, else from its source when that file is still there.

    A source is trusted only when the file's sha256 is still the item's, so a
    file replaced since indexing is searched by its stored hashes instead.
    """
    known = dict(paths_by_sha or {})

    def read(item: Item) -> bytes | None:
        candidates = [known[item.sha256]] if item.sha256 in known else []
        if item.source:
            candidates.append(Path(item.source))
        for path in candidates:
            try:
                data = images._read_bytes(path, images.DEFAULT_MAX_BYTES)
            except (OSError, images.ImageError):
                continue
            if hashlib.sha256(data).hexdigest() == item.sha256:
                return data
        return None

    return read
