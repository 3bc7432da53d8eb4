"""Linking ads incrementally: each new ad or image is searched once against what is there.

A link says "these two ads belong together, because ...", with a strength on
the common score scale of :mod:`matcher.search.decide` (0.8 = safe without a
person). Kinds and where their strength comes from:

- ``photo``: the two ads show the same image (same sha256: 1.0) or a copy of
  it. Copies are found two ways:

  * through the image's *print* (:mod:`matcher.networks.prints`): its PDQ with the
    8 dihedral variants and the PDQ of the picture with uniform borders
    trimmed, compared with every stored print at PDQ's strict distance (31 of
    256 bits, bank policy ``link_pdq_distance``; the query-time thresholds, a
    64-bit hash within a few bits or PDQ within 70, join unrelated portraits
    every few thousand pairs, which connected components then turn into merged
    networks). A pair whose shared part is a common template (several other
    images share it while showing a third content where the pair differs) is
    kept as weak evidence (strength 0.5, ``template``) and does not group;
  * by the matcher's local-feature copy searcher with geometric verification
    (cropped, pasted, rotated reposts), where the bank has local features:
    candidates at decision ``match`` link, with their score as strength;
- ``phone`` / ``email``: a shared normalised contact (:mod:`matcher.networks.contacts`),
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
costs one pass over the packed PDQ keys (milliseconds at 10,000 images) and a
few indexed catalog look-ups per new image, never a pass over the crawl.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from indexer import images
from indexer.images import Picture
from indexer.signals import base as signals
from indexer.signals.base import Thresholds, VectorKind
from indexer.signals.hashes import PDQ_SIDE
from indexer.store.catalog import Bank, Item, Subject, Vector, utcnow
from indexer.store.store import Store
from indexer.text import with_article
from matcher.networks import contacts, photo_contacts, prints
from matcher.networks.store import (
    AdContact,
    AdItemLink,
    AdLink,
    AdPhoto,
    AdPrint,
    LinkedItem,
    ads_showing,
    upsert_link,
)
from matcher.search import decide
from matcher.search.query import Candidate, HashSearcher, Matcher, merge

FACE_FAMILY = "faces"
SCENE_FAMILY = "scene"
# Searchers whose candidates are not copies of a photo (they link by person, not by image).
NON_COPY_SEARCHERS = frozenset({"faces"})

ImageReader = Callable[[Item], bytes | None]
# progress(phase, done, total) of :meth:`Linker.update`; phase is "occurrences" or "images".
LinkProgress = Callable[[str, int, int], None]


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
    # Neighbours within this PDQ distance are the witnesses of the template test
    # (the query-time review radius of PDQ: template pages sit 20-70 bits apart).
    wide_distance: float = 70.0
    max_neighbours: int = 64
    # Witnesses that make a hash pair a template pair (measured: copies of one
    # photo have 0-1, screenshots of different photos in one web page 40+).
    template_witnesses: int = 3
    template_rule: prints.TemplateRule = field(default_factory=prints.TemplateRule)
    # A template pair stays on record as evidence below the grouping strength.
    template_cap: float = decide.REVIEW_SCORE
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
        self._key_indexes: dict[int, prints.KeyIndex] = {}
        # Banks whose key index was checked against the catalog in the current update:
        # the check counts the bank's prints, a pass over the crawl, so once per update.
        self._checked: set[int] = set()
        # Per bank, the images of the occurrences record() saw: where they are all the bank's
        # unlinked images (two counts tell), update() links them without a pass over the bank.
        self._recorded: dict[int, set[int]] = {}
        # Per bank, the linked images the loaded key index accounts for (the count when it was
        # loaded plus those this process linked since), and the count read at the update's start:
        # equal, no other process linked anything meanwhile and the keys need no reload.
        self._linked: dict[int, int] = {}
        self._linked_now: dict[int, int] = {}

    # --- occurrences ---------------------------------------------------------
    def record(self, bank: Bank, occurrences: Iterable[Occurrence]) -> int:
        """Remember which ad shows which stored image (reposts included); returns rows added.

        Rows whose image is not in the bank (not indexed, or failed to decode)
        are skipped: they have nothing to link by but their contacts, and an ad
        is only known here through an image.
        """
        occurrences = list(occurrences)
        rows: list[AdPhoto] = []
        with self.store.catalog.session() as s:
            items = _items_by_sha(s, bank.id, {o.sha256 for o in occurrences})
            wanted = [(o, items[o.sha256]) for o in occurrences if o.sha256 in items]
            # Subjects and existing (ad, image) rows read once per call, not once per row.
            labels = sorted({o.label for o, _item in wanted})
            subjects: dict[str, int] = {}
            for start in range(0, len(labels), 900):
                subjects.update((str(label), int(sid)) for label, sid in s.execute(
                    select(Subject.label, Subject.id).where(Subject.bank_id == bank.id,
                                                            Subject.label.in_(labels[start:start + 900]))))
            missing = [Subject(bank_id=bank.id, label=label) for label in labels if label not in subjects]
            if missing:
                s.add_all(missing)
                s.flush()
                subjects.update((x.label, int(x.id)) for x in missing)
            ids = sorted(set(subjects.values()))
            seen: set[tuple[int, int]] = set()
            for start in range(0, len(ids), 900):
                seen.update((int(a), int(b)) for a, b in s.execute(
                    select(AdPhoto.subject_id, AdPhoto.item_id).where(
                        AdPhoto.subject_id.in_(ids[start:start + 900]))))
            self._recorded.setdefault(bank.id, set()).update(item_id for _occ, item_id in wanted)
            for occ, item_id in wanted:
                key = (subjects[occ.label], item_id)
                if key in seen:
                    continue
                seen.add(key)
                rows.append(AdPhoto(bank_id=bank.id, subject_id=key[0], item_id=item_id,
                                    attributes=dict(occ.attributes)))
            s.add_all(rows)
        return len(rows)

    def _adopt_items(self, bank: Bank, unlinked: list[int]) -> None:
        """Occurrences for images stored by plain ``reunite index`` or the HTTP ingest.

        Only the ``unlinked`` images can lack one: every linked image was adopted by the
        update that linked it (an item's own occurrence goes only with the item), so the
        images still to link are the only ones looked at, not the whole bank.
        """
        with self.store.catalog.session() as s:
            rows = []
            for start in range(0, len(unlinked), 900):  # SQLite's bound-parameter limit
                rows += s.execute(
                    select(Item.id, Item.subject_id, Item.attributes)
                    .where(Item.id.in_(unlinked[start:start + 900]), Item.subject_id.is_not(None),
                           ~exists().where(and_(AdPhoto.item_id == Item.id,
                                                AdPhoto.subject_id == Item.subject_id)))
                    .order_by(Item.id)).all()
            s.add_all(AdPhoto(bank_id=bank.id, subject_id=int(sid), item_id=int(iid),
                              attributes=dict(attrs or {})) for iid, sid, attrs in rows)

    def _unlinked(self, bank: Bank) -> list[int]:
        """The bank's images not linked yet, in id order.

        Where the images record() saw hold as many unlinked ones as the bank lacks
        links (items minus linked items: two counts on indexes), they are all of them
        and nothing else is read; otherwise (images stored by other paths, an earlier
        run that stopped) the bank is searched for them as a whole.
        """
        hint = sorted(self._recorded.pop(bank.id, set()))
        with self.store.catalog.session() as s:
            linked = _linked_count(s, bank.id)
            self._linked_now[bank.id] = linked
            if hint:
                items = s.scalar(select(func.count()).select_from(Item).where(Item.bank_id == bank.id)) or 0
                done: set[int] = set()
                for start in range(0, len(hint), 900):
                    done.update(int(i) for i in s.scalars(select(LinkedItem.item_id).where(
                        LinkedItem.item_id.in_(hint[start:start + 900]))))
                fresh = [i for i in hint if i not in done]
                if items - linked == len(fresh):
                    return fresh
            return [int(i) for i in s.scalars(select(Item.id).where(
                Item.bank_id == bank.id,
                ~exists().where(LinkedItem.item_id == Item.id)).order_by(Item.id))]

    # --- the update ----------------------------------------------------------
    def update(self, bank: Bank, read: ImageReader | None = None,
               progress: LinkProgress | None = None) -> LinkReport:
        """Link every occurrence and image of ``bank`` not linked yet.

        ``read(item)`` returns the image bytes when they are at hand (copy
        search then uses the decoded picture: dihedral variants, local
        features); otherwise an image is searched by its stored hashes.
        ``progress(phase, done, total)`` is called as the two phases advance:
        ``"occurrences"`` (each ad's rows: contacts, same file) and ``"images"``
        (each new image searched); linking a large crawl takes minutes, and a
        cron job must see it move.
        """
        if bank.kind != "ads":
            raise ValueError(f"bank {bank.name!r} is {with_article(bank.kind)} bank: networks link ads banks")
        report = LinkReport()
        self._checked.clear()
        todo = self._unlinked(bank)
        self._adopt_items(bank, todo)
        with self.store.catalog.session() as s:
            # `linked = false` (not `IS`), so that the index on `linked` reads the pending rows only.
            pending = list(s.scalars(select(AdPhoto.id).where(AdPhoto.bank_id == bank.id,
                                                              AdPhoto.linked == False)  # noqa: E712
                                     .order_by(AdPhoto.id)))
        if progress and pending:
            progress("occurrences", 0, len(pending))
        for start in range(0, len(pending), 200):
            with self.store.catalog.session() as s:
                chunk = pending[start:start + 200]
                # One read of the chunk's occurrences and of the other ads showing their images,
                # not two queries per occurrence (issue 21: linking's catalog round trips).
                occs = {int(o.id): o for o in s.scalars(select(AdPhoto).where(AdPhoto.id.in_(chunk)))}
                showing = _subjects_showing(s, {int(o.item_id) for o in occs.values()})
                for occ_id in chunk:
                    report.new_links += self._link_occurrence(s, bank, occ_id, occs.get(occ_id), showing)
                    report.occurrences += 1
            if progress:  # rows are quick: counted per chunk; images one by one below
                progress("occurrences", report.occurrences, len(pending))
        copy_searchers = self._copy_searchers(bank)
        if progress and todo:
            progress("images", 0, len(todo))
        # One transaction and one read of items, vectors and staged prints per chunk of
        # images, not three transactions per image: the commit, not the search, was
        # most of the cost of linking a small photo.
        for start in range(0, len(todo), LINK_CHUNK):
            chunk = todo[start:start + LINK_CHUNK]
            with self.store.catalog.session() as s:
                items = {int(i.id): i for i in s.scalars(select(Item).where(Item.id.in_(chunk)))}
                vectors: dict[int, list[Vector]] = {}
                for v in s.scalars(select(Vector).where(Vector.item_id.in_(chunk))):
                    vectors.setdefault(int(v.item_id), []).append(v)
                staged = _prints_of(s, chunk)
                with_text = photo_contacts.items_with_text(s, chunk)
                for item_id in chunk:
                    links, from_vectors = self._link_image(
                        s, bank, items[item_id], vectors.get(item_id, []), staged.get(item_id), read,
                        copy_searchers, has_text=item_id in with_text)
                    report.new_links += links
                    report.images += 1
                    report.images_from_vectors += int(from_vectors)
                    if progress:
                        progress("images", report.images, len(todo))
        return report

    def _link_occurrence(self, s: Session, bank: Bank, occ_id: int, occ: AdPhoto | None = None,
                         showing: dict[int, set[int]] | None = None) -> int:
        """Contacts and same-image links of one (ad, image) occurrence.

        ``occ`` and ``showing`` (item id -> ads showing it) are the caller's batched reads;
        without them they are read here.
        """
        occ = occ if occ is not None else s.get(AdPhoto, occ_id)
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
            new += photo_contacts.link_typed_contact(s, bank.id, occ.subject_id, kind, value,
                                                     self.config.contact_strength)
        if showing is None:
            showing = _subjects_showing(s, {int(occ.item_id)})
        same = showing.get(int(occ.item_id), set()) - {int(occ.subject_id)}
        for other in sorted(same):
            new += upsert_link(s, bank.id, occ.subject_id, int(other), "photo", 1.0,
                               {"sha256": 0, "items": [occ.item_id, occ.item_id]})
        occ.linked = True
        return new

    def _link_image(self, s: Session, bank: Bank, item: Item, vectors: list[Vector],
                    staged: AdPrint | None, read: ImageReader | None, copy_searchers: list[Any],
                    has_text: bool = True) -> tuple[int, bool]:
        """Photo, face and room links of one new image; returns (new links, searched by hashes).

        The image is read and decoded again only when a copy searcher needs the
        picture, or when indexing left no print (``stage_prints``) to search by.
        ``has_text=False`` (no text line read on the image, no contact stored for it: the
        caller's batched read) skips the photo-contact step, which has nothing to link then.
        """
        item_id = int(item.id)
        picture: Picture | None = None
        copies: list[Candidate] = []
        stored_features = _stored_features(item, vectors, copy_searchers)
        if stored_features is not None:  # indexing's SIFT pass, searched as is: no decode, no SIFT
            copies = self._stored_copies(bank, stored_features, copy_searchers)
            if staged is None and read is not None:  # no print either: the picture is needed for it
                picture = self._decoded_copies(bank, read(item), [])[0]
        elif read is not None and (copy_searchers or staged is None):
            data = read(item)
            picture, copies = self._decoded_copies(bank, data, copy_searchers)
        mine = _staged_print(staged) if staged is not None else self._print(vectors, picture)
        found: list[tuple[str, int, float, dict[str, Any]]] = [
            ("photo", c.item, c.score, {**c.evidence, "items": [item_id, c.item]})
            for c in copies if c.decision == decide.MATCH and c.item != item_id]
        found += self._near_vectors(bank, item_id, vectors)
        new = self._link_prints(s, bank, item_id, mine, stored=staged is not None)
        if has_text:
            new += photo_contacts.link_image(s, bank.id, item_id, self.config.region,
                                             self.config.contact_strength)
        if found:
            showing = ads_showing(s, [item_id, *{other for _k, other, _st, _e in found}])
            ads = showing.get(item_id, set())
            for kind, other_item, strength, evidence in found:
                for ad in ads:
                    for other in showing.get(other_item, set()):
                        new += upsert_link(s, bank.id, ad, other, kind, strength, evidence)
        s.add(LinkedItem(item_id=item_id, bank_id=bank.id))
        if bank.id in self._linked:  # the key index accounts for it (a rollback only forces a reload)
            self._linked[bank.id] += 1
        return new, staged is None and picture is None

    def _copy_searchers(self, bank: Bank) -> list[Any]:
        """The matcher's copy searchers other than hashes that have something to search in ``bank``."""
        return [x for x in self.matcher.searchers if x.name not in NON_COPY_SEARCHERS
                and x.name != HashSearcher.name and x.applies(bank)]

    def _stored_copies(self, bank: Bank, features: Any, searchers: list[Any]) -> list[Candidate]:
        """Copy candidates at decision ``match`` of the image whose stored local ``features``
        (:func:`_stored_features`) are searched, one per ad."""
        merged: dict[Any, Candidate] = {}
        for searcher in searchers:
            for cand in searcher.search_stored(features, bank, self.config.top):
                if cand.decision != decide.MATCH:
                    continue
                key = cand.subject_id if cand.subject_id is not None else ("item", cand.item)
                merged[key] = merge(merged.get(key), cand)
        return list(merged.values())

    def _decoded_copies(self, bank: Bank, data: bytes | None, searchers: list[Any]
                        ) -> tuple[Picture | None, list[Candidate]]:
        """The decoded image (None without bytes) and its local-feature copy candidates.

        Hash copies are found through the prints (:meth:`_link_prints`); the
        matcher's other copy searchers (local features with geometric
        verification) run when the bank has their signals, and only their
        candidates at decision ``match`` link.
        """
        if data is None:
            return None, []
        try:
            if not searchers:
                return images.load(data, max_side=PDQ_SIDE), []
            query = self.matcher.prepare(data, [bank])
        except images.ImageError:
            return None, []
        merged: dict[Any, Candidate] = {}
        for searcher in searchers:
            for cand in searcher.search(query, bank, self.config.top):
                if cand.decision != decide.MATCH:
                    continue
                key = cand.subject_id if cand.subject_id is not None else ("item", cand.item)
                merged[key] = merge(merged.get(key), cand)
        return query.picture, list(merged.values())

    # --- hash links through prints --------------------------------------------
    def _keys(self, s: Session, bank: Bank) -> prints.KeyIndex:
        """The bank's key index, loaded once per process (reloaded when another process added prints)."""
        # Only the prints of images already linked: a print staged by indexing
        # (``stage_prints``) joins the index when its own image is linked.
        index = self._key_indexes.get(bank.id)
        if index is not None and bank.id in self._checked:
            return index  # this process added every print since the check (index.add)
        self._checked.add(bank.id)
        if index is not None and bank.id in self._linked:
            # The count of linked images, read at the update's start (or now), is what this
            # process accounts for: nobody else linked anything, so no pass over the prints.
            now = self._linked_now.pop(bank.id, None)
            if now is None:
                now = _linked_count(s, bank.id)
            if now == self._linked[bank.id]:
                return index
        linked = exists().where(LinkedItem.item_id == AdPrint.item_id)
        self._linked[bank.id] = _linked_count(s, bank.id)  # in the transaction that reads the prints
        index = prints.KeyIndex()
        rows = s.execute(select(AdPrint.item_id, AdPrint.pdq, AdPrint.trim_pdq)
                         .where(AdPrint.bank_id == bank.id, linked).order_by(AdPrint.item_id))
        for item_id, pdq, trim in rows:
            index.add(int(item_id), prints.FULL, bytes(pdq))
            if trim:
                index.add(int(item_id), prints.TRIM, bytes(trim))
        self._key_indexes[bank.id] = index
        return index

    def _print(self, vectors: list[Vector], picture: Picture | None) -> prints.Print | None:
        if picture is not None:
            return prints.print_of(picture)
        stored = next((v for v in vectors if v.signal == "pdq"), None)
        if stored is None:
            return None
        return prints.Print(pdq=bytes(stored.data), quality=stored.quality)

    def _link_prints(self, s: Session, bank: Bank, item_id: int, mine: prints.Print | None,
                     stored: bool = False) -> int:
        """Hash links of a new image to every stored one, minus pairs that only share a template.

        ``stored``: the print's row is already in the catalog (written at indexing).
        """
        if mine is None:
            return 0
        cfg = self.config
        limit = float((bank.policy or {}).get("link_pdq_distance", cfg.pdq_distance))
        index = self._keys(s, bank)
        near = {k: v for k, v in index.search(mine.keys(), max(cfg.wide_distance, limit)).items()
                if k != item_id}
        near = dict(sorted(near.items(), key=lambda kv: (kv[1][0], kv[0]))[:cfg.max_neighbours])
        rows = _prints_of(s, list(near)) if near else {}
        if not stored:
            s.add(print_row(bank.id, item_id, mine))
        index.add(item_id, prints.FULL, mine.pdq)
        if mine.trim_pdq:
            index.add(item_id, prints.TRIM, mine.trim_pdq)
        thumbs = {other: _thumbs(row) for other, row in rows.items()}
        my_thumbs = _thumbs(mine)
        min_quality = getattr(signals.get("pdq"), "min_quality", 0) / 100.0
        new = 0
        pairs: list[tuple[int, int, int, bool]] = []  # (other, distance, witnesses, template)
        for other, (dist, qkind, skind) in near.items():
            row = rows.get(other)
            if row is None or dist > limit:
                continue
            qualities = [(mine.quality if qkind == prints.FULL else mine.trim_quality),
                         (row.quality if skind == prints.FULL else row.trim_quality)]
            if any(q is not None and q < min_quality for q in qualities):
                continue
            a = _pick(my_thumbs, qkind)
            b = _pick(thumbs[other], skind)
            count = 0
            if a is not None and b is not None:
                witnesses = [t for w, t in thumbs.items() if w != other and t]
                count = prints.template_witnesses(a, b, witnesses, cfg.template_rule)
            pairs.append((other, dist, count, count >= cfg.template_witnesses))
        showing = ads_showing(s, [item_id, *(p[0] for p in pairs)]) if pairs else {}
        for other, dist, count, template in pairs:
            lo, hi = sorted((item_id, other))
            s.add(AdItemLink(bank_id=bank.id, a=lo, b=hi, distance=dist, witnesses=count,
                             template=template))
            strength, evidence = self._hash_strength(dist, limit, item_id, other, count, template)
            for ad in showing.get(item_id, set()):
                for other_ad in showing.get(other, set()):
                    new += upsert_link(s, bank.id, ad, other_ad, "photo", strength, evidence)
        if pairs:
            s.flush()
        if my_thumbs and thumbs:
            self._witness_earlier_pairs(s, bank, item_id, my_thumbs, thumbs, limit)
        return new

    def _hash_strength(self, dist: int, limit: float, x: int, y: int, witnesses: int,
                       template: bool) -> tuple[float, dict[str, Any]]:
        strength = decide.signal_score(dist, Thresholds(limit, self.config.wide_distance), 256)
        evidence: dict[str, Any] = {"pdq": dist, "items": [x, y]}
        if witnesses:
            evidence["template_witnesses"] = witnesses
        if template:
            strength = min(strength, self.config.template_cap)
            evidence["template"] = True
        return strength, evidence

    def _witness_earlier_pairs(self, s: Session, bank: Bank, item_id: int,
                               my_thumbs: list[np.ndarray], thumbs: dict[int, list[np.ndarray]],
                               limit: float) -> None:
        """Count the new image as a witness against earlier hash pairs among its neighbours.

        Links are made in arrival order, so the first two ads that paste
        different photos into one template are linked before any third shows
        it is a template; each later image re-examines the pairs near it, and a
        pair whose witnesses reach the threshold stops grouping its ads.
        """
        near = [n for n, t in thumbs.items() if t]
        if not near:
            return
        earlier = list(s.scalars(select(AdItemLink).where(
            AdItemLink.bank_id == bank.id, AdItemLink.template.is_(False),
            or_(AdItemLink.a.in_(near), AdItemLink.b.in_(near)))))
        need = [x for link in earlier for x in (link.a, link.b) if x not in thumbs and x != item_id]
        if need:
            thumbs = {**thumbs, **{k: _thumbs(v) for k, v in _prints_of(s, need).items()}}
        for link in earlier:
            if item_id in (link.a, link.b):
                continue
            ta, tb = thumbs.get(link.a), thumbs.get(link.b)
            if not ta or not tb:
                continue
            if prints.template_witnesses(ta[0], tb[0], [my_thumbs], self.config.template_rule) == 0:
                continue
            link.witnesses += 1
            if link.witnesses >= self.config.template_witnesses:
                link.template = True
                self._demote(s, bank, link, limit)

    def _demote(self, s: Session, bank: Bank, pair: AdItemLink, limit: float) -> None:
        """Recompute the photo links that a pair now known to share only a template supported."""
        showing = ads_showing(s, [pair.a, pair.b])
        for x in showing.get(pair.a, set()):
            for y in showing.get(pair.b, set()):
                lo, hi = sorted((x, y))
                row = s.scalar(select(AdLink).where(AdLink.bank_id == bank.id, AdLink.a == lo,
                                                    AdLink.b == hi, AdLink.kind == "photo"))
                if row is None or "pdq" not in (row.evidence or {}) or "sha256" in row.evidence:
                    continue  # an identical file or a verified local-feature copy still stands
                items_x, items_y = _items_of(s, x), _items_of(s, y)
                support = s.scalars(select(AdItemLink).where(
                    AdItemLink.template.is_(False),
                    or_(and_(AdItemLink.a.in_(items_x), AdItemLink.b.in_(items_y)),
                        and_(AdItemLink.a.in_(items_y), AdItemLink.b.in_(items_x))))
                    .order_by(AdItemLink.distance)).first()
                if support is not None:
                    strength, evidence = self._hash_strength(support.distance, limit, support.a,
                                                             support.b, support.witnesses, False)
                else:
                    strength, evidence = self._hash_strength(pair.distance, limit, pair.a, pair.b,
                                                             pair.witnesses, True)
                row.strength = round(strength, 4)
                row.evidence = evidence
                row.updated_at = utcnow()

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


# Images linked per transaction (and per read of their items, vectors and prints).
LINK_CHUNK = 200
def print_row(bank_id: int, item_id: int, p: prints.Print) -> AdPrint:
    """The catalog row of a print (keys, variants and thumbnails)."""
    return AdPrint(**print_values(bank_id, item_id, p))


def print_values(bank_id: int, item_id: int, p: prints.Print) -> dict[str, Any]:
    """The columns of a print's catalog row."""
    return {"item_id": item_id, "bank_id": bank_id, "pdq": p.pdq, "quality": p.quality, "thumb": p.thumb,
            "trim_pdq": p.trim_pdq, "trim_quality": p.trim_quality, "trim_thumb": p.trim_thumb,
            "variants": b"".join(p.variants) or None, "trim_variants": b"".join(p.trim_variants) or None}


def _split_keys(packed: bytes | None) -> list[bytes]:
    if not packed:
        return []
    return [bytes(packed[i:i + prints.KEY_BYTES]) for i in range(0, len(packed), prints.KEY_BYTES)]


def _staged_print(row: AdPrint) -> prints.Print:
    """The print a row holds (a row written before variants were kept searches by its PDQ alone)."""
    return prints.Print(pdq=bytes(row.pdq), quality=row.quality, variants=_split_keys(row.variants),
                        thumb=row.thumb, trim_pdq=row.trim_pdq, trim_quality=row.trim_quality,
                        trim_variants=_split_keys(row.trim_variants), trim_thumb=row.trim_thumb)


def stage_prints(store: Store, bank: Bank, stored: Iterable[tuple[int, prints.Print]]) -> int:
    """Write the prints that indexing workers computed from their decode; returns rows written.

    Called per stored batch by ``reunite index`` of an ads bank: the linker then
    searches each new image by its print without reading or decoding the file
    again. A staged print takes part in searches only once its image is linked.
    """
    pairs = list(stored)
    if not pairs:
        return 0
    with store.catalog.session() as s:
        have = _print_ids(s, [item_id for item_id, _p in pairs])
        rows = [print_values(bank.id, item_id, p) for item_id, p in pairs if item_id not in have]
        if rows:  # one bulk INSERT (Core executemany), not an ORM object and flush per row
            s.execute(insert(AdPrint.__table__), rows)
    return len(rows)


def _print_ids(s: Session, item_ids: list[int]) -> set[int]:
    """Which of ``item_ids`` have a print row (their ids only: no row is loaded)."""
    out: set[int] = set()
    for start in range(0, len(item_ids), 900):
        out.update(int(i) for i in s.scalars(select(AdPrint.item_id).where(
            AdPrint.item_id.in_(item_ids[start:start + 900]))))
    return out


def _linked_count(s: Session, bank_id: int) -> int:
    """How many images of the bank are linked (a count on the bank's index, no join)."""
    return int(s.scalar(select(func.count()).select_from(LinkedItem)
                        .where(LinkedItem.bank_id == bank_id)) or 0)


def _family(signal_name: str) -> str | None:
    try:
        return signals.get(signal_name).family
    except KeyError:  # vectors of a plug-in not loaded in this process
        return None


def _prints_of(s: Session, item_ids: list[int]) -> dict[int, AdPrint]:
    out: dict[int, AdPrint] = {}
    for start in range(0, len(item_ids), 900):
        for row in s.scalars(select(AdPrint).where(AdPrint.item_id.in_(item_ids[start:start + 900]))):
            out[int(row.item_id)] = row
    return out


def _thumbs(p: AdPrint | prints.Print) -> list[np.ndarray]:
    """[full, trimmed] thumbnails as float arrays; [] without a thumbnail (hash-only print)."""
    full = prints.thumb_array(p.thumb)
    if full is None:
        return []
    trim = prints.thumb_array(p.trim_thumb)
    return [full] if trim is None else [full, trim]


def _pick(thumbs: list[np.ndarray], kind: int) -> np.ndarray | None:
    return thumbs[kind] if kind < len(thumbs) else None


def _items_of(s: Session, subject_id: int) -> list[int]:
    return [int(i) for i in s.scalars(select(AdPhoto.item_id).where(AdPhoto.subject_id == subject_id))]


def _stored_features(item: Item, vectors: list[Vector], searchers: list[Any]) -> Any:
    """The local features indexing stored for ``item`` when every copy searcher can search by
    them (``search_stored``: the local-feature one), else None (the picture is decoded)."""
    if not searchers or not all(hasattr(x, "search_stored") for x in searchers):
        return None
    from indexer.signals import local

    stored = next((v for v in vectors if v.signal == local.SIFT.name), None)
    return None if stored is None else local.unpack(bytes(stored.data), int(item.width or 0))


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


def _subjects_showing(s: Session, item_ids: set[int]) -> dict[int, set[int]]:
    """Item id -> the ads (subject ids) with an occurrence of it, for a batch of items."""
    out: dict[int, set[int]] = {}
    ordered = sorted(item_ids)
    for start in range(0, len(ordered), 900):  # SQLite's bound-parameter limit
        rows = s.execute(select(AdPhoto.item_id, AdPhoto.subject_id).where(
            AdPhoto.item_id.in_(ordered[start:start + 900])))
        for item_id, subject_id in rows:
            out.setdefault(int(item_id), set()).add(int(subject_id))
    return out
