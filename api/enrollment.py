"""Enrolling subjects over HTTP: the rules of `reunite enroll`, photos kept for reviewers.

Uploaded photos never touch the disk in clear: they are checked and hashed in
memory, then written only to the photo store (sealed for ``missing_person``
banks). The consent check, the personal-field sealing and the primary-face
rule are those of :mod:`indexer.enroll`, so a subject enrolled from the CLI
and one enrolled over HTTP are alike.

All or nothing: every photo is decoded and every field checked before the
first write; photo files are written before the one catalog transaction and
removed again if it fails, so a refused request leaves no subject, item or
file behind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from api.errors import ApiError
from api.service import Service
from api.uploads import Upload, extract, signal_names
from indexer import age, enroll, privacy
from indexer.crypto import MissingKey
from indexer.signals import base as signals
from indexer.store.catalog import Bank, Item, Subject
from indexer.store.photos import bank_namespace, needs_encryption
from indexer.store.store import NewImage
from indexer.text import with_article

PHOTO_ATTR = "photo"  # Item.attributes key holding the photo-store token


@dataclass
class EnrollResult:
    subject: Subject
    items: list[Item]
    added: int
    already: int
    without_face: int


def subject_fields(bank: Bank, record: dict[str, object], now: dt.datetime) -> dict[str, object]:
    """Catalog fields of a new subject: sealed personal data and consent, or venue details."""
    if bank.kind == "missing_person":
        try:
            consent = enroll.check_consent(record, now)
        except ValueError as exc:
            raise ApiError(422, "consent_refused", f"record: {exc}") from None
        try:  # a child's record: the same rule as `reunite enroll` (indexer.age)
            child, protected = age.parse_minor_fields(record, now.date())
        except ValueError as exc:
            raise ApiError(422, "bad_minor_fields", f"record: {exc}") from None
        personal = {"consent_by": consent.granted_by, "consent_date": consent.granted_on.isoformat(),
                    "consent_expires": consent.expires.isoformat(timespec="seconds"),
                    "case_ref": consent.case_ref, **dict(record.get("personal") or {}), **child}
        try:
            sealed = privacy.seal(personal, required=True)
        except MissingKey as exc:
            raise ApiError(409, "encryption_key_required", str(exc)) from None
        return {"personal": sealed, "consent_expires": consent.expires, "protected_until": protected}
    attributes = {k: str(record[k]).strip() for k in enroll.VENUE_COLUMNS if str(record.get(k) or "").strip()}
    return {"attributes": attributes}


def enroll_photos(svc: Service, bank: Bank, label: str, uploads: list[Upload],
                  fields: dict[str, object] | None, *, new_subject: bool) -> EnrollResult:
    """Add ``uploads`` to the subject ``label`` of ``bank`` (creating it when ``new_subject``)."""
    if bank.kind not in enroll.ENROLL_KINDS:
        raise ApiError(409, "wrong_bank_kind",
                       f"bank {bank.name!r} is {with_article(bank.kind)} bank; "
                       "enroll into missing_person or venue banks")
    if not uploads:
        raise ApiError(422, "no_photos", "send at least one photo in the 'photos' field")
    encrypt = needs_encryption(bank.kind, bank.policy)
    try:  # the one key check of every front end (api.application)
        svc.require_key(bank.kind, bank.policy, bank.name)
    except MissingKey as exc:
        raise ApiError(409, "encryption_key_required", str(exc)) from None
    names = signal_names(bank)
    if bank.kind == "missing_person" and not any(signals.get(n).family == enroll.FACE_FAMILY for n in names):
        raise ApiError(409, "faces_unavailable", "missing-person references need the faces signal")
    with svc.store.catalog.session() as s:
        exists = svc.store.catalog.subject_by_label(s, bank.id, label) is not None
    if new_subject and exists:
        raise ApiError(409, "subject_exists", "a subject with this label already exists in the bank")

    known = svc.store.catalog.known_sha256(bank.id)
    fresh: list[tuple[Upload, object]] = []
    seen: set[str] = set()
    already = 0
    for up in uploads:  # decode and check everything before any write
        sha = up.sha256
        if sha in known:
            raise ApiError(409, "photo_already_enrolled", f"{up.where} is already in this bank")
        if sha in seen:
            already += 1
            continue
        seen.add(sha)
        extraction = extract(up, names)
        if bank.kind == "missing_person":
            extraction.vectors = enroll.primary_face(extraction.vectors, extraction.width, extraction.height)
        fresh.append((up, extraction))

    namespace = bank_namespace(bank.id)
    tokens: list[str] = []
    try:
        batch = []
        for up, extraction in fresh:
            token = svc.photos.put(namespace, up.data, encrypt=encrypt, durable=False)
            tokens.append(token)
            batch.append(NewImage(extraction, label, source="http", attributes={PHOTO_ATTR: token},
                                  subject_fields=dict(fields or {})))
        svc.photos.sync(svc.photos.path(namespace, t) for t in tokens)  # on disk before the commit
        results = svc.store.add_images(bank, batch)
        svc.store.checkpoint()
    except BaseException:
        for token in tokens:
            svc.photos.delete(namespace, token)
        raise
    for (_item, created), token in zip(results, tokens, strict=True):
        if not created:  # raced with another request: that one's photo is kept
            svc.photos.delete(namespace, token)
    without_face = sum(1 for _up, ex in fresh
                       if bank.kind == "missing_person"
                       and not any(signals.get(v.signal).family == enroll.FACE_FAMILY for v in ex.vectors))
    with svc.store.catalog.session() as s:
        subject = svc.store.catalog.subject_by_label(s, bank.id, label)
        assert subject is not None
        items = list(s.scalars(select(Item).where(Item.subject_id == subject.id).order_by(Item.id)))
    added = sum(1 for _item, created in results if created)
    if added:  # the new references searched back through the ads this bank watches (api/watching.py)
        from api.watching import SYSTEM_ACTOR, back_search
        back_search(svc, bank, SYSTEM_ACTOR)
    return EnrollResult(subject, items, added, already + len(results) - added, without_face)
