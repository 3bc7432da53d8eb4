"""HMA-compatible matching and hashing: the paths, parameters and JSON of Meta's HMA.

Hasher-Matcher-Actioner (OpenMediaMatch, facebook/ThreatExchange) is what many
platforms and hotlines already call. Its matching (``/m``) and hashing
(``/h``) blueprints are reproduced here, so that an HMA client switches to
reunite by changing its base URL and adding a key (``X-API-Key`` or
``Authorization: Bearer``). Every answer is a thin translation of reunite's own
hash lookup (:mod:`api.hash_matching`, the path of ``/v1/match/hashes``), so
bank visibility for partners, consent expiry, the review queue and the audit
event are the same whichever API is asked.

Where reunite differs from HMA, on purpose:

* URLs are never fetched (no server-side request forgery, no network): a
  ``url=`` parameter is answered 400 and the media is uploaded instead
  (multipart field ``photo`` as HMA's ``POST /h/hash``, or the raw body with an
  ``image/*`` Content-Type).
* Only the ``pdq`` signal type is served; HMA's other types answer HMA's own
  400 for a disabled type, and an unknown name HMA's 400 for an unknown one.
* A match is what reunite's calibrated decision calls ``match`` or ``review``
  (not PDQ distance <= 31), one per subject (ad, venue, person): its closest photo.
* ``bank_content_id`` is reunite's item id for roles that may see item ids and an
  opaque integer for partners (:func:`api.visibility.hma_content_id`).
* There is no coinflip: ``seed`` and ``bypass_coinflip`` are accepted and ignored;
  a partner searches every bank with ``partner_lookup``, everyone else every bank.

Errors carry HMA's ``message`` beside reunite's ``error`` and ``detail``. The key
check (401/403) and the body limit (413) answer before this module runs, in
reunite's shape.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import hash_matching, visibility
from api.audit import PlannedEvent
from api.auth import ADMIN, INVESTIGATOR, PARTNER, Principal, guard
from api.errors import ApiError, ErrorBody, _validation_detail
from api.http.middleware import APPENDED, planned_event
from api.http.routes.common import audit, service
from api.uploads import Upload, api_error, read_uploads
from indexer import images, pipeline
from indexer.signals import base as signals
from indexer.signals.base import SignalVector
from indexer.store.catalog import Bank
from matcher.search.hashes import BadHash, parse_hashes

ROLES = (ADMIN, INVESTIGATOR, PARTNER)  # those of /v1/match/hashes
TOP = 100  # HMA returns every match; reunite's lookup is bounded, at the most /v1/match/hashes allows
# HMA signal type name -> reunite signal name.
SIGNAL_TYPES = {"pdq": "pdq"}
# Signal types of python-threatexchange that HMA deployments enable and reunite does not serve.
HMA_ONLY_SIGNAL_TYPES = frozenset({"video_md5", "video_sha256", "vpdq", "url", "url_md5",
                                   "raw_text", "trend_query"})
# HMA content type name (the multipart field of POST /h/hash) -> whether reunite hashes it.
CONTENT_TYPES = {"photo": True, "video": False}
PDQ_MIN_QUALITY = 50  # HMA's PdqSignal.QUALITY_THRESHOLD: below it /h/hash answers "" for pdq
NO_URL = ("reunite does not fetch URLs; upload the file instead: POST it as multipart/form-data "
          "(field 'photo') or as the raw body with an image/* Content-Type")


# --- errors -------------------------------------------------------------------

class HmaErrorBody(BaseModel):
    """HMA's error (``message``) with reunite's stable code and detail beside it."""

    message: str
    error: str
    detail: str


def hma_error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"message": detail, "error": code, "detail": detail}, status_code=status)


class HmaRoute(APIRoute):
    """Routes whose own refusals (and FastAPI's validation errors) answer in HMA's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def hma_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.status in (401, 403):  # the key check keeps reunite's shape on every route
                    raise
                return hma_error(exc.status, exc.code, exc.detail)
            except RequestValidationError as exc:
                return hma_error(422, "validation_error", _validation_detail(exc))

        return hma_handler


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "no valid key"},
        403: {"model": ErrorBody, "description": "the role may not call this route"},
        422: {"model": HmaErrorBody, "description": "a parameter out of bounds"}}
    for s in statuses:
        out[s] = {"model": ErrorBody if s == 413 else HmaErrorBody, "description": "refused"}
    return out


router = APIRouter(tags=["hma"], route_class=HmaRoute)


# --- response bodies (HMA's schemas/matching.py and schemas/hashing.py) --------

class MatchWithDistance(BaseModel):
    bank_content_id: int = Field(description="reunite's item id, or an opaque integer for partners")
    distance: str = Field(description="Hamming distance in bits, as HMA writes it (a string)")


class RawLookupOut(BaseModel):
    matches: list[int] | list[MatchWithDistance]


class IndexStatusOut(BaseModel):
    present: bool
    built_to: int = Field(description="unix time of the newest indexed image; -1 when none")
    size: int


class Distance(BaseModel):
    distance: int


# HMA's SignalComparisonResult as JSON: [match, {"distance": bits}].
Comparison = Annotated[list[bool | Distance], Field(min_length=2, max_length=2)]


# --- signal types, hashes and banks -------------------------------------------

def shown(name: str) -> str:
    """A caller's name as an error may echo it: bounded (a JSON key or form field can be huge)."""
    return name[:64]


def signal_name(signal_type: str) -> str:
    """reunite's signal for an HMA signal type; HMA's 400s for disabled and unknown types."""
    if signal_type in SIGNAL_TYPES:
        return SIGNAL_TYPES[signal_type]
    if signal_type in HMA_ONLY_SIGNAL_TYPES:
        raise ApiError(400, "unsupported_signal_type", f"SignalType '{signal_type}' is not enabled "
                       f"(reunite serves {', '.join(SIGNAL_TYPES)})")
    raise ApiError(400, "unknown_signal_type", f"No such SignalType '{shown(signal_type)}'")


def parse_signal(name: str, signal: str) -> pipeline.Extraction:
    try:
        return parse_hashes({name: signal})
    except BadHash as exc:
        raise ApiError(400, "bad_hash", f"invalid signal: {exc}") from None


def requested_banks(request: Request, p: Principal, banks: str | None) -> list[Bank]:
    """The banks the caller may search, narrowed to ``banks`` (comma separated) when given.

    As in HMA, a name that matches no bank narrows to nothing (200, no matches);
    a bank closed to partners is, to a partner, a bank that does not exist.
    """
    every = hash_matching.searchable_banks(service(request), partner=p.role == PARTNER)
    if not banks:
        return every
    wanted = {n.strip() for n in banks.split(",")}
    return [b for b in every if b.name in wanted]


def selected_signal_types(types: str | None) -> list[str]:
    """HMA's ``types`` parameter: the signal types to hash (all served ones when absent)."""
    if types is None:
        return list(SIGNAL_TYPES)
    chosen = []
    for name in (t.strip() for t in types.split(",")):
        if not name:
            continue
        if name not in SIGNAL_TYPES:
            raise ApiError(400, "unknown_signal_type",
                           f"signal type '{shown(name)}' doesn't exist or is disabled")
        chosen.append(name)
    if not chosen:
        raise ApiError(400, "unknown_signal_type", "empty signal type selection")
    return chosen


@dataclass(frozen=True)
class BankMatch:
    """One match of a lookup as HMA shows it, plain (a crowded lookup answers 100; GET /m/lookup
    writes them as JSON at once, without a model each)."""

    bank: str
    bank_content_id: int
    distance: str

    @property
    def match(self) -> MatchWithDistance:
        return MatchWithDistance.model_construct(bank_content_id=self.bank_content_id,
                                                 distance=self.distance)


def lookup_matches(request: Request, p: Principal, query: pipeline.Extraction, signal: str,
                   qid: str, banks: list[Bank], event: PlannedEvent | None = None) -> list[BankMatch]:
    """reunite's hash lookup, translated: its hits as HMA matches, best first.

    With ``event`` (the request's 200 event, :func:`api.http.middleware.planned_event`), the
    event is appended in the transaction that queues the hits, as ``/v1/match/hashes`` does.
    """
    svc = service(request)
    found = hash_matching.lookup(svc, p, query, banks, TOP, qid, event, hits_only=True)
    if event is not None:
        setattr(request.state, APPENDED, 200)
    hits = [c for c in found.candidates if signal in c.evidence]  # queued tiers only (hits_only)
    audit(request, candidates=len(hits), queued=len(found.queued))
    return [BankMatch(c.bank, visibility.hma_content_id(
        c, p.role, lambda c=c: svc.opaque_ref(found.banks[c.bank], c.subject_id, c.item)),
        str(c.evidence[signal])) for c in hits]


def lookup_signal(request: Request, p: Principal, signal_type: str, signal: str,
                  banks: str | None) -> list[BankMatch]:
    """One hash sent as text, looked up: the banks, the search, the queue write and the request's
    audit event on one catalog connection, in one commit (as ``/v1/match/hashes``)."""
    name = signal_name(signal_type)
    qid = hash_matching.query_id({name: signal})
    audit(request, f"hashes:{qid}")
    query = parse_signal(name, signal)
    # Refused or failed from here on, the middleware appends the event of that answer instead.
    event = planned_event(request.scope, 200)
    with service(request).store.catalog.unit():
        return lookup_matches(request, p, query, name, qid, requested_banks(request, p, banks), event)


def by_bank(matches: list[BankMatch]) -> dict[str, list[MatchWithDistance]]:
    out: dict[str, list[MatchWithDistance]] = {}
    for m in matches:
        out.setdefault(m.bank, []).append(m.match)
    return out


# --- uploads --------------------------------------------------------------------

@dataclass(frozen=True)
class Media:
    """One uploaded file and the HMA content type it was sent as."""

    upload: Upload
    content_type: str


def content_type(name: str) -> str:
    if name not in CONTENT_TYPES:
        raise ApiError(400, "unknown_content_type", f"no such content_type: '{shown(name)}'")
    if not CONTENT_TYPES[name]:
        raise ApiError(400, "unsupported_content_type", f"content_type {name} is disabled")
    return name


async def uploaded_media(request: Request) -> Media:
    """The one file of the request: HMA's multipart (field = content type) or a raw image body.

    Read in memory only (the body limit was enforced before the app ran).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.query_params.get("url"):
        raise ApiError(400, "url_not_supported", NO_URL)
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=10)
        except StarletteHTTPException as exc:
            raise ApiError(400, "bad_upload", f"malformed multipart body: {exc.detail}") from None
        files = [(field, value) for field, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(400, "missing_upload", "Missing multipart/form-data file upload")
        if len(files) > 1:
            raise ApiError(400, "too_many_files", "Only one file allowed per request")
        field, file = files[0]
        [upload] = read_uploads([file], content_type(field))  # type: ignore[list-item]
        return Media(upload, field)
    if kind.startswith("image/"):
        return Media(Upload(await request.body(), "body"), "photo")
    if kind.startswith("video/"):
        content_type("video")
    raise ApiError(400, "missing_upload", f"Missing multipart/form-data file upload: {NO_URL}")


def hash_upload(media: Media, types: list[str]) -> dict[str, SignalVector]:
    """{HMA signal type: vector (with its quality)} of the upload, as reunite's pipeline computes it."""
    names = [SIGNAL_TYPES[t] for t in types]
    try:
        extraction = pipeline.extract(media.upload.data, names)
    except images.ImageError as exc:
        raise api_error(exc, media.upload.where) from None
    by_name = {v.signal: v for v in extraction.vectors}
    return {t: by_name[SIGNAL_TYPES[t]] for t in types}


def hash_only(vector: SignalVector) -> pipeline.Extraction:
    """A query of one hash (no sha256, no dihedral variants): what a client sending the hex asks."""
    return pipeline.Extraction(sha256="", width=0, height=0, format="", frames=0, vectors=[vector])


UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["photo"], "properties": {
        "photo": {"type": "string", "format": "binary",
                  "description": "the image (HMA: the field name is the content type)"}}}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}}}}}
COMPARE_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "example": {"pdq": ["<64 hex digits>", "<64 hex digits>"]},
    "additionalProperties": {"type": "array", "items": {"type": "string"},
                             "minItems": 2, "maxItems": 2}}}}}}



def _signal_type() -> Any:
    return Query(min_length=1, max_length=64, description="HMA signal type: pdq")


# Bounds keep the whole query line within what the HTTP parser accepts (h11: 16 KiB), even
# percent-encoded; unused parameters are unbounded since nothing reads them.
def _signal() -> Any:
    return Query(min_length=1, max_length=256, description="the hash, e.g. 64 hex digits for pdq")


def _banks() -> Any:
    return Query(None, max_length=500, description="bank names, comma separated (default: every "
                                                      "bank the caller may search)")


def _ignored() -> Any:
    return Query(None, description="accepted for HMA clients, ignored")


def _url() -> Any:
    return Query(None, description="refused: " + NO_URL)


# --- matching (HMA's blueprints/matching.py, prefix /m) --------------------------

@router.get("/m/raw_lookup", response_model=RawLookupOut, responses=_responses(400))
def raw_lookup(request: Request, p: Principal = guard("hma.raw_lookup", *ROLES),
               signal: str = _signal(), signal_type: str = _signal_type(), banks: str | None = _banks(),
               include_distance: bool = False) -> RawLookupOut:
    """Look a hash up: ``{"matches": [bank_content_id, ...]}``, or with ``include_distance``
    ``{"matches": [{"bank_content_id": ..., "distance": "..."}]}``."""
    matches = lookup_signal(request, p, signal_type, signal, banks)
    if include_distance:
        return RawLookupOut(matches=[m.match for m in matches])
    return RawLookupOut(matches=[m.match.bank_content_id for m in matches])


@router.get("/m/lookup", response_model=dict[str, list[MatchWithDistance]], responses=_responses(400))
async def lookup_get(request: Request, p: Principal = guard("hma.lookup", *ROLES),
               signal: str | None = Query(None, max_length=256), signal_type: str | None = Query(
                   None, max_length=64), banks: str | None = _banks(),
               url: str | None = _url(),
               content_type: str | None = _ignored(), types: str | None = _ignored(),
               seed: str | None = _ignored(), bypass_coinflip: bool = False
               ) -> JSONResponse:
    """Look a hash up, matches grouped by bank name: ``{"BANK": [{"bank_content_id", "distance"}]}``."""
    if url:
        raise ApiError(400, "url_not_supported", NO_URL)
    if not signal or not signal_type:
        raise ApiError(400, "missing_signal", "Either url or both signal and signal_type are required")
    if service(request).store.in_process:
        # On the event loop, as /v1/match/hashes (api/http/routes/match.py): with the catalog and
        # the index in this process the hop to a worker thread cost more CPU than the lookup's waits.
        matches = lookup_signal(request, p, signal_type, signal, banks)
    else:  # one hop to a worker thread for a catalog or vectors over the network
        matches = await anyio.to_thread.run_sync(lookup_signal, request, p, signal_type, signal, banks)
    # The answer as JSON at once, not validated again against the response model it was built as.
    out: dict[str, list[dict[str, Any]]] = {}
    for m in matches:
        out.setdefault(m.bank, []).append({"bank_content_id": m.bank_content_id, "distance": m.distance})
    return JSONResponse(out)


@router.post("/m/lookup", response_model=dict[str, dict[str, list[MatchWithDistance]]],
             responses=_responses(400, 413, 415), openapi_extra=UPLOAD_BODY)
def lookup_post(request: Request, p: Principal = guard("hma.lookup", *ROLES),
                media: Media = Depends(uploaded_media), banks: str | None = _banks(),
                types: str | None = Query(None, max_length=64), seed: str | None = _ignored(),
                bypass_coinflip: bool = False) -> dict[str, dict[str, list[MatchWithDistance]]]:
    """Hash an uploaded photo and look it up: ``{"pdq": {"BANK": [...]}}``.

    The hash keeps its quality (unlike a hash sent as text), so a flat photo's
    hash asks for a review at most, as in every reunite match.
    """
    audit(request, f"upload:{media.upload.sha256}")
    chosen = requested_banks(request, p, banks)
    out = {}
    for signal_type, vector in hash_upload(media, selected_signal_types(types)).items():
        qid = hash_matching.query_id({vector.signal: vector.hex()})
        audit(request, f"hashes:{qid}")
        out[signal_type] = by_bank(lookup_matches(request, p, hash_only(vector), vector.signal, qid, chosen))
    return out


@router.post("/m/compare", response_model=dict[str, Comparison], responses=_responses(400),
             openapi_extra=COMPARE_BODY)
async def compare(request: Request, _p: Principal = guard("hma.compare", *ROLES)) -> dict[str, Comparison]:
    """Distances between pairs of hashes: ``{"pdq": [true, {"distance": 9}]}`` (match: <= 31 bits,
    PDQ's and HMA's confident-match threshold)."""
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "Request input was not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Request input was not a dict")
    if len(body) > len(SIGNAL_TYPES) + len(HMA_ONLY_SIGNAL_TYPES):
        raise ApiError(400, "bad_request", "too many signal types")
    out = {}
    for signal_type, pair in body.items():
        if not isinstance(pair, list):
            raise ApiError(400, "bad_request", f"Comparison hashes for {shown(signal_type)} was not a list")
        if len(pair) != 2:
            raise ApiError(400, "bad_request", "Comparison hash list length must be exactly 2")
        signal = signals.get(signal_name(str(signal_type)))
        try:
            if not all(isinstance(h, str) for h in pair):
                raise ValueError("a hash must be a string")
            left, right = (signal.from_hex(h) for h in pair)
        except ValueError as exc:
            raise ApiError(400, "bad_hash", f"Invalid {shown(signal_type)} hash: {exc}") from None
        distance = int(np.unpackbits(np.bitwise_xor(left, right)).sum())
        out[signal_type] = [distance <= signal.default_thresholds.match, Distance(distance=distance)]
    audit(request, "compare", signal_types=len(out))
    return out


@router.get("/m/index/status", response_model=dict[str, IndexStatusOut], responses=_responses(400))
def index_status(request: Request, p: Principal = guard("hma.index_status", *ROLES),
                 signal_type: str | None = Query(None, max_length=64)) -> dict[str, IndexStatusOut]:
    """Per signal type: ``{"pdq": {"present": true, "built_to": <unix time>, "size": <hashes>}}``,
    over the banks the caller may search."""
    wanted = list(SIGNAL_TYPES) if signal_type is None else [signal_type]
    banks = requested_banks(request, p, None)
    out = {}
    for name in wanted:
        status = hash_matching.index_status(service(request), banks, signal_name(name))
        built_to = -1 if status.newest is None else int(status.newest.replace(tzinfo=dt.UTC).timestamp())
        out[name] = IndexStatusOut(present=status.present, built_to=built_to, size=status.size)
    return out


# --- hashing (HMA's blueprints/hashing.py, prefix /h) -----------------------------

@router.get("/h/hash", response_model=dict[str, str], responses=_responses(400))
def hash_url(request: Request, _p: Principal = guard("hma.hash", *ROLES),
             url: str | None = _url(),
             content_type: str | None = _ignored(), types: str | None = _ignored()) -> dict[str, str]:
    """HMA hashes the media at ``url``; reunite never fetches a URL and answers 400."""
    raise ApiError(400, "url_not_supported", NO_URL)


@router.post("/h/hash", response_model=dict[str, str], responses=_responses(400, 413, 415),
             openapi_extra=UPLOAD_BODY)
def hash_post(request: Request, _p: Principal = guard("hma.hash", *ROLES),
              media: Media = Depends(uploaded_media),
              types: str | None = Query(None, max_length=64)) -> dict[str, str]:
    """Hash an uploaded photo: ``{"pdq": "<64 hex digits>"}`` (``""`` below quality 50, as HMA)."""
    audit(request, f"upload:{media.upload.sha256}")
    out = {}
    for signal_type, vector in hash_upload(media, selected_signal_types(types)).items():
        quality = None if vector.quality is None else vector.quality * 100
        low = signal_type == "pdq" and quality is not None and quality < PDQ_MIN_QUALITY
        out[signal_type] = "" if low else vector.hex()
    return out
