"""Matching hashes without an image: the partner lookup.

Partners (platforms, hotlines) hold images they may not or will not send; they
send the perceptual hashes (and optionally the sha256) instead, in the hex
form `reunite export` writes. The hashes are searched exactly like the hashes
of an uploaded image, through the matcher's own hash searcher, so thresholds,
scores and tiers are the same; only the dihedral variants are missing, since
they cannot be derived from a hash.
"""

from __future__ import annotations

from indexer import pipeline
from indexer.signals import base as signals
from indexer.signals.base import SignalVector, VectorKind
from indexer.store.catalog import Bank
from matcher.privacy.consent import drop_expired
from matcher.privacy.minors import apply_minor_policy
from matcher.search.query import HASH_FAMILY, Candidate, HashSearcher, Matcher, merge


class BadHash(ValueError):
    """A hash the service cannot search (unknown signal, wrong length, not hex)."""


def parse_hashes(hashes: dict[str, str], sha256: str | None = None) -> pipeline.Extraction:
    """An extraction holding only the given hash vectors (raises BadHash)."""
    vectors = []
    for name, text in sorted(hashes.items()):
        try:
            signal = signals.get(name)
        except KeyError:
            raise BadHash(f"unknown hash signal {name!r}") from None
        if signal.family != HASH_FAMILY or signal.kind is not VectorKind.BINARY:
            raise BadHash(f"{name!r} is not a hash signal")
        try:
            vectors.append(SignalVector(name, signal.from_hex(text)))
        except ValueError as exc:
            raise BadHash(str(exc)) from None
    return pipeline.Extraction(sha256=(sha256 or "").lower(), width=0, height=0, format="",
                               frames=0, vectors=vectors)


def match_hashes(matcher: Matcher, query: pipeline.Extraction, banks: list[Bank],
                 top: int = 10) -> list[Candidate]:
    """Ranked candidates for a hash-only query, one per subject, best first."""
    searcher = next((s for s in matcher.searchers if isinstance(s, HashSearcher)), None)
    if searcher is None:
        searcher = HashSearcher(matcher.store, matcher.defaults)
    merged: dict[tuple[str, object], Candidate] = {}
    for bank in banks:
        for cand in searcher._match_bank(query, bank, top):
            key = (cand.bank, cand.subject_id if cand.subject_id is not None else ("item", cand.item))
            merged[key] = merge(merged.get(key), cand)
    ranked = sorted(merged.values(), key=lambda c: (-c.score, c.bank, c.label))
    return apply_minor_policy(matcher.store, drop_expired(matcher.store, ranked)[:top])
