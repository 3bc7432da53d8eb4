"""A candidate's evidence as a reviewer reads it: sentences, and shapes to draw on the two images.

The matcher stores evidence as terse keys (``pdq: 12``, ``face_distance: 0.31``,
``local_inliers: 143``, boxes as ``[left, top, right, bottom]`` in original
pixels). A reviewer deciding hundreds of candidates a day needs the same facts
in words with their scale ("PDQ distance 12 of 256 bits", "143 geometric
inliers") and drawn where they are: the face that was compared, the region
that was found in both pictures. Keys this module does not know are still
listed, as they are, so that no evidence is hidden from the person deciding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer.signals import base as signals
from indexer.signals.base import Thresholds
from matcher import defaults as defaults_mod
from matcher.review_stats import FAMILY_LABELS, evidence_families
from matcher.verify import TIGHT_PX

HASH_NAMES = {"pdq": "PDQ", "phash": "pHash", "dhash": "dHash", "ahash": "aHash", "whash": "wHash"}
# Keys explained by the sentences below (and not listed again as raw values).
_FACE_KEYS = {"face_signal", "face_distance", "face_score", "query_face_box", "reference_item",
              "face_low_quality"}


@dataclass(frozen=True)
class Shape:
    """A rectangle to draw on one image, in that image's original pixels."""

    kind: str  # "face", "region" or "text": the stylesheet gives each its colour and dash
    left: int
    top: int
    width: int
    height: int
    label: str


@dataclass
class Explained:
    """Everything the candidate page shows about why the engine proposes this pair."""

    sentences: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    query_shapes: list[Shape] = field(default_factory=list)
    reference_shapes: list[Shape] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)


def _box(value: Any, kind: str, label: str) -> Shape | None:
    """A Shape from ``[left, top, right, bottom]``; None for anything malformed."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    try:
        left, top, right, bottom = (int(v) for v in value)
    except (TypeError, ValueError):
        return None
    if right <= left or bottom <= top:
        return None
    return Shape(kind, left, top, right - left, bottom - top, label)


def _hash_sentence(name: str, distance: Any, transform: str | None, quality: Any,
                   thresholds: Thresholds | None) -> str:
    try:
        bits = int(signals.get(name).max_distance())
        scale = f" of {bits} bits"
    except KeyError:
        scale = ""
    text = f"{HASH_NAMES.get(name, name)} distance {distance}{scale}"
    if distance == 0:
        text += " (identical hash)"
    elif thresholds is not None and isinstance(distance, int | float):
        if distance <= thresholds.match:
            text += f" (within the match threshold, {thresholds.match:g})"
        elif distance <= thresholds.review:
            text += f" (within the review threshold, {thresholds.review:g})"
        else:
            text += f" (beyond the review threshold, {thresholds.review:g}: not similar by this hash)"
    if transform:
        text += f", after {transform.replace('_', ' ')} of the query"
    if isinstance(quality, int | float):
        text += f"; hash quality {float(quality) * 100:.0f} of 100"
    return text


def _face_sentences(ev: dict[str, Any]) -> list[str]:
    out = []
    if "face_distance" in ev:
        similarity = 1.0 - float(ev["face_distance"])
        out.append(f"Face distance {float(ev['face_distance']):.3f} (cosine similarity {similarity:.3f}, "
                   f"{ev.get('face_signal', 'face')} embedding)")
    if "face_score" in ev:
        out.append(f"Face score {float(ev['face_score']):.2f} on the 0 to 1 decision scale")
    if ev.get("face_low_quality"):
        out.append("A face is small, blurred or turned away: this face alone cannot make a match")
    return out


def _local_sentences(ev: dict[str, Any], prefix: str) -> list[str]:
    inliers = ev.get(f"{prefix}_inliers")
    if inliers is None:
        return []
    text = f"{int(inliers)} geometric inliers"
    if ev.get(f"{prefix}_matches") is not None:
        text += f" of {int(ev[f'{prefix}_matches'])} keypoint matches agree on one mapping"
    if ev.get(f"{prefix}_tight_inliers") is not None:
        text += f" ({int(ev[f'{prefix}_tight_inliers'])} of them within {TIGHT_PX:g} px)"
    if ev.get(f"{prefix}_transform"):
        text += f", after {str(ev[f'{prefix}_transform']).replace('_', ' ')} of the query"
    out = [text]
    if ev.get(f"{prefix}_coverage") is not None:
        out.append(f"The matched region covers {float(ev[f'{prefix}_coverage']) * 100:.0f}% of the "
                   f"reference and {float(ev.get(f'{prefix}_query_coverage') or 0) * 100:.0f}% of the query")
    if ev.get(f"{prefix}_template"):
        # matcher.frames: the shared part is a frame many items of the bank share.
        out.append(f"Same template, different photo: "
                   f"{float(ev.get(f'{prefix}_shared_inliers') or 0) * 100:.0f}% of the inliers lie on a "
                   f"frame many items of the bank share, and the photos inside it differ "
                   f"({ev.get(f'{prefix}_differ_cells', '?')} areas differ): not a copy")
    return out


CONTACT_WORDS = {"phone": "Phone number", "email": "E-mail address", "handle": "Messenger handle",
                 "url": "Web address"}


def text_sentences(contacts: list[dict[str, Any]], where: str) -> tuple[list[str], list[Shape]]:
    """Contacts read by OCR on a photo (:func:`matcher.photo_contacts.on_item`): sentences and boxes.

    Why: a number painted on the photo is evidence the reviewer must be able to
    check by eye; the box shows which pixels the engine read it from.
    """
    sentences: list[str] = []
    shapes: list[Shape] = []
    for c in contacts:
        word = CONTACT_WORDS.get(str(c.get("kind")), str(c.get("kind")))
        sentences.append(f"{word} {c.get('value')} read on the {where} photo: \u201c{c.get('text')}\u201d "
                         f"(OCR confidence {float(c.get('confidence') or 0):.2f})")
        if (shape := _box(c.get("box"), "text", f"text read: {c.get('value')}")) is not None:
            shapes.append(shape)
    return sentences, shapes


def explain(evidence: dict[str, Any], score: float, tier: str,
            reference_face_box: list[int] | None = None, policy: dict[str, Any] | None = None,
            reference_contacts: list[dict[str, Any]] | None = None) -> Explained:
    """Sentences (strongest kind of evidence first) and shapes for one candidate's ``evidence``.

    ``reference_contacts`` are the contacts OCR read on the reference photo (ads banks only).
    """
    ev = dict(evidence or {})
    out = Explained(families=[FAMILY_LABELS[f] for f in evidence_families(ev)])
    out.sentences.append(f"Score {score:.2f} on the 0 to 1 scale: tier \u201c{tier}\u201d "
                         f"(0.80 and above is a match, 0.50 and above is worth review)")
    used: set[str] = set(_FACE_KEYS)
    if "sha256" in ev:
        out.sentences.append("Identical file: the SHA-256 of the query equals the reference's")
        used.add("sha256")
    for prefix in sorted({k[: -len("_inliers")] for k in ev
                          if k.endswith("_inliers") and not k.endswith(("_tight_inliers",
                                                                        "_shared_inliers"))}):
        out.sentences.extend(_local_sentences(ev, prefix))
        used.update(f"{prefix}_{x}" for x in ("inliers", "matches", "tight_inliers", "coverage",
                                              "query_coverage", "region", "query_region", "transform",
                                              "template"))
        if (shape := _box(ev.get(f"{prefix}_content_region"), "region", "its own photo")) is not None:
            out.query_shapes.append(shape)
        if (shape := _box(ev.get(f"{prefix}_query_region"), "region", "matched region")) is not None:
            out.query_shapes.append(shape)
        if (shape := _box(ev.get(f"{prefix}_region"), "region", "matched region")) is not None:
            out.reference_shapes.append(shape)
    out.sentences.extend(_face_sentences(ev))
    if (shape := _box(ev.get("query_face_box"), "face", "face compared")) is not None:
        out.query_shapes.append(shape)
    if (shape := _box(reference_face_box, "face", "reference face")) is not None:
        out.reference_shapes.append(shape)
    table = defaults_mod.load()
    for name in sorted(k for k in ev if k in HASH_NAMES or _is_hash(k)):
        out.sentences.append(_hash_sentence(name, ev[name], ev.get(f"{name}_transform"),
                                            ev.get(f"{name}_quality"), _thresholds(table, name, policy)))
        used.update({name, f"{name}_transform", f"{name}_quality"})
    sentences, shapes = text_sentences(reference_contacts or [], "reference")
    out.sentences.extend(sentences)
    out.reference_shapes.extend(shapes)
    out.other = [(k, _plain(v)) for k, v in sorted(ev.items()) if k not in used]
    return out


def _thresholds(table: defaults_mod.Defaults, name: str, policy: dict[str, Any] | None) -> Thresholds | None:
    try:
        return table.thresholds(name, policy)
    except KeyError:
        return None


def _is_hash(name: str) -> bool:
    try:
        return signals.get(name).family == "hashes"
    except KeyError:
        return False


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)
