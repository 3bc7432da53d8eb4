"""Sealing personal fields of a subject before they reach the catalog.

Consent records and case references of missing persons must be readable only
by the service that holds the key. Every write of ``Subject.personal`` goes
through :func:`seal` and every read through :func:`unseal`, so that encryption
at rest lives here, in one place, without touching enrollment or matching.

With ``REUNITE_ENCRYPTION_KEY`` set, fields are sealed with AES-256-GCM
(:mod:`indexer.crypto`); without it they are plain UTF-8 JSON, which only
banks that hold no people may use: pass ``required=True`` (the service does
for ``missing_person`` banks, and refuses to start without a key on such a
bank) to make a missing key an error instead of a silent downgrade. Both
forms are read back, so data written before a key was configured stays
readable.
"""

from __future__ import annotations

import json
from typing import Any

from indexer import crypto

_CONTEXT = b"personal-fields"


def seal(fields: dict[str, Any], *, required: bool = False) -> bytes:
    """The stored form of ``fields`` (JSON-serialisable values only).

    Raises :class:`indexer.crypto.MissingKey` when ``required`` and no key is set.
    """
    data = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
    cipher = crypto.require_cipher() if required else crypto.cipher_or_none()
    return cipher.encrypt(data, _CONTEXT) if cipher is not None else data


def unseal(data: bytes | None) -> dict[str, Any]:
    """The fields sealed by :func:`seal` (an empty dict for nothing stored).

    Raises MissingKey for encrypted fields without a key and DecryptionFailed
    for fields that were altered or sealed with another key.
    """
    if not data:
        return {}
    raw = bytes(data)
    if crypto.is_sealed(raw):
        raw = crypto.require_cipher().decrypt(raw, _CONTEXT)
    value = json.loads(raw.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("sealed personal fields are not a JSON object")
    return value
