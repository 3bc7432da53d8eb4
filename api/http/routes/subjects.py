"""Subjects: enroll with photos and consent, list, read, reveal a photo, withdraw consent."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from pydantic import ValidationError
from sqlalchemy import func, select

from api import consent, visibility
from api.auth import ADMIN, INVESTIGATOR, REVIEWER, Principal, guard
from api.enrollment import PHOTO_ATTR, enroll_photos, subject_fields
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, bank_or_404, known_fields_only, service, subject_or_404
from api.http.schemas import MAX_ID, EnrollOut, EnrollRecord, SubjectList, SubjectOut, WithdrawalOut
from api.uploads import read_uploads
from indexer import text as text_rules
from indexer.crypto import DecryptionFailed, MissingKey
from indexer.enroll import utcnow
from indexer.store.catalog import Item, Subject
from indexer.store.photos import bank_namespace
from matcher.privacy import minors
from matcher.review.cases import CaseError, check_owner

router = APIRouter(prefix="/v1", tags=["subjects"])
READERS = (ADMIN, REVIEWER, INVESTIGATOR)
UPLOAD_ERRORS = (400, 409, 413, 415)
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
               "BMP": "image/bmp", "TIFF": "image/tiff", "MPO": "image/jpeg"}
IMAGE_RESPONSE = {200: {"content": {t: {} for t in sorted(set(IMAGE_TYPES.values()))},
                        "description": "the image bytes"}}


def _case_owner(value: str | None) -> str | None:
    """The enrolment's case owner, checked before anything is stored (422 naming the field)."""
    if value is None:
        return None
    try:
        return check_owner(value)
    except CaseError as exc:
        raise ApiError(422, "validation_error", f"record.case_owner: {exc.detail}") from None


# The record travels as a JSON string beside the photos (multipart has no nested fields), so
# OpenAPI would only say "string": contentMediaType/contentSchema (JSON Schema 2020-12, which
# OpenAPI 3.1 uses) publish what the string must hold, from the model that validates it.
RECORD_SCHEMA = {"contentMediaType": "application/json", "contentSchema": EnrollRecord.model_json_schema()}


def _parse_record(text: str) -> EnrollRecord:
    if text_rules.json_depth(text) > text_rules.MAX_DEPTH:
        raise ApiError(422, "validation_error", f"record: JSON nested deeper than {text_rules.MAX_DEPTH}")
    try:
        rec = EnrollRecord.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or "record"
        raise ApiError(422, "validation_error", f"record.{where}: {first.get('msg', 'invalid')}") from None
    text_rules.check_tree(rec.model_dump(mode="json"), "record")  # BadText: 422 bad_text
    return rec


@router.post("/banks/{bank}/subjects", status_code=201, response_model=EnrollOut,
             responses=responses(*GUARDED, 404, *UPLOAD_ERRORS))
def enroll_subject(bank: str, request: Request,
                   record: str = Form(..., max_length=20_000, description="EnrollRecord as JSON",
                                      json_schema_extra=RECORD_SCHEMA),
                   photos: list[UploadFile] = File(..., description="reference photos"),
                   p: Principal = guard("subject.enroll", ADMIN),
                   _fields: None = known_fields_only()) -> EnrollOut:
    svc = service(request)
    audit(request, f"bank:{bank}")
    bank_row = bank_or_404(svc, bank)
    rec = _parse_record(record)
    owner = _case_owner(rec.case_owner)
    fields = subject_fields(bank_row, rec.model_dump(exclude={"case_owner"}), utcnow())
    result = enroll_photos(svc, bank_row, rec.label.strip(), read_uploads(photos, "photos"), fields,
                           new_subject=True)
    audit(request, f"subject:{result.subject.pseudonym}", photos=result.added)
    if owner is not None:  # a new subject is in no case yet: this cannot be refused after the write
        svc.alerts.cases.own_subject(result.subject.pseudonym, owner)
        audit(request, case_owner=True)
    return EnrollOut(subject=SubjectOut(**visibility.subject_view(result.subject, bank_row, p.role,
                                                                  result.items)),
                     photos_added=result.added, already_enrolled=result.already,
                     without_face=result.without_face)


@router.post("/subjects/{pseudonym}/photos", status_code=201, response_model=EnrollOut,
             responses=responses(*GUARDED, 404, *UPLOAD_ERRORS))
def add_photos(pseudonym: str, request: Request,
               photos: list[UploadFile] = File(..., description="more reference photos"),
               p: Principal = guard("subject.add_photos", ADMIN),
               _fields: None = known_fields_only()) -> EnrollOut:
    svc = service(request)
    audit(request, f"subject:{pseudonym}")
    subject, bank = subject_or_404(svc, pseudonym)
    result = enroll_photos(svc, bank, subject.label, read_uploads(photos, "photos"), None,
                           new_subject=False)
    audit(request, photos=result.added)
    return EnrollOut(subject=SubjectOut(**visibility.subject_view(result.subject, bank, p.role,
                                                                  result.items)),
                     photos_added=result.added, already_enrolled=result.already,
                     without_face=result.without_face)


@router.get("/banks/{bank}/subjects", response_model=SubjectList, responses=responses(*GUARDED, 404))
def list_subjects(bank: str, request: Request, offset: int = Query(0, ge=0, le=10_000_000),
                  limit: int = Query(50, ge=1, le=500),
                  p: Principal = guard("subject.list", *READERS)) -> SubjectList:
    svc = service(request)
    audit(request, f"bank:{bank}", offset=offset, limit=limit)
    bank_row = bank_or_404(svc, bank)
    with svc.store.catalog.session() as s:
        total = int(s.scalar(select(func.count(Subject.id)).where(Subject.bank_id == bank_row.id)) or 0)
        subjects = list(s.scalars(select(Subject).where(Subject.bank_id == bank_row.id)
                                  .order_by(Subject.id).offset(offset).limit(limit)))
        ids = [x.id for x in subjects]
        items: dict[int, list[Item]] = {i: [] for i in ids}
        for it in s.scalars(select(Item).where(Item.subject_id.in_(ids)).order_by(Item.id)):
            items[int(it.subject_id or 0)].append(it)
    return SubjectList(total=total, offset=offset, limit=limit, subjects=[
        SubjectOut(**visibility.subject_view(x, bank_row, p.role, items[x.id])) for x in subjects])


@router.get("/subjects/{pseudonym}", response_model=SubjectOut, responses=responses(*GUARDED, 404))
def read_subject(pseudonym: str, request: Request,
                 p: Principal = guard("subject.read", *READERS)) -> SubjectOut:
    svc = service(request)
    audit(request, f"subject:{pseudonym}")
    subject, bank = subject_or_404(svc, pseudonym)
    with svc.store.catalog.session() as s:
        items = list(s.scalars(select(Item).where(Item.subject_id == subject.id).order_by(Item.id)))
    return SubjectOut(**visibility.subject_view(subject, bank, p.role, items))


@router.get("/subjects/{pseudonym}/photos/{item}", response_class=Response,
            responses={**IMAGE_RESPONSE, **responses(*GUARDED, 404, 409, 422)})
def reveal_photo(pseudonym: str, request: Request, item: int = Path(ge=1, le=MAX_ID),
                 reason: str = Query("", max_length=minors.MAX_REVEAL_REASON,
                                     description="why the photo must be seen; required for a "
                                                 "protected child, kept in the audit event"),
                 p: Principal = guard("subject.photo.reveal", ADMIN, REVIEWER)) -> Response:
    """The reference photo itself; every reveal is an audit event (a child's needs a reason).

    It also counts as this reviewer having seen the reference of every candidate
    against that photo: confirming a missing person's candidate needs it
    (matcher.review.queue, ``reveal_required``).
    """
    svc = service(request)
    audit(request, f"subject:{pseudonym}", item=item)
    subject, bank = subject_or_404(svc, pseudonym)
    try:
        given = minors.reveal_reason(minors.is_protected(subject), reason)
    except minors.ReasonRequired as exc:
        audit(request, minor_policy=True)
        raise ApiError(422, exc.code, str(exc)) from None
    audit(request, reason=given, minor_policy=True if minors.is_protected(subject) else None)
    with svc.store.catalog.session() as s:
        row = s.get(Item, item)
    token = (row.attributes or {}).get(PHOTO_ATTR) if row is not None and row.subject_id == subject.id \
        else None
    if not token:
        raise ApiError(404, "photo_not_found", "this subject has no stored photo with that item id")
    try:
        data = svc.photos.get(bank_namespace(bank.id), str(token))
    except FileNotFoundError:
        raise ApiError(404, "photo_not_found", "the photo file is missing") from None
    except (MissingKey, DecryptionFailed):
        raise ApiError(409, "encryption_key_mismatch",
                       "the configured key does not open this photo") from None
    svc.review.record_subject_reveal(subject.id, item, p.name)
    return Response(content=data, media_type=IMAGE_TYPES.get(row.format, "image/jpeg"),
                    headers={"Cache-Control": "no-store"})


@router.delete("/subjects/{pseudonym}", response_model=WithdrawalOut, responses=responses(*GUARDED, 404))
def withdraw_consent(pseudonym: str, request: Request,
                     _p: Principal = guard("subject.withdraw", ADMIN)) -> WithdrawalOut:
    """Withdraw consent: purge the subject's photos, vectors, personal fields and candidates."""
    svc = service(request)
    audit(request, f"subject:{pseudonym}")
    done = consent.withdraw(svc, pseudonym)
    if done is None:
        raise ApiError(404, "subject_not_found", "no subject by that pseudonym")
    audit(request, photos=done.photos, vectors=done.vectors, candidates=done.candidates)
    return WithdrawalOut(withdrawn=done.pseudonym, photos=done.photos, vectors=done.vectors,
                         candidates=done.candidates)
