"""From per-signal evidence to one score and a decision tier.

Each signal's distance is mapped onto a common scale on which the calibrated
``match`` threshold lands at :data:`MATCH_SCORE` and the ``review`` threshold
at :data:`REVIEW_SCORE`. The candidate's score is the best of its signals, so
the tiers read the same for every signal: ``match`` (safe to link without a
person), ``review`` (worth a human look), ``none``.
"""

from __future__ import annotations

from typing import Any

from indexer.signals.base import Thresholds

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
