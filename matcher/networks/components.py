"""Networks: connected components of ads over links at or above a chosen strength.

One ad is a lead; a network is a case. A network is every ad reachable from
another through links of at least ``min_strength`` (default: the match score,
0.8, so that only links a person need not confirm group ads; weaker evidence
such as unverified room similarity is kept on the links and shown, not used).

A network's id is derived from its oldest ad, so it stays the same while the
network grows, and when two networks merge the older one's id survives.

Summaries carry what an investigator triages by: size, which sites, first and
last seen, phones and e-mails, how many ads appeared in the last 7 days, the
evidence by kind, and the missing-person and venue candidates its photos
raised in the review queue (by pseudonym: the queue decides who sees names).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from sqlalchemy import select

from indexer.store.catalog import Bank, Catalog, Item, Subject, utcnow
from indexer.text import displayable
from matcher.networks.store import AdContact, AdLink, AdPhoto
from matcher.review.queue import QUEUED_TIERS, StoredCandidate
from matcher.search import decide

DEFAULT_MIN_STRENGTH = decide.MATCH_SCORE
GROWTH_DAYS = 7
# Node attributes taken from the manifest columns of an ad (first non-empty value).
AD_FIELDS = ("site", "url", "posted_at", "location")


@dataclass
class Ad:
    """What the networks need of one ad."""

    subject_id: int
    label: str
    created_at: dt.datetime
    fields: dict[str, str] = field(default_factory=dict)
    photos: set[int] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)

    def seen_at(self) -> dt.datetime:
        """When the ad was posted (manifest ``posted_at``), else when it was indexed."""
        return parse_time(self.fields.get("posted_at")) or self.created_at


@dataclass
class Network:
    """One connected component with its summary."""

    id: str
    ads: list[Ad]
    links: list[AdLink]
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, now: dt.datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        seen = sorted(a.seen_at() for a in self.ads)
        since = now - dt.timedelta(days=GROWTH_DAYS)
        evidence = Counter(link.kind for link in self.links)
        return {
            "id": self.id,
            "ads": sorted(a.label for a in self.ads),
            "size": len(self.ads),
            "links": len(self.links),
            "evidence": dict(sorted(evidence.items())),
            "sites": sorted({a.fields["site"] for a in self.ads if a.fields.get("site")}),
            "first_seen": iso(seen[0]) if seen else None,
            "last_seen": iso(seen[-1]) if seen else None,
            "growth_7d": sum(1 for t in seen if since <= t <= now),
            "phones": sorted({p for a in self.ads for p in a.phones}),
            "emails": sorted({e for a in self.ads for e in a.emails}),
            "locations": sorted({a.fields["location"] for a in self.ads if a.fields.get("location")}),
            "photos": len({p for a in self.ads for p in a.photos}),
            "candidates": self.candidates,
        }


def parse_time(text: str | None) -> dt.datetime | None:
    """A naive UTC datetime from an ISO 8601 date or time, or None."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def iso(value: dt.datetime) -> str:
    return value.replace(microsecond=0).isoformat()


def network_id(bank_id: int, oldest_subject: int) -> str:
    return "N-" + hashlib.sha256(f"{bank_id}:{oldest_subject}".encode()).hexdigest()[:12]


def load_ads(catalog: Catalog, bank: Bank) -> dict[int, Ad]:
    """Every ad of ``bank`` that shows at least one image, with its fields and contacts."""
    ads: dict[int, Ad] = {}
    with catalog.session() as s:
        rows = s.execute(select(AdPhoto.subject_id, AdPhoto.item_id, AdPhoto.attributes,
                                Subject.label, Subject.created_at)
                         .join(Subject, Subject.id == AdPhoto.subject_id)
                         .where(AdPhoto.bank_id == bank.id).order_by(AdPhoto.id))
        for sid, item_id, attrs, label, created in rows:
            # Text stored before indexer.text refused bad code points is made safe here,
            # once, for every reader: JSON responses, the CLI, GraphML and GEXF.
            ad = ads.setdefault(int(sid), Ad(int(sid), displayable(label), created))
            ad.photos.add(int(item_id))
            for name in AD_FIELDS:
                value = (attrs or {}).get(name)
                if value not in (None, "") and name not in ad.fields:
                    ad.fields[name] = displayable(value)
        for sid, kind, value in s.execute(select(AdContact.subject_id, AdContact.kind, AdContact.value)
                                          .where(AdContact.bank_id == bank.id)):
            ad = ads.get(int(sid))
            if ad is not None:
                (ad.phones if kind == "phone" else ad.emails).add(displayable(value))
    return ads


def load_links(catalog: Catalog, bank: Bank, min_strength: float) -> list[AdLink]:
    with catalog.session() as s:
        return list(s.scalars(select(AdLink).where(AdLink.bank_id == bank.id,
                                                   AdLink.strength >= min_strength)
                              .order_by(AdLink.id)))


def find_networks(catalog: Catalog, bank: Bank, *, min_size: int = 2,
                  min_strength: float = DEFAULT_MIN_STRENGTH, with_candidates: bool = True
                  ) -> list[Network]:
    """The networks of ``bank``, largest first (ties: most recent growth, then id)."""
    ads = load_ads(catalog, bank)
    links = [link for link in load_links(catalog, bank, min_strength) if link.a in ads and link.b in ads]
    graph = nx.Graph()
    graph.add_nodes_from(ads)
    graph.add_edges_from((link.a, link.b) for link in links)
    by_node: dict[int, int] = {}
    components = [sorted(c) for c in nx.connected_components(graph) if len(c) >= max(min_size, 1)]
    for n, members in enumerate(components):
        for sid in members:
            by_node[sid] = n
    grouped: list[list[AdLink]] = [[] for _ in components]
    for link in links:
        if link.a in by_node:
            grouped[by_node[link.a]].append(link)
    networks = [Network(network_id(bank.id, members[0]), [ads[s] for s in members], grouped[n])
                for n, members in enumerate(components)]
    if with_candidates:
        attach_candidates(catalog, networks)
    networks.sort(key=lambda net: (-len(net.ads), net.id))
    return networks


def attach_candidates(catalog: Catalog, networks: list[Network]) -> None:
    """Review-queue candidates (match or review tier) raised by each network's photos."""
    item_to_net: dict[int, Network] = {p: net for net in networks for ad in net.ads for p in ad.photos}
    if not item_to_net:
        return
    with catalog.session() as s:
        sha_to_net: dict[str, Network] = {}
        ids = list(item_to_net)
        for start in range(0, len(ids), 900):
            for item_id, sha in s.execute(select(Item.id, Item.sha256)
                                          .where(Item.id.in_(ids[start:start + 900]))):
                sha_to_net[str(sha)] = item_to_net[int(item_id)]
        shas = list(sha_to_net)
        for start in range(0, len(shas), 900):
            q = (select(StoredCandidate, Bank.name, Bank.kind, Subject.pseudonym, Subject.label)
                 .join(Bank, Bank.id == StoredCandidate.bank_id)
                 .outerjoin(Subject, Subject.id == StoredCandidate.subject_id)
                 .where(StoredCandidate.query_sha256.in_(shas[start:start + 900]),
                        StoredCandidate.tier.in_(QUEUED_TIERS)))
            for cand, bank_name, kind, pseudonym, label in s.execute(q):
                entry = {"bank": bank_name, "kind": kind, "subject": pseudonym,
                         "tier": cand.tier, "state": cand.state, "score": round(cand.score, 4),
                         "candidate": cand.id}
                if kind != "missing_person":  # venue and ad labels are not personal
                    entry["label"] = displayable(label)
                sha_to_net[cand.query_sha256].candidates.append(entry)
    for net in networks:
        net.candidates.sort(key=lambda c: (-c["score"], c["candidate"]))


def find_network(catalog: Catalog, bank: Bank, wanted: str, *,
                 min_strength: float = DEFAULT_MIN_STRENGTH) -> Network | None:
    for net in find_networks(catalog, bank, min_size=1, min_strength=min_strength):
        if net.id == wanted:
            return net
    return None


# --- graph export -------------------------------------------------------------

def to_graph(networks: list[Network]) -> nx.Graph:
    """One node per ad, one edge per linked pair; attributes are GraphML/GEXF scalars.

    Node ids are the ad ids (labels). An edge carries its strongest link's
    ``strength``, the ``kinds`` that link the pair (``;``-separated), one
    numeric attribute per kind with that kind's strength, and ``evidence``:
    the full per-kind evidence as JSON text, so nothing is lost in tools that
    only know flat attributes.
    """
    graph = nx.Graph()
    label_of: dict[int, str] = {}
    for net in networks:
        for ad in net.ads:
            label_of[ad.subject_id] = ad.label
            attrs: dict[str, Any] = {"network": net.id, "photos": len(ad.photos),
                                     "phones": ";".join(sorted(ad.phones)),
                                     "emails": ";".join(sorted(ad.emails))}
            attrs.update({k: v for k, v in ad.fields.items() if v})
            graph.add_node(ad.label, **attrs)
        pairs: dict[tuple[int, int], list[AdLink]] = {}
        for link in net.links:
            pairs.setdefault((link.a, link.b), []).append(link)
        for (a, b), links in pairs.items():
            links.sort(key=lambda x: x.kind)
            edge: dict[str, Any] = {
                "strength": max(x.strength for x in links),
                "kinds": ";".join(x.kind for x in links),
                "evidence": json.dumps({x.kind: x.evidence for x in links}, sort_keys=True),
            }
            edge.update({x.kind: float(x.strength) for x in links})
            graph.add_edge(label_of[a], label_of[b], **edge)
    return graph


def write_graph(graph: nx.Graph, path: Path, fmt: str) -> None:
    """Write ``graph`` as ``graphml`` or ``gexf`` (both open in Gephi; GraphML in Maltego, yEd)."""
    if fmt == "graphml":
        nx.write_graphml(graph, path)
    elif fmt == "gexf":
        nx.write_gexf(graph, path)
    else:
        raise ValueError(f"unknown graph format {fmt!r} (graphml or gexf)")
