"""The networks pages: ads grouped by shared photos, faces, rooms, phones and e-mails, drawn.

The same data as ``GET /v1/networks`` (the link table brought up to date
first, by the API's own update) for the same roles (investigators, admins)
and under the same audit actions (``networks.list``, ``networks.read``,
with ``via=web``). One network's page explains it: its ads with their site,
address, date and contacts, every link with its kind and strength, a drawing
(:mod:`api.web.graph_svg`), and the review-queue candidates its photos
raised; admins open those candidates, investigators see their state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from api.auth import ADMIN, INVESTIGATOR
from api.http.routes.common import audit, service
from api.http.routes.networks import _current as bring_links_up_to_date  # the API's update, one lock
from api.web import graph_svg
from api.web.access import WEB_ROLES, Refused, signed_in
from api.web.render import page
from api.web.sessions import Session
from indexer.store.catalog import Bank
from matcher.networks import components as networks

router = APIRouter(include_in_schema=False)
NETWORK_ROLES = frozenset({ADMIN, INVESTIGATOR})  # as GET /v1/networks


def _ads_banks(request: Request, name: str | None) -> list[Bank]:
    every = [b for b in service(request).store.catalog.banks() if b.kind == "ads"]
    if name:
        chosen = [b for b in every if b.name == name]
        if not chosen:
            raise Refused(404, "There is no ads bank by that name.")
        return chosen
    return every


@router.get("/networks", response_class=HTMLResponse)
def networks_page(request: Request, _session: Annotated[Session, signed_in("networks.list", NETWORK_ROLES)],
                  bank: str | None = Query(None, max_length=120),
                  min_size: int = Query(2, ge=1, le=100_000)) -> HTMLResponse:
    """Every network of the ads banks (or of one), largest first, with its size and evidence."""
    svc = service(request)
    audit(request, f"bank:{bank}" if bank else "networks", min_size=min_size, via="web")
    banks = _ads_banks(request, bank)
    bring_links_up_to_date(svc, banks)
    found = [(b, net) for b in banks
             for net in networks.find_networks(svc.store.catalog, b, min_size=min_size)]
    found.sort(key=lambda bn: (-len(bn[1].ads), bn[1].id))
    rows = [{"bank": b.name, **net.summary()} for b, net in found]
    return page(request, "networks.html", rows=rows, banks=[b.name for b in _ads_banks(request, None)],
                bank=bank, min_size=min_size, groups=graph_svg.KIND_GROUPS)


@router.get("/networks/{network_id}", response_class=HTMLResponse)
def network_page(request: Request, session: Annotated[Session, signed_in("networks.read", NETWORK_ROLES)],
                 network_id: Annotated[str, Path(pattern=r"^N-[0-9a-f]{12}$")]) -> HTMLResponse:
    """One network: the drawing, its ads, every link explained, and the candidates it raised."""
    svc = service(request)
    audit(request, f"network:{network_id}", via="web")
    banks = _ads_banks(request, None)
    bring_links_up_to_date(svc, banks)
    for bank in banks:
        net = networks.find_network(svc.store.catalog, bank, network_id)
        if net is not None:
            break
    else:
        raise Refused(404, "There is no network by that id (it may have merged into another).")
    labels = {ad.subject_id: ad.label for ad in net.ads}
    links = sorted(({"a": labels.get(x.a, str(x.a)), "b": labels.get(x.b, str(x.b)), "kind": x.kind,
                     "group": graph_svg.group_of(x.kind), "strength": float(x.strength)} for x in net.links),
                   key=lambda x: (x["a"], x["b"], x["kind"]))
    ads = sorted(net.ads, key=lambda ad: (ad.seen_at(), ad.label))
    return page(request, "network.html", net=net, summary=net.summary(), bank=bank, ads=ads, links=links,
                drawing=graph_svg.draw(net), opens_candidates=session.principal.role in WEB_ROLES)
