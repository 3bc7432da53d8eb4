"""What the candidate page says about the reference itself: the ad (where, when, who to call,
which network) or the venue (its name and address), in plain words.

A reviewer deciding "is this the same ad?" or "is this the same room?" needs
the reference's context beside the pictures: an ad's URL, site, phones and the
date it was first seen, and whether it already belongs to a network of linked
ads; a venue's name and address. The values are public ad text or what the
venue's enrolment recorded, never personal fields of a missing person (those
come from :func:`api.visibility.candidate_view` only). Every string is made
displayable once here (:func:`indexer.text.displayable`).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from indexer.store.catalog import Bank, Catalog, Item, Subject
from indexer.text import displayable
from matcher.networks import components as networks
from matcher.networks.store import AdContact, AdLink, AdPhoto

AD_FIELDS = ("url", "site", "posted_at", "location")
# A network larger than this is reported as "at least" so that one page view stays cheap.
MAX_NETWORK = 2000
MAX_LISTED_ADS = 12


@dataclass
class AdNetwork:
    """The reference ad's network: ads reachable over links at the networks' default strength."""

    id: str
    size: int
    links: int
    kinds: dict[str, int]
    ads: list[str]  # labels of the other ads (at most MAX_LISTED_ADS)
    truncated: bool = False


@dataclass
class AdFacts:
    """The reference ad of an ads-bank candidate, as the candidate page shows it."""

    label: str
    url: str | None = None
    site: str | None = None
    location: str | None = None
    first_seen: str | None = None
    first_seen_from: str = "posted"  # "posted" (the ad's own date) or "indexed"
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    network: AdNetwork | None = None


def ad_facts(catalog: Catalog, bank: Bank, subject: Subject | None, item: Item | None) -> AdFacts | None:
    """The reference ad's URL, site, phones, first-seen date and network; None outside ads banks."""
    if bank.kind != "ads" or (subject is None and item is None):
        return None
    fields: dict[str, str] = {}
    for attrs in [(item.attributes or {}) if item is not None else {}, *_occurrences(catalog, subject)]:
        for name in AD_FIELDS:
            value = attrs.get(name)
            if value not in (None, "") and name not in fields:
                fields[name] = displayable(value)
    label = displayable(subject.label) if subject is not None else f"item {item.id if item else '?'}"
    out = AdFacts(label=label, url=fields.get("url"), site=fields.get("site"),
                  location=fields.get("location"))
    posted = networks.parse_time(fields.get("posted_at"))
    created = subject.created_at if subject is not None else (item.created_at if item else None)
    if posted is not None:
        out.first_seen = networks.iso(posted)
    elif created is not None:
        out.first_seen, out.first_seen_from = networks.iso(created), "indexed"
    if subject is not None:
        with catalog.session() as s:
            for kind, value in s.execute(select(AdContact.kind, AdContact.value)
                                         .where(AdContact.subject_id == subject.id)
                                         .order_by(AdContact.kind, AdContact.value)):
                (out.phones if kind == "phone" else out.emails).append(displayable(value))
        out.phones, out.emails = sorted(set(out.phones)), sorted(set(out.emails))
        out.network = ad_network(catalog, bank, subject.id)
    return out


def _occurrences(catalog: Catalog, subject: Subject | None) -> list[dict[str, Any]]:
    """The manifest columns stored with each photo of the ad (matcher.networks.store.AdPhoto)."""
    if subject is None:
        return []
    with catalog.session() as s:
        return [dict(a or {}) for a in s.scalars(select(AdPhoto.attributes)
                                                 .where(AdPhoto.subject_id == subject.id)
                                                 .order_by(AdPhoto.id))]


def ad_network(catalog: Catalog, bank: Bank, subject_id: int,
               min_strength: float = networks.DEFAULT_MIN_STRENGTH) -> AdNetwork | None:
    """The connected component of ``subject_id`` over links of at least ``min_strength``.

    Walked outward from the one ad (breadth first, at most :data:`MAX_NETWORK`
    ads) rather than by computing every network of the bank, so a page view
    costs what this network costs. Its id is :func:`matcher.networks.components.network_id`
    of the oldest ad, as ``reunite networks`` names it. None for an ad linked
    to nothing.
    """
    seen = {subject_id}
    todo: deque[int] = deque([subject_id])
    links: dict[int, AdLink] = {}
    truncated = False
    with catalog.session() as s:
        while todo:
            batch = [todo.popleft() for _ in range(min(len(todo), 500))]
            for link in s.scalars(select(AdLink).where(
                    AdLink.bank_id == bank.id, AdLink.strength >= min_strength,
                    or_(AdLink.a.in_(batch), AdLink.b.in_(batch)))):
                links[link.id] = link
                for other in (link.a, link.b):
                    if other not in seen:
                        if len(seen) >= MAX_NETWORK:
                            truncated = True
                            continue
                        seen.add(other)
                        todo.append(other)
        if len(seen) == 1:
            return None
        others = sorted(seen - {subject_id})[:MAX_LISTED_ADS]
        labels = dict(s.execute(select(Subject.id, Subject.label).where(Subject.id.in_(others))).all())
    kinds = Counter(link.kind for link in links.values())
    return AdNetwork(id=networks.network_id(bank.id, min(seen)), size=len(seen), links=len(links),
                     kinds=dict(sorted(kinds.items())),
                     ads=[displayable(labels.get(o, str(o))) for o in others], truncated=truncated)


VENUE_WORDS = (("name", "Venue"), ("address", "Address"), ("room", "Room"))


def venue_facts(bank: Bank, subject: Subject | None, item: Item | None,
                evidence_venue: Any = None) -> list[tuple[str, str]]:
    """A venue's name, address and room, in that order (from the venue, its photo or the evidence)."""
    if bank.kind != "venue":
        return []
    described: dict[str, Any] = {}
    if isinstance(evidence_venue, dict):
        described.update(evidence_venue)
    described.update((item.attributes or {}) if item is not None else {})
    described.update((subject.attributes or {}) if subject is not None else {})
    return [(word, displayable(described[key])) for key, word in VENUE_WORDS if described.get(key)]
