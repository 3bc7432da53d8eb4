"""A network drawn as a picture: ads as dots, links as lines coloured by their kind.

Laid out on the server (networkx's spring layout with a fixed seed, so the
same network draws the same way on every visit) and rendered by the page
template as inline SVG: no script, nothing fetched, and a screen reader gets
the table of links next to it. Large networks are drawn by their most linked
ads (:data:`MAX_DRAWN`); the table below the picture lists every link.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from matcher.networks.components import Network

MAX_DRAWN = 150
WIDTH, HEIGHT, MARGIN = 720, 460, 36
# Link kinds (matcher.networks.store.LINK_KINDS) grouped into what an investigator reads them as.
KIND_GROUPS = {"photo": "photo", "face": "face", "scene": "room", "phone": "phone", "email": "e-mail",
               "photo_text_phone": "text in photo", "photo_text_email": "text in photo",
               "photo_text_handle": "text in photo"}
GROUP_ORDER = ("photo", "face", "room", "phone", "e-mail", "text in photo")


@dataclass(frozen=True)
class Node:
    subject_id: int
    label: str
    x: float
    y: float
    degree: int


@dataclass(frozen=True)
class Edge:
    a: Node
    b: Node
    kinds: tuple[str, ...]  # the groups of every link between the two ads
    strength: float

    @property
    def group(self) -> str:
        """The kind the line is drawn in: the first of :data:`GROUP_ORDER` among its kinds."""
        return next(g for g in GROUP_ORDER if g in self.kinds)


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    groups: list[str]  # the kinds present, for the legend
    drawn_all: bool


def group_of(kind: str) -> str:
    return KIND_GROUPS.get(kind, kind)


def draw(net: Network, width: int = WIDTH, height: int = HEIGHT) -> Drawing:
    """Positions of the ads of ``net`` and its links, scaled into ``width`` x ``height``."""
    pairs: dict[tuple[int, int], list[tuple[str, float]]] = {}
    for link in net.links:
        pairs.setdefault((min(link.a, link.b), max(link.a, link.b)), []).append(
            (group_of(link.kind), float(link.strength)))
    graph = nx.Graph()
    graph.add_nodes_from(ad.subject_id for ad in net.ads)
    graph.add_edges_from(pairs)
    kept = sorted(graph.nodes, key=lambda n: (-graph.degree(n), n))[:MAX_DRAWN]
    sub = graph.subgraph(kept)
    if len(sub) == 1:
        positions = {kept[0]: (0.0, 0.0)}
    else:
        positions = nx.spring_layout(sub, seed=7, k=1.6 / max(1, len(sub)) ** 0.5, iterations=80)
    xs = [p[0] for p in positions.values()] or [0.0]
    ys = [p[1] for p in positions.values()] or [0.0]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0

    def place(n: int) -> tuple[float, float]:
        x, y = positions[n]
        if len(positions) == 1:
            return width / 2, height / 2
        return (MARGIN + (x - min(xs)) / span_x * (width - 2 * MARGIN),
                MARGIN + (y - min(ys)) / span_y * (height - 2 * MARGIN))

    labels = {ad.subject_id: ad.label for ad in net.ads}
    nodes = {n: Node(n, labels.get(n, str(n)), *place(n), graph.degree(n)) for n in kept}
    edges = [Edge(nodes[a], nodes[b], tuple(sorted({k for k, _s in links})), max(s for _k, s in links))
             for (a, b), links in sorted(pairs.items()) if a in nodes and b in nodes]
    groups = [g for g in GROUP_ORDER if any(g in e.kinds for e in edges)]
    return Drawing(width, height, sorted(nodes.values(), key=lambda n: n.subject_id), edges, groups,
                   len(kept) == len(graph))
