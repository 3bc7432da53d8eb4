"""Contacts painted on ad photos: phones, e-mails, messenger handles and URLs read from OCR lines.

Why: traffickers put the contact where text filters cannot see it, on the
picture. The OCR lines of an image (:mod:`indexer.store.annotations`) are read
here into the same normalised values as the ad-text contacts
(:mod:`matcher.networks.contacts`: E.164 phones in the bank's region, canonical
mailboxes), plus messenger handles (``@name``, ``t.me/name``, ``wa.me/NUMBER``
becomes a phone) and URLs, so that a number painted on one ad's photo and
typed in another ad's text are one value.

What links: phones, e-mails and handles (kinds ``photo_text_phone``,
``photo_text_email``, ``photo_text_handle``). URLs are kept and searchable but
never link: a site's own watermark is on every ad of the site.

Precision guards: a phone must be a *valid* number for its region (a misread
digit mostly gives an invalid or unshared number), the line must have been
read with confidence :data:`LINK_CONFIDENCE` to link at grouping strength
(below it the link is kept as review-level evidence), and handles need
:data:`MIN_HANDLE` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.store.annotations import ImageText, PhotoContact, texts_of
from matcher.networks import contacts

# Contact kinds read from photos, and the link kind each produces (None: searchable, never links).
from matcher.search import decide

LINK_KIND = {"phone": "photo_text_phone", "email": "photo_text_email", "handle": "photo_text_handle",
             "url": None}
LINK_CONFIDENCE = 0.8
MIN_HANDLE = 3
_EMAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}", re.IGNORECASE)
# Messenger links: the handle is the path's first segment.
_MESSENGER_LINK = re.compile(
    r"(?:https?://)?(?:www\.)?(t\.me|telegram\.me|instagram\.com|snapchat\.com/add|onlyfans\.com)"
    r"\s*/\s*([a-z0-9_.]{3,32})", re.IGNORECASE)
_WA_LINK = re.compile(r"(?:https?://)?(?:api\.)?(?:wa\.me|whatsapp\.com/send\?phone=)\s*/?\s*\+?([0-9]{7,15})",
                      re.IGNORECASE)
# ``@name`` not preceded by a mailbox character (so ``lily@mail.com`` is not the handle ``@mail``).
_AT_HANDLE = re.compile(r"(?<![a-z0-9._%+-])@\s?([a-z0-9_][a-z0-9_.]{1,31})", re.IGNORECASE)
# ``Telegram: name``, ``snap - name``, ``IG name``: a platform word then the handle.
_NAMED_HANDLE = re.compile(
    r"\b(?:telegram|tg|snap(?:chat)?|sc|insta(?:gram)?|ig|kik|wickr|signal|line)\b\s*[:\-]?\s*@?"
    r"([a-z][a-z0-9_.]{2,31})", re.IGNORECASE)
_URL = re.compile(r"\b(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+(?:com|net|org|info|biz|io|me|co|xxx|"
                  r"club|online|site|top|vip|ru|de|uk|fr|es|it|nl|ca|us)(?:/[a-z0-9_./-]*)?)",
                  re.IGNORECASE)
_PLATFORM_WORDS = {"telegram", "tg", "snap", "snapchat", "sc", "insta", "instagram", "ig", "kik", "wickr",
                   "signal", "line", "whatsapp", "call", "text", "me"}
# OCR confusions inside digit runs (a phone written ``2l2 555 O143`` by the recogniser).
_DIGITISH = re.compile(r"[0-9OoIl|SB()+\-. ]{7,}")
_TO_DIGIT = str.maketrans({"O": "0", "o": "0", "I": "1", "l": "1", "|": "1", "S": "5", "B": "8"})


@dataclass(frozen=True)
class Found:
    """One contact read from one line: its kind, normalised value and the raw text it came from."""

    kind: str
    value: str
    raw: str


def normalise_handle(text: str) -> str | None:
    """``@name`` (lower case) of a handle written ``@Name``, ``t.me/name`` or ``name``; None if too short."""
    value = text.strip()
    m = _MESSENGER_LINK.search(value)
    if m:
        value = m.group(2)
    value = value.lstrip("@").strip().rstrip(".").lower()
    if not re.fullmatch(r"[a-z0-9_][a-z0-9_.]{1,31}", value) or len(value) < MIN_HANDLE:
        return None
    return "@" + value


def normalise_url(text: str) -> str | None:
    """Host and path, lower case, without scheme, ``www.`` or a trailing slash."""
    m = _URL.search(text.strip())
    return m.group(1).lower().rstrip("/.") if m else None


def _phones(line: str, region: str) -> list[Found]:
    import phonenumbers  # loaded by the runs that read text on photos (matcher.networks.contacts: why)

    found: dict[str, str] = {}
    candidates = [line]
    fixed = _DIGITISH.sub(lambda m: m.group(0).translate(_TO_DIGIT)
                          if sum(ch.isdigit() for ch in m.group(0)) >= 6 else m.group(0), line)
    if fixed != line:
        candidates.append(fixed)
    for text in candidates:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            found.setdefault(e164, match.raw_string)
    for m in _WA_LINK.finditer(line):
        e164 = contacts.normalise_phone("+" + m.group(1), region)
        if e164:
            found.setdefault(e164, m.group(0))
    return [Found("phone", v, raw) for v, raw in found.items()]


def read_contacts(line: str, region: str = contacts.DEFAULT_REGION) -> list[Found]:
    """Every contact in one OCR line, normalised as ad-text contacts are (phones in ``region``)."""
    out: list[Found] = _phones(line, region)
    emails = set()
    for m in _EMAIL.finditer(line):
        email = contacts.normalise_email(m.group(0))
        if email:
            emails.add(email)
            out.append(Found("email", email, m.group(0)))
    handles: dict[str, str] = {}
    for m in _MESSENGER_LINK.finditer(line):
        h = normalise_handle(m.group(2))
        if h:
            handles.setdefault(h, m.group(0))
    for pattern in (_AT_HANDLE, _NAMED_HANDLE):
        for m in pattern.finditer(line):
            h = normalise_handle(m.group(1))
            if h and h[1:] not in _PLATFORM_WORDS and not h[1:].replace(".", "").isdigit():
                handles.setdefault(h, m.group(0))
    out += [Found("handle", h, raw) for h, raw in handles.items()]
    messenger_hosts = {m.group(0).lower() for m in _MESSENGER_LINK.finditer(line)}
    for m in _URL.finditer(line):
        after_at = "@" in line[max(0, m.start() - 1):m.start()]
        if after_at or any(m.group(0).lower() in h for h in messenger_hosts):
            continue
        url = normalise_url(m.group(0))
        if url and not any(url in e for e in emails):
            out.append(Found("url", url, m.group(0)))
    return out


def record_item(s: Session, bank_id: int, item_id: int, region: str) -> list[tuple[PhotoContact, ImageText]]:
    """Read and store the contacts of one image's text lines (once: later calls return the stored rows)."""
    stored = list(s.execute(select(PhotoContact, ImageText)
                            .join(ImageText, ImageText.id == PhotoContact.text_id)
                            .where(PhotoContact.item_id == item_id)))
    if stored:
        return [(c, t) for c, t in stored]
    out: list[tuple[PhotoContact, ImageText]] = []
    for line in texts_of(s, [item_id]).get(item_id, []):
        for found in read_contacts(line.text, region):
            row = PhotoContact(bank_id=bank_id, item_id=item_id, text_id=line.id, kind=found.kind,
                               value=found.value, confidence=line.confidence)
            s.add(row)
            out.append((row, line))
    s.flush()
    return out


def items_with_text(s: Session, item_ids: list[int]) -> set[int]:
    """Those of ``item_ids`` with a text line read on them or a contact stored (one read a batch):
    the others have nothing for :func:`link_image` to link, and most ad photos carry no text."""
    out: set[int] = set()
    for start in range(0, len(item_ids), 900):  # SQLite's bound-parameter limit
        chunk = item_ids[start:start + 900]
        out.update(int(i) for i in s.scalars(select(ImageText.item_id).where(
            ImageText.item_id.in_(chunk)).distinct()))
        out.update(int(i) for i in s.scalars(select(PhotoContact.item_id).where(
            PhotoContact.item_id.in_(chunk)).distinct()))
    return out


def strength_of(confidence: float, base: float) -> float:
    """Grouping strength for a confidently read line, review-level evidence below."""
    return base if confidence >= LINK_CONFIDENCE else min(base, decide.REVIEW_SCORE)


def evidence_of(kind: str, value: str, items: list[tuple[int, ImageText]]) -> dict[str, Any]:
    """What the reviewer is shown: the contact, and each photo and box it was read in."""
    return {kind: value, "photo_text": [{"item": item, "box": line.box, "text": line.text,
                                         "confidence": round(line.confidence, 3)} for item, line in items]}


def link_image(s: Session, bank_id: int, item_id: int, region: str, base_strength: float) -> int:
    """Link the ads showing a new image to every ad whose photos or text carry one of its contacts.

    Called once per image by :class:`matcher.networks.links.Linker`; returns the new links.
    """
    from matcher.networks.store import AdContact, ads_showing, upsert_link

    new = 0
    for row, line in record_item(s, bank_id, item_id, region):
        kind = LINK_KIND.get(row.kind)
        if kind is None:
            continue
        others = list(s.execute(select(PhotoContact.item_id, ImageText).join(
            ImageText, ImageText.id == PhotoContact.text_id).where(
            PhotoContact.bank_id == bank_id, PhotoContact.kind == row.kind,
            PhotoContact.value == row.value, PhotoContact.item_id != item_id)))
        showing = ads_showing(s, [item_id, *(int(i) for i, _ in others)])
        mine = showing.get(item_id, set())
        for other_item, other_line in others:
            strength = strength_of(min(line.confidence, other_line.confidence), base_strength)
            evidence = evidence_of(row.kind, row.value, [(item_id, line), (int(other_item), other_line)])
            for ad in mine:
                for other in showing.get(int(other_item), set()):
                    new += upsert_link(s, bank_id, ad, other, kind, strength, evidence)
        if row.kind in ("phone", "email"):
            typed = set(s.scalars(select(AdContact.subject_id).where(
                AdContact.bank_id == bank_id, AdContact.kind == row.kind, AdContact.value == row.value)))
            evidence = evidence_of(row.kind, row.value, [(item_id, line)])
            for ad in mine:
                for other in typed:
                    new += upsert_link(s, bank_id, ad, int(other), kind,
                                       strength_of(line.confidence, base_strength), evidence)
    return new


def link_typed_contact(s: Session, bank_id: int, subject_id: int, kind: str, value: str,
                       base_strength: float) -> int:
    """Link an ad whose text columns carry ``value`` to the ads whose photos show it."""
    from matcher.networks.store import ads_showing, upsert_link

    link_kind = LINK_KIND.get(kind)
    if link_kind is None:
        return 0
    rows = list(s.execute(select(PhotoContact.item_id, ImageText).join(
        ImageText, ImageText.id == PhotoContact.text_id).where(
        PhotoContact.bank_id == bank_id, PhotoContact.kind == kind, PhotoContact.value == value)))
    showing = ads_showing(s, [int(i) for i, _ in rows])
    new = 0
    for item_id, line in rows:
        evidence = evidence_of(kind, value, [(int(item_id), line)])
        for other in showing.get(int(item_id), set()):
            new += upsert_link(s, bank_id, subject_id, other, link_kind,
                               strength_of(line.confidence, base_strength), evidence)
    return new


def on_item(s: Session, item_id: int) -> list[dict[str, Any]]:
    """The contacts read on one stored image (worked out by the linking step), with the box of each line."""
    rows = s.execute(select(PhotoContact, ImageText).join(ImageText, ImageText.id == PhotoContact.text_id)
                     .where(PhotoContact.item_id == item_id).order_by(ImageText.top, ImageText.left))
    return [{"kind": c.kind, "value": c.value, "box": t.box, "text": t.text,
             "confidence": round(t.confidence, 3)} for c, t in rows]
