"""Enrolling reference photos: consented missing persons and known venues.

A missing person's photos may be searched for only with the consent of whoever
reported them, and only until that consent expires. So enrollment is
all-or-nothing: every row of a manifest is checked (consent record complete,
dated, not expired; image decodable) before anything is written, and one bad
row refuses the whole manifest with a message that names the row, never its
personal fields. Accepted subjects get a pseudonymous id; the personal fields
(who consented, the case reference) are sealed by :mod:`indexer.privacy`, and
refused (MissingKey) when no encryption key is set: front ends check the key
first through :meth:`api.application.Application.require_key`.

A reference photo is about one person, so only its primary face (large and central)
is stored as that person's face vector: a bystander in a family photo must not
become a reference. Several photos of one label form one subject, so that
candidates are reported per person, not per photo.

The file a reference came from is not stored: a path such as
``photos/person1_JaneDoe.jpg`` names the person, and the catalog is exactly
what must not leak a name. Nothing needs it afterwards either: the item is
known by its sha256 (which also makes re-enrolling idempotent), the manifest
row number is kept for the operator's report, and the photo itself is kept
sealed by the service. So every enrolled item's ``source`` is the marker
:data:`REFERENCE_SOURCE` (the HTTP enrolment's is ``http``), and opening a
catalog blanks paths that older versions stored
(:func:`indexer.store.catalog.scrub_reference_sources`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from indexer import age as minors
from indexer import images, pipeline, privacy, text
from indexer.kinds import default_families
from indexer.signals import base as signals
from indexer.signals.base import SignalVector
from indexer.signals.faces import primary_weight
from indexer.store.catalog import REFERENCE_SOURCE, Subject
from indexer.store.store import NewImage, Store

ENROLL_KINDS = ("missing_person", "venue")
CONSENT_COLUMNS = ("consent_by", "consent_date", "consent_expires", "case_ref")
VENUE_COLUMNS = ("name", "address", "room", "region")  # region: the site/region tables of `reunite stats`
FACE_FAMILY = "faces"
# Synthetic consent of `reunite eval` lasts this long: long enough for one run.
EVALUATION_CONSENT_DAYS = 7


class EnrollError(ValueError):
    """The manifest is refused as a whole; the message is safe to print (no personal data)."""


@dataclass(frozen=True)
class Consent:
    """A valid consent record; ``expires`` is the first moment it no longer holds (UTC)."""

    granted_by: str
    granted_on: dt.date
    expires: dt.datetime
    case_ref: str


def parse_day_or_time(text: str) -> dt.datetime:
    """ISO date (whole day) or ISO date-time; naive UTC. Raises ValueError."""
    text = text.strip()
    if len(text) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def check_consent(row: dict[str, Any], now: dt.datetime) -> Consent:
    """The row's consent record, or :class:`ValueError` saying what is wrong with it.

    A date-only expiry means consent holds through that whole day.
    """
    missing = [c for c in CONSENT_COLUMNS if not str(row.get(c) or "").strip()]
    if missing:
        raise ValueError(f"no valid consent record (missing {', '.join(missing)})")
    try:
        granted = parse_day_or_time(str(row["consent_date"]))
    except ValueError:
        raise ValueError("consent_date is not an ISO date (YYYY-MM-DD)") from None
    raw_expiry = str(row["consent_expires"]).strip()
    try:
        expires = parse_day_or_time(raw_expiry)
    except ValueError:
        raise ValueError("consent_expires is not an ISO date (YYYY-MM-DD)") from None
    if len(raw_expiry) == 10:
        expires += dt.timedelta(days=1)
    if granted > now:
        raise ValueError("consent_date is in the future")
    if expires <= granted:
        raise ValueError("consent_expires is not after consent_date")
    if expires <= now:
        raise ValueError("consent has expired")
    return Consent(str(row["consent_by"]).strip(), granted.date(), expires,
                   str(row["case_ref"]).strip())


def evaluation_consent(now: dt.datetime) -> Consent:
    """Synthetic consent for benchmark galleries (``reunite eval`` only)."""
    return Consent("evaluation", now.date(), now + dt.timedelta(days=EVALUATION_CONSENT_DAYS),
                   "evaluation")


def consent_active(subject: Subject, now: dt.datetime | None = None) -> bool:
    """Whether a subject may still be matched (subjects without an expiry: always)."""
    if subject.consent_expires is None:
        return True
    return subject.consent_expires > (now or utcnow())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def primary_face(vectors: list[SignalVector], width: int, height: int) -> list[SignalVector]:
    """Keep only the primary face of each face signal: the person the photo is of.

    See :func:`indexer.signals.faces.primary_weight` (large and central).
    """
    out: list[SignalVector] = []
    best: dict[str, tuple[float, SignalVector]] = {}
    for v in vectors:
        if signals.get(v.signal).family != FACE_FAMILY:
            out.append(v)
            continue
        weight = primary_weight(v.box, width, height) if v.box is not None else 0.0
        if v.signal not in best or weight > best[v.signal][0]:
            best[v.signal] = (weight, v)
    for _weight, v in best.values():
        out.append(replace(v, extra={**v.extra, "primary": True}))
    return out


@dataclass
class _Prepared:
    row_number: int
    label: str
    source: str
    # None for a photo the bank already holds (:func:`_prepare`'s ``known``): nothing to extract.
    extraction: pipeline.Extraction | None
    subject_fields: dict[str, Any]
    consent: Consent | None
    sha256: str = ""


def enroll_records(store: Store, bank_name: str, kind: str, records: list[dict[str, Any]], *,
                   for_evaluation: bool = False, signal_names: list[str] | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   now: dt.datetime | None = None, photos: Any = None) -> dict[str, Any]:
    """Enroll reference photos into ``bank_name``; all rows or none.

    With ``photos`` (a :class:`indexer.store.photos.PhotoStore`) each new photo is
    kept for reviewers, sealed in a missing-person bank, as HTTP enrolment keeps it.

    ``records`` are dicts with ``path`` and ``label`` plus, for missing persons,
    the consent columns (``for_evaluation`` creates synthetic consent instead;
    only ``reunite eval`` may use it) and, for venues, optional ``name``,
    ``address`` and ``room``. Raises :class:`EnrollError` before writing
    anything when a row is refused. Returns counts (no labels or personal data).
    """
    if kind not in ENROLL_KINDS:
        raise EnrollError(f"unknown enroll kind {kind!r} (one of {', '.join(ENROLL_KINDS)})")
    now = now or utcnow()
    start = time.monotonic()
    names = signal_names or [s.name for s in signals.select(default_families(kind))]
    if kind == "missing_person" and not any(signals.get(n).family == FACE_FAMILY for n in names):
        raise EnrollError("missing-person references need the faces signal, which is not available")
    existing = store.catalog.bank(bank_name)
    if existing is not None and existing.kind != kind:
        raise EnrollError(f"bank {bank_name!r} already exists with kind {existing.kind!r}, not {kind!r}")
    if not records:
        raise EnrollError("the manifest has no rows")

    # Photos the bank already holds are not decoded again: a stored item is never changed by
    # a re-run (only its subject's consent record is, by _renew_consent), so its faces and
    # hashes would be extracted for nothing, and a no-op re-run of 30 people cost as much
    # as the first run (issue 15). Their face check is the stored one.
    held = _held_photos(store, existing.id, names) if existing is not None else {}
    prepared: list[_Prepared] = []
    for n, row in enumerate(records, start=1):
        prepared.append(_prepare(n, row, kind, names, now, for_evaluation, known=held))
        if progress:
            progress(n, len(records))

    no_face = [p.row_number for p in prepared if kind == "missing_person" and not (
        held.get(p.sha256, False) if p.extraction is None
        else any(signals.get(v.signal).family == FACE_FAMILY for v in p.extraction.vectors))]
    bank = store.catalog.ensure_bank(bank_name, kind)
    renewed = _renew_consent(store, bank.id, prepared)
    keeper = _keeper(store, bank, photos)
    known = store.catalog.known_sha256(bank.id) if keeper else set()
    fresh = [p for p in prepared if p.extraction is not None]
    batch = []
    try:
        for p in fresh:
            assert p.extraction is not None
            kept = keeper.keep(Path(p.source), p.extraction.sha256) \
                if keeper and p.extraction.sha256 not in known else {}
            batch.append(NewImage(p.extraction, p.label, REFERENCE_SOURCE, {"row": p.row_number, **kept},
                                  p.subject_fields))
        if keeper:
            try:
                keeper.sync()  # the photos on disk before the rows naming them commit
            finally:
                keeper.close()
        results = store.add_images(bank, batch) if batch else []
    except BaseException:
        if keeper:
            keeper.close()
        for img in batch if keeper else ():
            keeper.discard(img.attributes)
        raise
    for img, (_item, was_new) in zip(batch, results, strict=True):
        if keeper and not was_new:
            keeper.discard(img.attributes)
    if batch:
        store.checkpoint()
    created = sum(1 for _item, was_new in results if was_new)
    return {
        "bank": bank_name, "kind": kind, "rows": len(records), "enrolled": created,
        "already_enrolled": len(results) - created + len(prepared) - len(fresh),
        "subjects": len({p.label for p in prepared}), "consent_renewed": renewed,
        "no_face_rows": no_face, "signals": names,
        "seconds": round(time.monotonic() - start, 2),
    }


def _held_photos(store: Store, bank_id: int, names: list[str]) -> dict[str, bool]:
    """sha256 -> whether the stored item has a face, for every photo the bank holds."""
    from sqlalchemy import select

    from indexer.store.catalog import Item, Vector

    faces = [n for n in names if signals.get(n).family == FACE_FAMILY]
    with store.catalog.session() as s:
        held = {str(sha): False for sha in s.scalars(select(Item.sha256).where(Item.bank_id == bank_id))}
        if faces and held:
            with_face = s.scalars(select(Item.sha256).join(Vector, Vector.item_id == Item.id).where(
                Item.bank_id == bank_id, Vector.signal.in_(faces)).distinct())
            held.update((str(sha), True) for sha in with_face)
    return held


def _keeper(store: Store, bank: Any, photos: Any) -> Any:
    if photos is None:
        return None
    from indexer.store.photos import FileKeeper, needs_encryption
    return FileKeeper(photos, bank.id, needs_encryption(bank.kind, bank.policy))


def _prepare(n: int, row: dict[str, Any], kind: str, names: list[str], now: dt.datetime,
             for_evaluation: bool, known: dict[str, bool] | None = None) -> _Prepared:
    """One row checked (text, consent, the image) and extracted; ``known`` photos (sha256 ->
    has a face, :func:`_held_photos`) are read and checked but not decoded again."""
    where = f"row {n}"
    try:  # labels and venue fields are shown to reviewers and exported: one text rule (indexer.text)
        for key, value in row.items():
            text.check(str(key), f"{where}: a column name")
            text.check_tree(value, f"{where}: column {key}")
    except text.BadText as exc:
        raise EnrollError(str(exc)) from None
    path_text = str(row.get("path") or "").strip()
    if not path_text:
        raise EnrollError(f"{where}: empty 'path'")
    label = str(row.get("label") or "").strip()
    if not label:
        raise EnrollError(f"{where}: empty 'label' (every reference needs its subject's label)")
    consent: Consent | None = None
    fields: dict[str, Any] = {}
    if kind == "missing_person":
        if for_evaluation:
            consent = evaluation_consent(now)
        else:
            try:
                consent = check_consent(row, now)
            except ValueError as exc:
                raise EnrollError(f"{where}: refused: {exc}") from None
        try:  # a child's record: date_of_birth / minor are sealed; only a coarse date is clear
            child, protected = minors.parse_minor_fields(row, now.date())
        except ValueError as exc:
            raise EnrollError(f"{where}: refused: {exc}") from None
        # Fail closed: a real consent record is never stored in clear (MissingKey without the key);
        # the synthetic record of `reunite eval` holds nothing personal.
        fields = {"personal": privacy.seal({**_personal(consent), **child}, required=not for_evaluation),
                  "consent_expires": consent.expires, "protected_until": protected}
    else:
        fields = {"attributes": {k: str(row[k]).strip() for k in VENUE_COLUMNS
                                 if str(row.get(k) or "").strip()}}
    try:
        data = images._read_bytes(Path(path_text), images.DEFAULT_MAX_BYTES)
        sha = hashlib.sha256(data).hexdigest()
        if known is not None and sha in known:  # decoded when it was enrolled: valid, nothing to redo
            return _Prepared(n, label, path_text, None, fields, consent, sha)
        extraction = pipeline.extract(data, names)
    except images.ImageError as exc:
        raise EnrollError(f"{where}: refused: {exc}") from None
    except OSError as exc:
        raise EnrollError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
    if kind == "missing_person":
        extraction.vectors = primary_face(extraction.vectors, extraction.width, extraction.height)
    return _Prepared(n, label, path_text, extraction, fields, consent, extraction.sha256)


def _personal(consent: Consent) -> dict[str, Any]:
    return {"consent_by": consent.granted_by, "consent_date": consent.granted_on.isoformat(),
            "consent_expires": consent.expires.isoformat(timespec="seconds"),
            "case_ref": consent.case_ref}


def _renew_consent(store: Store, bank_id: int, prepared: list[_Prepared]) -> int:
    """A newer consent record for an already enrolled subject replaces its old one."""
    renewed = 0
    with store.catalog.session() as s:
        for p in prepared:
            if p.consent is None:
                continue
            subject = store.catalog.subject_by_label(s, bank_id, p.label)
            if subject is None:
                continue
            if subject.protected_until != p.subject_fields["protected_until"]:  # a new date of birth
                subject.protected_until = p.subject_fields["protected_until"]
                subject.personal = p.subject_fields["personal"]
            if subject.consent_expires == p.consent.expires:
                continue
            subject.consent_expires = p.consent.expires
            subject.personal = p.subject_fields["personal"]
            renewed += 1
    return renewed
