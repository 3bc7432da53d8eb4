"""Encryption at rest for what must never sit in clear on disk.

Missing-person reference photos, personal fields and review notes are sealed
with AES-256-GCM (the ``cryptography`` package). The key comes from the
environment (``REUNITE_ENCRYPTION_KEY``: 32 random bytes, urlsafe base64) and
never from the data folder, so that a copied data folder is useless without
the key. Every ciphertext is bound to its purpose and object by associated
data (``b"photo:17"``), so that a sealed blob moved to another row or file
fails to open instead of revealing the wrong person's data.

Format: ``MAGIC (4 bytes) | nonce (12 bytes) | ciphertext+tag``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "REUNITE_ENCRYPTION_KEY"
MAGIC = b"RUE1"
_NONCE = 12


class KeyProblem(RuntimeError):
    """The encryption key is missing or malformed (a configuration problem)."""


class MissingKey(KeyProblem):
    """Data needs a key and none is configured."""


class DecryptionFailed(ValueError):
    """The blob was altered, belongs elsewhere, or was sealed with another key."""


def generate_key() -> str:
    """A fresh key in the format ``REUNITE_ENCRYPTION_KEY`` expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_key(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii") + b"=" * (-len(text.strip()) % 4))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise KeyProblem(f"{KEY_ENV} is not urlsafe base64") from None
    if len(raw) != 32:
        raise KeyProblem(f"{KEY_ENV} must decode to 32 bytes, not {len(raw)} "
                        f"(make one with `reunite keys generate-encryption-key`)")
    return raw


class Cipher:
    """AES-256-GCM with a random nonce per message and purpose-bound associated data."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        # A separate subkey for keyed digests: one key, one purpose.
        self._digest_key = hmac.new(key, b"reunite keyed digest", hashlib.sha256).digest()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Cipher | None:
        """The cipher of ``$REUNITE_ENCRYPTION_KEY``, or None when it is not set."""
        text = (environ if environ is not None else os.environ).get(KEY_ENV, "").strip()
        return cls(parse_key(text)) if text else None

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return MAGIC + nonce + self._aead.encrypt(nonce, data, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        if not is_sealed(blob):
            raise DecryptionFailed("not an encrypted blob")
        nonce, body = blob[len(MAGIC):len(MAGIC) + _NONCE], blob[len(MAGIC) + _NONCE:]
        try:
            return self._aead.decrypt(nonce, body, context)
        except InvalidTag:
            raise DecryptionFailed("the blob does not open with this key and context") from None


    def digest(self, purpose: str, text: str) -> str:
        """A keyed, deterministic digest: equal inputs match, nobody without the key can guess."""
        message = purpose.encode("utf-8") + b"\0" + text.encode("utf-8")
        return hmac.new(self._digest_key, message, hashlib.sha256).hexdigest()


def is_sealed(blob: bytes) -> bool:
    return blob[:len(MAGIC)] == MAGIC and len(blob) > len(MAGIC) + _NONCE


def cipher_or_none() -> Cipher | None:
    """The process-wide cipher (read from the environment on every call: tests set it)."""
    return Cipher.from_env()


def require_cipher() -> Cipher:
    cipher = cipher_or_none()
    if cipher is None:
        raise MissingKey(f"{KEY_ENV} is not set: missing-person data is encrypted at rest and "
                         f"cannot be stored or read without the key")
    return cipher
