"""A candidate's evidence as a reviewer reads it: sentences, and shapes to draw on the two images.

The matcher stores evidence as terse keys (``pdq: 12``, ``face_distance: 0.31``,
``local_inliers: 143``, boxes as ``[left, top, right, bottom]`` in original
pixels). A reviewer deciding hundreds of candidates a day needs the same facts
in words with their scale ("PDQ distance 12 of 256 bits", "143 geometric
inliers") and drawn where they are: the face that was compared; for a copy,
the keypoints that agreed and each picture's outline carried onto the other
by the verified homography (a rotated copy shows a rotated box); for a room,
the agreeing keypoints, the verified region and lines between the pairs.

Only the signals that spoke are listed as sentences: a hash beyond its review
threshold is evidence of nothing, so the hashes that did not find the pair
share one compact line. Keys this module does not know are still listed, as
they are, so that no evidence is hidden from the person deciding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer.signals import base as signals
from indexer.signals.base import Thresholds
from matcher import defaults as defaults_mod
from matcher.review.stats import FAMILY_LABELS
from matcher.search.verify import TIGHT_PX

HASH_NAMES = {"pdq": "PDQ", "phash": "pHash", "dhash": "dHash", "ahash": "aHash", "whash": "wHash"}
# Keys explained by the sentences below (and not listed again as raw values).
_FACE_KEYS = {"face_signal", "face_distance", "face_score", "query_face_box", "reference_item",
              "face_low_quality", "query_face_landmarks"}


@dataclass(frozen=True)
class Shape:
    """A rectangle to draw on one image, in that image's original pixels."""

    kind: str  # "face", "region" or "text": the stylesheet gives each its colour and dash
    left: int
    top: int
    width: int
    height: int
    label: str


@dataclass(frozen=True)
class Outline:
    """A polygon to draw on one image (a mapped outline, a verified region), original pixels."""

    kind: str  # "region" (a homography's quadrilateral) or "hull" (a room's verified region)
    points: tuple[tuple[int, int], ...]
    label: str

    @property
    def svg_points(self) -> str:
        return " ".join(f"{x},{y}" for x, y in self.points)


@dataclass(frozen=True)
class Pairs:
    """Keypoint correspondences: both pictures side by side in one drawing, lines between pairs.

    The two pictures are scaled to a common height :data:`PAIR_HEIGHT` and
    set :data:`PAIR_GAP` apart; ``lines`` are (x1, y1, x2, y2) in that drawing.
    """

    width: int
    height: int
    query_width: int
    reference_x: int
    reference_width: int
    lines: tuple[tuple[float, float, float, float], ...]
    label: str


PAIR_HEIGHT = 600
PAIR_GAP = 24


@dataclass
class Explained:
    """Everything the candidate page shows about why the engine proposes this pair."""

    sentences: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    query_shapes: list[Shape] = field(default_factory=list)
    reference_shapes: list[Shape] = field(default_factory=list)
    query_outlines: list[Outline] = field(default_factory=list)
    reference_outlines: list[Outline] = field(default_factory=list)
    # Keypoints that agreed, on each picture, and the correspondences [qx, qy, rx, ry].
    query_points: list[tuple[int, int]] = field(default_factory=list)
    reference_points: list[tuple[int, int]] = field(default_factory=list)
    pairs: list[tuple[int, int, int, int]] = field(default_factory=list)
    pairs_label: str = ""
    # The compared faces' five landmarks (eyes, nose, mouth corners), on each picture.
    query_landmarks: list[tuple[int, int]] = field(default_factory=list)
    reference_landmarks: list[tuple[int, int]] = field(default_factory=list)
    # Signals that were computed but did not find this pair: one compact line.
    quiet: str = ""
    other: list[tuple[str, str]] = field(default_factory=list)

    @property
    def drawn_kinds(self) -> set[str]:
        """What the legend must explain."""
        kinds = {s.kind for s in self.query_shapes + self.reference_shapes}
        kinds |= {o.kind for o in self.query_outlines + self.reference_outlines}
        if self.query_points or self.reference_points:
            kinds.add("keypoint")
        if self.query_landmarks or self.reference_landmarks:
            kinds.add("landmark")
        return kinds

    def correspondences(self, query_size: tuple[int, int] | None,
                        reference_size: tuple[int, int] | None) -> Pairs | None:
        """The side-by-side drawing of :attr:`pairs`, or None without pairs or picture sizes."""
        if not self.pairs or not query_size or not reference_size or min(*query_size, *reference_size) <= 0:
            return None
        sq = PAIR_HEIGHT / query_size[1]
        sr = PAIR_HEIGHT / reference_size[1]
        qw = round(query_size[0] * sq)
        rx = qw + PAIR_GAP
        rw = round(reference_size[0] * sr)
        lines = tuple((round(qx * sq, 1), round(qy * sq, 1), round(rx + px * sr, 1), round(py * sr, 1))
                      for qx, qy, px, py in self.pairs)
        return Pairs(rx + rw, PAIR_HEIGHT, qw, rx, rw, lines, self.pairs_label)


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


def _points(value: Any) -> list[tuple[int, int]]:
    """Five face landmarks from ``[[x, y], ...]``; [] for anything malformed (never half a face)."""
    if not isinstance(value, list | tuple) or len(value) != 5:
        return []
    try:
        out = [(int(x), int(y)) for x, y in value]
    except (TypeError, ValueError):
        return []
    return out if all(x >= 0 and y >= 0 for x, y in out) else []


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
        model = "one 3-D scene (a fundamental matrix: the same room from another place)" \
            if prefix == "scene" else "one mapping (a homography: the same picture, edited)"
        text += f" of {int(ev[f'{prefix}_matches'])} keypoint matches agree on {model}"
    if ev.get(f"{prefix}_tight_inliers") is not None:
        text += f" ({int(ev[f'{prefix}_tight_inliers'])} of them within {TIGHT_PX:g} px)"
    if ev.get(f"{prefix}_transform"):
        text += f", after {str(ev[f'{prefix}_transform']).replace('_', ' ')} of the query"
    out = [text]
    if ev.get(f"{prefix}_coverage") is not None:
        out.append(f"The matched region covers {float(ev[f'{prefix}_coverage']) * 100:.0f}% of the "
                   f"reference and {float(ev.get(f'{prefix}_query_coverage') or 0) * 100:.0f}% of the query")
    if ev.get(f"{prefix}_template"):
        # matcher.search.frames: the shared part is a frame many items of the bank share.
        out.append(f"Same template, different photo: "
                   f"{float(ev.get(f'{prefix}_shared_inliers') or 0) * 100:.0f}% of the inliers lie on a "
                   f"frame many items of the bank share, and the photos inside it differ "
                   f"({ev.get(f'{prefix}_differ_cells', '?')} areas differ): not a copy")
    return out


def _scene_sentences(ev: dict[str, Any]) -> list[str]:
    """A room match: the global descriptors and the fused evidence, in words."""
    out = []
    if ev.get("scene_similarity") is not None:
        out.append(f"Room descriptor (VLAD of the background's keypoints) similarity "
                   f"{float(ev['scene_similarity']):.2f} (cosine: 1 is the same descriptor)")
    if ev.get("scene_embedding_similarity") is not None:
        out.append(f"Scene embedding similarity {float(ev['scene_embedding_similarity']):.2f} (cosine)")
    if ev.get("scene_net_similarity") is not None:
        out.append(f"Learned room descriptor (EfficientNet-Lite0, people masked) similarity "
                   f"{float(ev['scene_net_similarity']):.2f} (cosine; it ranks venues, it does not decide)")
    if ev.get("scene_colour") is not None:
        out.append(f"Background colour similarity {float(ev['scene_colour']):.2f} "
                   f"(HSV histograms off the people; white balance moves it)")
    if ev.get("scene_evidence") is not None:
        text = (f"Fused room evidence {float(ev['scene_evidence']):.1f} "
                "(inliers + weighted descriptor and colour)")
        if ev.get("scene_margin") is not None:
            text += f", {float(ev['scene_margin']):+.1f} ahead of the next venue or of chance"
        out.append(text)
    if ev.get("scene_keypoints") is not None:
        text = f"{int(ev['scene_keypoints'])} keypoints on the query's background"
        if ev.get("scene_masked") is not None:
            text += f"; {float(ev['scene_masked']) * 100:.0f}% of the query was masked as people"
        out.append(text)
    return out


# Shown in words elsewhere on the page ("venue": api.web.context.venue_facts), or drawn.
SCENE_KEYS = {"scene_similarity", "scene_embedding_similarity", "scene_colour", "scene_evidence",
              "scene_margin", "scene_keypoints", "scene_masked", "scene_pairs", "scene_hull",
              "scene_query_hull", "scene_net_similarity", "scene_rank_evidence"}


def _points(value: Any) -> tuple[tuple[int, int], ...]:
    """``[[x, y], ...]`` as int pairs; empty for anything malformed."""
    if not isinstance(value, list | tuple):
        return ()
    out = []
    for p in value:
        if not isinstance(p, list | tuple) or len(p) != 2:
            return ()
        try:
            out.append((int(p[0]), int(p[1])))
        except (TypeError, ValueError):
            return ()
    return tuple(out)


def _pairs(value: Any) -> list[tuple[int, int, int, int]]:
    if not isinstance(value, list | tuple):
        return []
    out = []
    for p in value:
        if not isinstance(p, list | tuple) or len(p) != 4:
            return []
        try:
            out.append((int(p[0]), int(p[1]), int(p[2]), int(p[3])))
        except (TypeError, ValueError):
            return []
    return out


def _draw_local(out: Explained, ev: dict[str, Any], prefix: str) -> None:
    """Shapes of one local-feature check: outlines or regions, keypoints, correspondences."""
    quad, query_quad = _points(ev.get(f"{prefix}_quad")), _points(ev.get(f"{prefix}_query_quad"))
    hull, query_hull = _points(ev.get(f"{prefix}_hull")), _points(ev.get(f"{prefix}_query_hull"))
    if len(query_quad) == 4:
        out.query_outlines.append(Outline("region", query_quad, "the reference's outline, mapped by "
                                                                "the verified homography"))
    elif len(query_hull) >= 3:
        out.query_outlines.append(Outline("hull", query_hull, "verified region"))
    elif (shape := _box(ev.get(f"{prefix}_query_region"), "region", "matched region")) is not None:
        out.query_shapes.append(shape)
    if len(quad) == 4:
        out.reference_outlines.append(Outline("region", quad, "the query's outline, mapped by "
                                                              "the verified homography"))
    elif len(hull) >= 3:
        out.reference_outlines.append(Outline("hull", hull, "verified region"))
    elif (shape := _box(ev.get(f"{prefix}_region"), "region", "matched region")) is not None:
        out.reference_shapes.append(shape)
    pairs = _pairs(ev.get(f"{prefix}_pairs"))
    if pairs and not out.pairs:
        out.pairs = pairs
        out.query_points = [(p[0], p[1]) for p in pairs]
        out.reference_points = [(p[2], p[3]) for p in pairs]
        total = ev.get(f"{prefix}_inliers")
        out.pairs_label = (f"{len(pairs)} of the {int(total)} inlier correspondences (the most similar "
                           f"keypoints)" if isinstance(total, int) and total > len(pairs)
                           else f"{len(pairs)} inlier correspondences")


def _spoke(ev: dict[str, Any], table: defaults_mod.Defaults, policy: dict[str, Any] | None) -> list[str]:
    """The signals that found this pair, by their real names, strongest kind first."""
    out = []
    if "sha256" in ev:
        out.append(FAMILY_LABELS["exact"])
    if isinstance(ev.get("local_inliers"), int) and ev["local_inliers"] > 0:
        out.append("Local features (keypoints verified by a homography)")
    if ev.get("scene_inliers") is not None:
        room = []
        if isinstance(ev.get("scene_similarity"), int | float) and ev["scene_similarity"] > 0:
            room.append("room descriptor (VLAD)")
        if ev.get("scene_embedding_similarity") is not None:
            room.append("scene embedding")
        if isinstance(ev.get("scene_inliers"), int) and ev["scene_inliers"] > 0:
            room.append("geometric inliers")
        if isinstance(ev.get("scene_colour"), int | float) and ev["scene_colour"] > 0:
            room.append("background colour")
        out.append("Room: " + ", ".join(room) if room else "Room")
    if "face_score" in ev or "face_distance" in ev:
        out.append(f"Face ({ev.get('face_signal', 'face')} embedding)")
    spoke = [HASH_NAMES.get(name, name) for name in sorted(k for k in ev if k in HASH_NAMES or _is_hash(k))
             if _within_review(name, ev[name], _thresholds(table, name, policy))]
    if spoke:
        out.append(f"Perceptual hash{'es' if len(spoke) > 1 else ''} ({', '.join(spoke)})")
    return out


def _face_models(ev: dict[str, Any]) -> tuple[list[str], set[str]]:
    """Each face model's own distance and score, when several were fused: a sentence, and its keys."""
    parts, used = [], set()
    for key in sorted(k for k in ev if k.endswith("_distance") and k != "face_distance"):
        name = key[: -len("_distance")]
        try:
            if signals.get(name).family != "faces":
                continue
        except KeyError:
            continue
        text = f"{name} distance {float(ev[key]):.3f}"
        if isinstance(ev.get(f"{name}_score"), int | float):
            text += f" (score {float(ev[f'{name}_score']):.2f})"
        parts.append(text)
        used.update({key, f"{name}_score"})
    if len(parts) < 2 and not ev.get("face_fusion"):
        return [], used | {"face_fusion"}  # one model: the face distance above already says it
    fused = f", fused as {ev['face_fusion']}" if ev.get("face_fusion") else ""
    return [f"Per face model: {'; '.join(parts)}{fused}"], used | {"face_fusion"}


def _within_review(name: str, distance: Any, thresholds: Thresholds | None) -> bool:
    if not isinstance(distance, int | float):
        return False
    if distance == 0:
        return True
    return thresholds is not None and distance <= thresholds.review


CONTACT_WORDS = {"phone": "Phone number", "email": "E-mail address", "handle": "Messenger handle",
                 "url": "Web address"}


def text_sentences(contacts: list[dict[str, Any]], where: str) -> tuple[list[str], list[Shape]]:
    """Contacts read by OCR on a photo (:func:`matcher.networks.photo_contacts.on_item`): sentences and boxes.

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
            reference_contacts: list[dict[str, Any]] | None = None,
            reference_face_landmarks: list[list[int]] | None = None) -> Explained:
    """Sentences (strongest kind of evidence first) and shapes for one candidate's ``evidence``.

    ``reference_contacts`` are the contacts OCR read on the reference photo (ads banks only);
    ``reference_face_landmarks`` the five points stored with the reference's face.
    """
    ev = dict(evidence or {})
    table = defaults_mod.load()
    out = Explained(families=_spoke(ev, table, policy))
    out.sentences.append(f"Score {score:.2f} on the 0 to 1 scale: tier \u201c{tier}\u201d "
                         f"(0.80 and above is a match, 0.50 and above is worth review)")
    used: set[str] = set(_FACE_KEYS) | SCENE_KEYS | {"venue"}
    if "sha256" in ev:
        out.sentences.append("Identical file: the SHA-256 of the query equals the reference's")
        used.add("sha256")
    for prefix in sorted({k[: -len("_inliers")] for k in ev
                          if k.endswith("_inliers") and not k.endswith(("_tight_inliers",
                                                                        "_shared_inliers"))}):
        out.sentences.extend(_local_sentences(ev, prefix))
        if prefix == "scene":
            out.sentences.extend(_scene_sentences(ev))
        used.update(f"{prefix}_{x}" for x in ("inliers", "matches", "tight_inliers", "coverage",
                                              "query_coverage", "region", "query_region", "transform",
                                              "pairs", "quad", "query_quad", "hull", "query_hull",
                                              "template", "content_region"))
        _draw_local(out, ev, prefix)
        if (shape := _box(ev.get(f"{prefix}_content_region"), "region", "its own photo")) is not None:
            out.query_shapes.append(shape)
    out.sentences.extend(_face_sentences(ev))
    models, model_keys = _face_models(ev)
    out.sentences.extend(models)
    used |= model_keys
    if (shape := _box(ev.get("query_face_box"), "face", "face compared")) is not None:
        out.query_shapes.append(shape)
    if (shape := _box(reference_face_box, "face", "reference face")) is not None:
        out.reference_shapes.append(shape)
    # The landmarks show where the face's eyes, nose and mouth were found: a box on a
    # turned or half-hidden face says little, five misplaced points say the alignment failed.
    out.query_landmarks = _points(ev.get("query_face_landmarks"))
    out.reference_landmarks = _points(reference_face_landmarks)
    quiet = []
    for name in sorted(k for k in ev if k in HASH_NAMES or _is_hash(k)):
        thresholds = _thresholds(table, name, policy)
        if _within_review(name, ev[name], thresholds):
            out.sentences.append(_hash_sentence(name, ev[name], ev.get(f"{name}_transform"),
                                                ev.get(f"{name}_quality"), thresholds))
        else:
            quiet.append(f"{HASH_NAMES.get(name, name)} {_plain(ev[name])}{_scale(name)}")
        used.update({name, f"{name}_transform", f"{name}_quality"})
    if quiet:
        out.quiet = ("Not similar by the perceptual hashes (beyond their review thresholds): "
                     + ", ".join(quiet))
    sentences, shapes = text_sentences(reference_contacts or [], "reference")
    out.sentences.extend(sentences)
    out.reference_shapes.extend(shapes)
    out.other = [(k, _plain(v)) for k, v in sorted(ev.items()) if k not in used]
    return out


def _scale(name: str) -> str:
    try:
        return f" of {int(signals.get(name).max_distance())}"
    except KeyError:
        return ""


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
