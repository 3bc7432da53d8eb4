"""A candidate's evidence as plain lines for the terminal (``reunite match``).

The matcher's evidence is a dict of terse keys; printed as a Python dict it
was unreadable and leaked the drawing coordinates. These are the sentences the
reviewer reads on the candidate page (:func:`api.web.evidence.explain`, one
wording for both), less the score sentence that the candidate's own line
already carries, then the hashes that did not find the pair on one line, then
any value no sentence explains as ``key: value``. ``--json`` keeps the raw keys
for scripts.
"""

from __future__ import annotations

from typing import Any

from indexer.text import displayable


def evidence_lines(evidence: dict[str, Any], score: float, tier: str,
                   policy: dict[str, Any] | None = None) -> list[str]:
    """The lines that say why a candidate was proposed (stored text escaped for the terminal)."""
    from api.web.evidence import explain

    explained = explain(evidence, score, tier, policy=policy)
    lines = list(explained.sentences[1:])  # [0] is the score and tier, printed on the candidate's line
    if explained.quiet:
        lines.append(explained.quiet)
    lines += [f"{key}: {value}" for key, value in explained.other if not _drawing(key)]
    return [displayable(line) for line in lines]


def _drawing(key: str) -> bool:
    """Coordinates kept to draw the evidence on the page: noise in a terminal."""
    from matcher.search.query import DRAWING_SUFFIXES

    return key.endswith(DRAWING_SUFFIXES)
