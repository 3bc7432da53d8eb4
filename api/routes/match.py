"""Match: an image (investigators) or its hashes only (partners) against the banks.

Candidates at ``match`` or ``review`` are stored and enter the review queue;
subjects whose consent has expired are never returned. The query image is
kept (sealed when a key is configured) only when a candidate was queued, so
that the reviewer can compare it with the reference.
"""

from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, File, Form, Request, UploadFile
from sqlalchemy import select

from api import visibility
from api.auth import ADMIN, INVESTIGATOR, PARTNER, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.routes.common import audit, service
from api.schemas import HashMatchOut, HashQuery, MatchCandidate, MatchOut, PartnerHit
from api.service import Service
from api.uploads import api_error, read_uploads
from indexer import images
from indexer import text as text_rules
from indexer.enroll import consent_active
from indexer.store.catalog import Bank, Subject
from indexer.store.photos import QUERY_NAMESPACE
from matcher.hash_lookup import BadHash, match_hashes, parse_hashes
from matcher.review import QUEUED_TIERS, StoredCandidate
from matcher.search import Candidate

router = APIRouter(prefix="/v1/match", tags=["match"])


def _banks(svc: Service, names: list[str], partner: bool) -> list[Bank]:
    every = svc.store.catalog.banks()
    if partner:
        every = [b for b in every if (b.policy or {}).get("partner_lookup", True)]
    if not names:
        return every
    by_name = {b.name: b for b in every}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ApiError(404, "bank_not_found", f"{len(missing)} of the named banks do not exist or "
                       "may not be searched")
    return [by_name[n] for n in dict.fromkeys(names)]


def _consented(svc: Service, candidates: list[Candidate]) -> list[Candidate]:
    """Drop candidates whose subject's consent has expired (they may no longer be matched)."""
    ids = {c.subject_id for c in candidates if c.subject_id is not None}
    if not ids:
        return candidates
    with svc.store.catalog.session() as s:
        expired = {x.id for x in s.scalars(select(Subject).where(Subject.id.in_(ids)))
                   if not consent_active(x)}
    return [c for c in candidates if c.subject_id not in expired]


def _query_photo(svc: Service, sha256: str, data: bytes) -> str:
    with svc.store.catalog.session() as s:
        token = s.scalar(select(StoredCandidate.query_photo).where(
            StoredCandidate.query_sha256 == sha256, StoredCandidate.query_photo.is_not(None)).limit(1))
    if token and svc.photos.exists(QUERY_NAMESPACE, token):
        return token
    return svc.photos.put(QUERY_NAMESPACE, data, encrypt=svc.cipher is not None)


@router.post("", response_model=MatchOut, responses=responses(*GUARDED, 400, 404, 413, 415))
def match_image(request: Request, image: UploadFile = File(...),
                banks: str = Form("", max_length=10_000, description="bank names, comma separated "
                                                                      "(empty: every bank)"),
                top: int = Form(10, ge=1, le=100),
                p: Principal = guard("match", ADMIN, INVESTIGATOR)) -> MatchOut:
    svc = service(request)
    text_rules.check(banks, "banks")
    [upload] = read_uploads([image], "image")
    sha = upload.sha256
    audit(request, f"query:{sha}")
    chosen = _banks(svc, [b.strip() for b in banks.split(",") if b.strip()], partner=False)
    try:
        candidates = _consented(svc, svc.matcher.match(upload.data, chosen, top=top))
    except images.ImageError as exc:
        raise api_error(exc, "image") from None
    queued: dict[int, int] = {}
    if any(c.decision in QUEUED_TIERS for c in candidates):
        token = _query_photo(svc, sha, upload.data)
        queued = svc.review.record(candidates, {b.name: b for b in chosen}, sha, p.name, token)
    kinds = {b.name: b.kind for b in chosen}
    audit(request, candidates=len(candidates), queued=len(queued),
          best=candidates[0].decision if candidates else "none")
    return MatchOut(query_sha256=sha, candidates=[
        MatchCandidate(**visibility.match_view(c, kinds[c.bank], p.role, queued.get(n)))
        for n, c in enumerate(candidates)])


@router.post("/hashes", response_model=HashMatchOut, responses=responses(*GUARDED, 404))
def match_hashes_route(body: HashQuery, request: Request,
                       p: Principal = guard("match.hashes", PARTNER, ADMIN, INVESTIGATOR)) -> HashMatchOut:
    """Hash-only lookup: answers with opaque refs, scores and evidence, never identities."""
    svc = service(request)
    canonical = json.dumps({k: v.lower() for k, v in body.hashes.items()}, sort_keys=True)
    query_id = hashlib.sha256(canonical.encode()).hexdigest()
    audit(request, f"hashes:{query_id}")
    try:
        query = parse_hashes(body.hashes, body.sha256)
    except BadHash as exc:
        raise ApiError(422, "bad_hash", str(exc)) from None
    chosen = _banks(svc, body.banks or [], partner=p.role == PARTNER)
    candidates = _consented(svc, match_hashes(svc.matcher, query, chosen, body.top))
    if p.role == PARTNER:  # partners learn of hits only, not of distant neighbours
        candidates = [c for c in candidates if c.decision in QUEUED_TIERS]
    queued = svc.review.record(candidates, {b.name: b for b in chosen}, query_id, p.name, None)
    audit(request, candidates=len(candidates), queued=len(queued))
    by_name = {b.name: b for b in chosen}
    return HashMatchOut(hits=[
        PartnerHit(**visibility.partner_view(c, svc.opaque_ref(by_name[c.bank], c.subject_id, c.item)))
        for c in candidates])
