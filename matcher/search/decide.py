"""From per-signal evidence to one score and a decision tier.

Each piece of evidence (a hash distance, a verified local-feature match) is
mapped onto a common scale on which its calibrated ``match`` threshold lands at
:data:`MATCH_SCORE` and its ``review`` threshold at :data:`REVIEW_SCORE`. The
candidate's score is the best of its evidence, so the tiers read the same for
every signal: ``match`` (safe to link without a person), ``review`` (worth a
human look), ``none``. Thresholds come from ``matcher/defaults.json``, written
by the calibration scripts in bench/ (``bench/calibrate_copy.py`` for the hash
signals and the ``copy`` section), and a bank's policy may override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from indexer.signals import base as signals
from indexer.signals.base import Thresholds

if TYPE_CHECKING:
    from matcher.defaults import Defaults

MATCH_SCORE = 0.8
REVIEW_SCORE = 0.5

MATCH, REVIEW, NONE = "match", "review", "none"


def signal_score(distance: float, t: Thresholds, max_distance: float) -> float:
    """Piecewise-linear map: 0 -> 1, match -> 0.8, review -> 0.5, far -> 0."""
    d = max(0.0, float(distance))
    if d <= t.match:
        return 1.0 - (1.0 - MATCH_SCORE) * (d / t.match if t.match > 0 else 1.0)
    if d <= t.review:
        span = t.review - t.match
        return MATCH_SCORE - (MATCH_SCORE - REVIEW_SCORE) * ((d - t.match) / span if span else 1)
    # Beyond review: fade out by the point unrelated images typically reach.
    far = max(t.review * 2.0, max_distance / 2.0)
    if d >= far:
        return 0.0
    return REVIEW_SCORE * (far - d) / (far - t.review)


def decision_for(score: float) -> str:
    if score >= MATCH_SCORE:
        return MATCH
    if score >= REVIEW_SCORE:
        return REVIEW
    return NONE


def cap(score: float, ceiling: float) -> float:
    """Limit a signal's say (for example a low-quality hash may not ``match``)."""
    return min(score, ceiling)


def combine(scores: dict[str, float], policy: dict[str, Any] | None = None) -> float:
    """One score per candidate: the strongest signal decides."""
    return max(scores.values(), default=0.0)


@dataclass(frozen=True)
class CopyRule:
    """When a geometrically verified local-feature match is a copy.

    ``match_inliers`` / ``review_inliers`` count *tight* inliers (within
    ``matcher.search.verify.TIGHT_PX`` of the fitted homography); ``min_coverage`` is
    the share of the reference or of the query the inliers must span for an
    automatic ``match``: two photos of one face, or one shared logo, agree on a
    few tight points in a small patch, a copy spans most of one of the images.
    ``strong_inliers`` tight inliers are a copy whatever they cover (a portrait
    whose keypoints all sit on the face, a photo small in a screenshot): far
    more than any look-alike reached in calibration.

    ``consistent_share``: a low-texture crop (a wall, a night sky) keeps only a few
    dozen keypoints, so even a true copy verifies with fewer than ``match_inliers``.
    What still tells it from chance is that nearly all of its tentative matches
    agree on the homography: when at least ``review_inliers`` tight inliers make up
    ``consistent_share`` of the matches and span ``consistent_coverage`` of an image,
    it is a match. Look-alikes and chance fits reach a few inliers among many
    disagreeing matches (at most 72% agreeing on copydet, 50% on generated suites).
    The defaults (1.01) switch this off.
    """

    match_inliers: float = 20.0
    review_inliers: float = 8.0
    min_coverage: float = 0.15
    strong_inliers: float = 40.0
    consistent_share: float = 1.01
    consistent_coverage: float = 1.01

    @classmethod
    def from_sections(cls, section: dict[str, Any], policy: dict[str, Any] | None = None) -> CopyRule:
        """The ``copy`` section of the defaults, with the bank policy's ``copy`` keys on top."""
        merged = {**section, **((policy or {}).get("copy") or {})}
        base = cls()
        return cls(float(merged.get("match_inliers", base.match_inliers)),
                   float(merged.get("review_inliers", base.review_inliers)),
                   float(merged.get("min_coverage", base.min_coverage)),
                   float(merged.get("strong_inliers", base.strong_inliers)),
                   float(merged.get("consistent_share", base.consistent_share)),
                   float(merged.get("consistent_coverage", base.consistent_coverage)))


def copy_score(tight_inliers: float, coverage: float, rule: CopyRule,
               consistent: float = 0.0) -> float:
    """Piecewise-linear in tight inliers: 0 -> 0, review -> 0.5, match -> 0.8, 3x match -> 1.

    Below ``min_coverage`` (and short of ``strong_inliers``) the score stops just
    under ``match``: a small shared patch is worth a human look, never an automatic link.
    ``consistent`` is the share of tentative matches that are inliers; see
    :class:`CopyRule` for when it makes a match of fewer inliers.
    """
    n = max(0.0, float(tight_inliers))
    if n <= rule.review_inliers:
        score = REVIEW_SCORE * n / rule.review_inliers if rule.review_inliers > 0 else 0.0
    elif n <= rule.match_inliers:
        span = rule.match_inliers - rule.review_inliers
        score = REVIEW_SCORE + (MATCH_SCORE - REVIEW_SCORE) * ((n - rule.review_inliers) / span)
    else:
        top = 3.0 * rule.match_inliers
        score = MATCH_SCORE + (1.0 - MATCH_SCORE) * min(1.0, (n - rule.match_inliers)
                                                         / max(top - rule.match_inliers, 1e-9))
    if coverage < rule.min_coverage and n < rule.strong_inliers:
        score = min(score, MATCH_SCORE - 0.01)
    if (n >= rule.review_inliers > 0 and consistent >= rule.consistent_share
            and coverage >= rule.consistent_coverage):
        score = max(score, MATCH_SCORE)
    return score


# The score of a candidate whose shared part is only a common frame (matcher.search.frames): kept as
# evidence (the page shows "same template, different photo"), below review: not a copy.
TEMPLATE_CAP = REVIEW_SCORE - 0.01
HASH_FAMILY = "hashes"
LOCAL_PREFIX = "local"


def is_template(evidence: dict[str, Any]) -> bool:
    """True when the evidence says the pair shares only a common frame (and not the same file)."""
    return bool(evidence.get(f"{LOCAL_PREFIX}_template")) and evidence.get("sha256") != 0


def hash_evidence_score(name: str, distance: float, quality: float | None, defaults: Defaults,
                        policy: dict[str, Any] | None = None) -> float:
    """Score of one hash signal's distance; too flat a picture (low PDQ quality) never auto-matches."""
    signal = signals.get(name)
    score = signal_score(distance, defaults.thresholds(name, policy), signal.max_distance())
    min_quality = getattr(signal, "min_quality", None)
    if min_quality is not None and quality is not None and quality * 100 < min_quality:
        score = cap(score, REVIEW_SCORE)
    return score


def evidence_score(evidence: dict[str, Any], defaults: Defaults,
                   policy: dict[str, Any] | None = None) -> float:
    """One calibrated score from all the evidence a candidate carries (its strongest piece).

    Reads the evidence as the searchers write it: ``sha256`` for identical
    bytes, ``<hash signal>`` distances (with ``<signal>_quality``), and
    ``local_tight_inliers`` / ``local_coverage`` / ``local_query_coverage`` /
    ``local_inliers`` / ``local_matches`` from the verified local-feature match.
    Used for live answers and by the calibration script, so both always agree.
    """
    scores: dict[str, float] = {}
    if evidence.get("sha256") == 0:
        scores["sha256"] = 1.0
    for name, value in evidence.items():
        if isinstance(value, int | float) and signals.family_of(name) == HASH_FAMILY:
            scores[name] = hash_evidence_score(name, float(value), evidence.get(f"{name}_quality"),
                                               defaults, policy)
    tight = evidence.get(f"{LOCAL_PREFIX}_tight_inliers")
    if tight is not None:
        coverage = max(float(evidence.get(f"{LOCAL_PREFIX}_coverage", 0.0)),
                       float(evidence.get(f"{LOCAL_PREFIX}_query_coverage", 0.0)))
        matches = float(evidence.get(f"{LOCAL_PREFIX}_matches", 0) or 0)
        consistent = float(evidence.get(f"{LOCAL_PREFIX}_inliers", 0)) / matches if matches else 0.0
        scores[LOCAL_PREFIX] = copy_score(float(tight), coverage,
                                          CopyRule.from_sections(defaults.section("copy"), policy),
                                          consistent)
    if is_template(evidence):
        # The verified local match lies on a frame many items share (matcher.search.frames): neither
        # it nor a whole-picture hash (which sees mostly that frame) says "same photo".
        return min(combine(scores, policy), TEMPLATE_CAP)
    return combine(scores, policy)
