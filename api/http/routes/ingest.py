"""Ingest: ad images pushed by crawlers and investigators' tools (single and batch)."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, Request, UploadFile

from api.auth import ADMIN, INGEST, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, bank_or_404, known_fields_only, parse_json_field, service
from api.http.schemas import IngestBatchOut, IngestResult
from api.ingestion import AdRecord, ingest
from api.uploads import read_uploads
from indexer import text as text_rules

router = APIRouter(prefix="/v1/banks/{bank}/items", tags=["ingest"])
UPLOAD_ERRORS = (400, 409, 413, 415)
MAX_TEXT = 2000


def _record(raw: dict, where: str) -> AdRecord:
    label = raw.get("label")
    source = raw.get("source", "")
    attributes = raw.get("attributes", {})
    extra = set(raw) - {"label", "source", "attributes"}
    if extra:
        raise ApiError(422, "validation_error", f"{where}: unknown field(s) {', '.join(sorted(extra))}")
    if label is not None and (not isinstance(label, str) or not label.strip() or len(label) > 300):
        raise ApiError(422, "validation_error", f"{where}.label: 1 to 300 characters")
    if not isinstance(source, str) or len(source) > MAX_TEXT:
        raise ApiError(422, "validation_error", f"{where}.source: a string of at most {MAX_TEXT} characters")
    if not isinstance(attributes, dict) or len(str(attributes)) > 10_000:
        raise ApiError(422, "validation_error", f"{where}.attributes: a JSON object under 10 kB")
    text_rules.check(label or "", f"{where}.label")
    text_rules.check(source, f"{where}.source")
    text_rules.check_tree(attributes, f"{where}.attributes")  # BadText: 422 bad_text (api.errors)
    return AdRecord(label.strip() if label else None, source, attributes)


@router.post("", status_code=201, response_model=IngestResult,
             responses=responses(*GUARDED, 404, *UPLOAD_ERRORS))
def ingest_one(bank: str, request: Request, image: UploadFile = File(...),
               label: str | None = Form(None, max_length=300),
               source: str = Form("", max_length=MAX_TEXT),
               attributes: str | None = Form(None, max_length=10_000, description="JSON object"),
               _p: Principal = guard("item.ingest", ADMIN, INGEST),
               _fields: None = known_fields_only()) -> IngestResult:
    """Index one ad image (idempotent: a known image answers with its existing item)."""
    svc = service(request)
    audit(request, f"bank:{bank}")
    bank_row = bank_or_404(svc, bank)
    raw = {"source": source, "attributes": parse_json_field(attributes, "attributes", dict)}
    if label is not None and label.strip():
        raw["label"] = label
    record = _record(raw, "form")
    [outcome] = ingest(svc, bank_row, read_uploads([image], "image"), [record], strict=True)
    svc.maybe_checkpoint()
    audit(request, f"item:{outcome.item}", created=bool(outcome.created))
    return IngestResult(**outcome.__dict__)


@router.post("/batch", response_model=IngestBatchOut, responses=responses(*GUARDED, 404, *UPLOAD_ERRORS))
def ingest_batch(bank: str, request: Request, images: list[UploadFile] = File(...),
                 records: str | None = Form(None, max_length=1_000_000,
                                            description="JSON array of {label, source, attributes}, "
                                                        "one per image, in order"),
                 _p: Principal = guard("item.ingest_batch", ADMIN, INGEST),
                 _fields: None = known_fields_only()) -> IngestBatchOut:
    """Index several ad images; each file is reported on its own (bad files do not stop the batch)."""
    svc = service(request)
    audit(request, f"bank:{bank}")
    bank_row = bank_or_404(svc, bank)
    if len(images) > svc.config.max_batch_files:
        raise ApiError(413, "too_many_files", f"at most {svc.config.max_batch_files} images per batch")
    raws = parse_json_field(records, "records", list)
    if raws and len(raws) != len(images):
        raise ApiError(422, "validation_error", f"records: {len(raws)} records for {len(images)} images")
    recs = [_record(r, f"records[{n}]") if isinstance(r, dict) else
            _raise(f"records[{n}]") for n, r in enumerate(raws)] or [AdRecord() for _ in images]
    outcomes = ingest(svc, bank_row, read_uploads(images, "images"), recs, strict=False)
    svc.maybe_checkpoint()
    indexed = sum(1 for o in outcomes if o.created)
    failed = sum(1 for o in outcomes if o.error)
    audit(request, indexed=indexed, failed=failed, files=len(images))
    return IngestBatchOut(bank=bank_row.name, indexed=indexed,
                          already_indexed=len(outcomes) - indexed - failed, failed=failed,
                          results=[IngestResult(**o.__dict__) for o in outcomes])


def _raise(where: str) -> AdRecord:
    raise ApiError(422, "validation_error", f"{where}: must be a JSON object")
