"""Which signal families a bank of each kind indexes by default.

Ads are searched for reposts (hashes, local features) and for faces and rooms;
missing-person references need faces; venues need the room background. A
family that is not installed in this process is skipped.
"""

from __future__ import annotations

from indexer.signals import base as signals

DEFAULT_FAMILIES: dict[str, list[str]] = {
    # Faces are on in ads: YuNet costs 10-20 ms of one core on a photo without a
    # face (most ad photos), and a face costs both descriptors (BENCHMARKS.md,
    # faces), so that a missing person's face can find every indexed ad.
    # Rooms stay opt-in (`--signals hashes,local,faces,scene`): 0.4-0.9 s and
    # 270 KB per image, on crawls of 10^5 images.
    "ads": ["hashes", "local", "faces"],
    "venue": ["hashes", "scene"],
    "missing_person": ["hashes", "faces"],
    "hashes": ["hashes"],
}

# Bank kinds whose PDQ match radius (31 bits, HMA's; matcher/defaults.json
# "kind_thresholds") lies within what multi-index hashing answers without a
# scan (indexer/store/mih.py). Other kinds match PDQ at 70 bits, where that
# index would read every hash per lookup: they keep FAISS's flat scan.
NARROW_HASH_KINDS = frozenset({"missing_person", "hashes"})


def default_families(kind: str) -> list[str]:
    available = set(signals.families())
    return [f for f in DEFAULT_FAMILIES.get(kind, ["hashes"]) if f in available]
