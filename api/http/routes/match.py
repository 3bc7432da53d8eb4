"""Match: an image (investigators) or its hashes only (partners) against the banks.

Candidates at ``match`` or ``review`` are stored and enter the review queue;
subjects whose consent has expired are never returned (the matcher
drops them, for every caller: matcher/privacy/consent.py). The query image is
kept (sealed when a key is configured) only when a candidate was queued, so
that the reviewer can compare it with the reference.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from api import hash_matching, visibility
from api.auth import ADMIN, INVESTIGATOR, PARTNER, Principal, guard
from api.bank_names import bank_names
from api.errors import GUARDED, ApiError, responses
from api.http.middleware import APPENDED, planned_event
from api.http.routes.common import audit, known_fields_only, service
from api.http.schemas import HashMatchOut, HashQuery, MatchCandidate, MatchOut
from api.uploads import api_error, read_uploads
from indexer import images
from indexer import text as text_rules
from matcher.search.hashes import BadHash, parse_hashes

router = APIRouter(prefix="/v1/match", tags=["match"])


@router.post("", response_model=MatchOut, responses=responses(*GUARDED, 400, 404, 413, 415))
def match_image(request: Request, image: UploadFile = File(...),
                banks: list[str] = Form([], max_length=50,
                                        description="bank names: repeat the field and/or separate names by "
                                                    "commas (none: every bank)"),
                top: int = Form(10, ge=1, le=100),
                p: Principal = guard("match", ADMIN, INVESTIGATOR),
                _fields: None = known_fields_only()) -> MatchOut:
    svc = service(request)
    for n, value in enumerate(banks):
        if len(value) > 10_000:
            raise ApiError(422, "validation_error", f"banks[{n}]: at most 10,000 characters")
        text_rules.check(value, f"banks[{n}]")
    [upload] = read_uploads([image], "image")
    sha = upload.sha256
    audit(request, f"query:{sha}")
    chosen = hash_matching.choose_banks(svc, bank_names(banks), partner=False)
    try:  # the one path (CLI and the web search page too): match, then queue what needs a person
        candidates, queued = svc.match_image(upload.data, sha, chosen, top, p.name)
    except images.ImageError as exc:
        raise api_error(exc, "image") from None
    kinds = {b.name: b.kind for b in chosen}
    audit(request, candidates=len(candidates), queued=len(queued),
          best=candidates[0].decision if candidates else "none")
    return MatchOut(query_sha256=sha, candidates=[
        MatchCandidate(**visibility.match_view(c, kinds[c.bank], p.role, queued.get(n)))
        for n, c in enumerate(candidates)])


@router.post("/hashes", response_model=HashMatchOut, responses=responses(*GUARDED, 404))
async def match_hashes_route(
        body: HashQuery, request: Request,
        p: Principal = guard("match.hashes", PARTNER, ADMIN, INVESTIGATOR)) -> JSONResponse:
    """Hash-only lookup: answers with opaque refs, scores and evidence, never identities."""
    if service(request).store.in_process:
        # On the event loop: with the catalog and the index in this process the lookup is a few
        # milliseconds of CPU and no network wait, and the hop to a worker thread and back cost
        # 0.7-1.1 ms of it at 10M references (BENCHMARKS.md). Like the audit append, it may wait for another
        # writer's short SQLite transaction, holding up this worker's other requests that long.
        return _match_hashes(body, request, p)
    # A catalog or vectors over the network: the waits go to a worker thread (one hop; a sync
    # route makes two, FastAPI running its response handling in the pool too).
    return await anyio.to_thread.run_sync(_match_hashes, body, request, p)


def _match_hashes(body: HashQuery, request: Request, p: Principal) -> JSONResponse:
    svc = service(request)
    query_id = hash_matching.query_id(body.hashes)
    audit(request, f"hashes:{query_id}")
    try:
        query = parse_hashes(body.hashes, body.sha256)
    except BadHash as exc:
        raise ApiError(422, "bad_hash", str(exc)) from None
    # The event this request answers 200 with, appended in the transaction that queues the hits
    # (one commit); refused or failed, the middleware appends the event of that answer instead.
    event = planned_event(request.scope, 200)
    with svc.store.catalog.unit():  # the banks, the search and the write on one connection
        chosen = hash_matching.choose_banks(svc, bank_names(body.banks), partner=p.role == PARTNER)
        found = hash_matching.lookup(svc, p, query, chosen, body.top, query_id, event)
    setattr(request.state, APPENDED, 200)
    candidates, queued = found.candidates, found.queued
    audit(request, candidates=len(candidates), queued=len(queued))
    by_name = found.banks
    # The answer as JSON at once: FastAPI would validate a HashMatchOut of what is built here
    # (partner_view's fields are PartnerHit's) against the response model a second time.
    hits = [visibility.partner_view(c, svc.opaque_ref(by_name[c.bank], c.subject_id, c.item))
            for c in candidates]
    return JSONResponse({"hits": hits})
