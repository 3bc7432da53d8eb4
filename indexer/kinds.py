"""Which signal families a bank of each kind indexes by default.

Ads are searched for reposts (hashes, local features) and for faces and rooms;
missing-person references need faces; venues need the room background. A
family that is not installed in this process is skipped.
"""

from __future__ import annotations

from indexer.signals import base as signals

DEFAULT_FAMILIES: dict[str, list[str]] = {
    "ads": ["hashes"],
    "venue": ["hashes"],
    "missing_person": ["hashes"],
    "hashes": ["hashes"],
}


def default_families(kind: str) -> list[str]:
    available = set(signals.families())
    return [f for f in DEFAULT_FAMILIES.get(kind, ["hashes"]) if f in available]
