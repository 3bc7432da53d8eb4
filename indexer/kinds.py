"""Which signal families a bank of each kind indexes by default.

Ads are searched for reposts (hashes, local features) and for faces and rooms;
missing-person references need faces; venues need the room background. A
family that is not installed in this process is skipped.
"""

from __future__ import annotations

from indexer.signals import base as signals

DEFAULT_FAMILIES: dict[str, list[str]] = {
    # Faces and rooms in ads are opt-in (`--signals hashes,local,faces,scene`):
    # the face detector costs 0.1-2 s and the room features 0.4-0.9 s and 270 KB
    # per image, 5-20x the rest of the pipeline, on crawls of 10^5 images.
    "ads": ["hashes", "local"],
    "venue": ["hashes", "scene"],
    "missing_person": ["hashes", "faces"],
    "hashes": ["hashes"],
}


def default_families(kind: str) -> list[str]:
    available = set(signals.families())
    return [f for f in DEFAULT_FAMILIES.get(kind, ["hashes"]) if f in available]
