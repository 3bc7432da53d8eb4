"""Who vouches for a list: Ed25519 keys, detached signatures, opaque ids.

A list is signed in a detached ``FILE.sig`` so the list itself stays plain
text that the PDQ tools and python-threatexchange read unchanged. The
signature covers a domain tag, the format name and the SHA-256 of every byte
of the list (hashed while streaming, so a large list never sits in memory):
a changed bit anywhere, a renamed format or another signer refuses the list.

Older reunite exports carried the signature inline, as a last line
``#reunite-signature v1 format=... key=... sig=...`` over the body before it;
those are still verified (``verify_inline``) and never written any more.

The data folder's signing key is made on first export (``keys/``, 0700; the
private key 0600); its public key is written once beside it, for partners.
Opaque ids are an HMAC of the image under a secret that stays in the data
folder, so a receiver can cite one back and nobody else can link it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEYS_DIR = "keys"
SIGNING_KEY = "signing-ed25519.pem"
PUBLIC_KEY = "signing-ed25519.pub"
ID_SECRET = "exchange-id.secret"
_DOMAIN = b"reunite-hashlist-v1\0"
_TRAILER = re.compile(r"^#reunite-signature v1 format=(pdq|csv) key=([0-9a-f]{16}) sig=([A-Za-z0-9+/=]+)$")
_DETACHED_DOMAIN = b"reunite-hashlist-v2\0"
_DETACHED = re.compile(r"^reunite-signature v2 format=([a-z-]+) key=([0-9a-f]{16}) sig=([A-Za-z0-9+/=]+)$")
MAX_LEGACY_BYTES = 512 * 1024 * 1024
SIG_SUFFIX = ".sig"


class ExchangeError(ValueError):
    """A list that cannot be exported or imported; the message says why, for people."""


# --- keys -----------------------------------------------------------------------

def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def signing_key(data_dir: Path, key_file: Path | None = None) -> tuple[Ed25519PrivateKey, Path | None, bool]:
    """The Ed25519 key exports are signed with: ``key_file``, else the data folder's (made once).

    Returns (key, public key file, created now).
    """
    if key_file is not None:
        return _load_private(key_file), None, False
    folder = Path(data_dir) / KEYS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path, public = folder / SIGNING_KEY, folder / PUBLIC_KEY
    created = False
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            _write_private(path, pem)
            created = True
        except FileExistsError:  # another process was first
            pass
    key = _load_private(path)
    if not public.exists():
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, public, created


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ExchangeError(f"{path}: no such key file") from None
    except (ValueError, TypeError) as exc:
        raise ExchangeError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ExchangeError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A signer's public key: PEM (as exported) or the raw 32 bytes in hex or base64."""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ExchangeError(f"{path}: no such public key file") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            text = data.decode("ascii").strip()
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ExchangeError(f"{path}: not an Ed25519 public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ExchangeError(f"{path}: not an Ed25519 public key")
    return key


def _id_secret(data_dir: Path) -> bytes:
    folder = Path(data_dir) / KEYS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / ID_SECRET
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process was first
            _write_private(path, secrets.token_hex(32).encode("ascii"))
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def opaque_id(secret: bytes, bank_id: int, sha256: str) -> str:
    """A stable id for one image of one bank that reveals nothing without the secret."""
    return "H-" + hmac.new(secret, f"{bank_id}:{sha256}".encode(), "sha256").hexdigest()[:24]


# --- signatures ---------------------------------------------------------------

def file_digest(path: Path) -> bytes:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _detached_message(fmt: str, digest: bytes) -> bytes:
    return _DETACHED_DOMAIN + fmt.encode("ascii") + b"\0" + digest


def sig_path(path: Path) -> Path:
    """Where the detached signature of ``path`` lives: ``FILE.sig`` beside it."""
    return Path(path).with_name(Path(path).name + SIG_SUFFIX)


def detached_signature(path: Path, fmt: str, key: Ed25519PrivateKey) -> bytes:
    """The text of ``FILE.sig`` for the list at ``path``."""
    sig = base64.b64encode(key.sign(_detached_message(fmt, file_digest(path)))).decode("ascii")
    return f"reunite-signature v2 format={fmt} key={fingerprint(key.public_key())} sig={sig}\n".encode()


def verify_detached(path: Path, signature_file: Path, signer: Ed25519PublicKey) -> str:
    """The format the signature vouches for, or ExchangeError when it does not verify."""
    try:
        text = Path(signature_file).read_bytes()[:4096].decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    found = _DETACHED.match(text)
    if found is None:
        raise ExchangeError(f"{signature_file.name} is not a reunite signature; refusing the list")
    fmt, key_id, sig_text = found.groups()
    _check_key(key_id, signer)
    try:
        signer.verify(base64.b64decode(sig_text, validate=True), _detached_message(fmt, file_digest(path)))
    except (InvalidSignature, ValueError):
        raise ExchangeError("the signature does not verify: the list was changed after it was "
                            "signed, or not signed by this signer; refusing it") from None
    return fmt


def _check_key(key_id: str, signer: Ed25519PublicKey) -> None:
    if key_id != fingerprint(signer):
        raise ExchangeError(f"the list names signing key {key_id}, not the given signer's key "
                            f"{fingerprint(signer)}; refusing it")


def has_inline_trailer(path: Path) -> bool:
    """Whether ``path`` ends with a legacy ``#reunite-signature`` line (read from its tail only)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 512))
        tail = f.read()
    return tail.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(b"#reunite-signature")


def verify_inline(data: bytes, signer: Ed25519PublicKey) -> tuple[str, bytes]:
    """(format, body) of a legacy inline-signed list, or ExchangeError when altered."""
    if len(data) > MAX_LEGACY_BYTES:
        raise ExchangeError(f"the list is larger than {MAX_LEGACY_BYTES:,} bytes")
    body_end = data.rstrip(b"\n").rfind(b"\n") + 1
    last = data[body_end:].rstrip(b"\n")
    try:
        trailer = _TRAILER.match(last.decode("ascii"))
    except UnicodeDecodeError:
        trailer = None
    if trailer is None:
        raise ExchangeError("the list's last line is not a valid '#reunite-signature' trailer; refusing it")
    fmt, key_id, sig_text = trailer.groups()
    _check_key(key_id, signer)
    body = data[:body_end]
    try:
        signer.verify(base64.b64decode(sig_text, validate=True), _DOMAIN + fmt.encode("ascii") + b"\0" + body)
    except (InvalidSignature, ValueError):
        raise ExchangeError("the signature does not verify: the list was changed after it was "
                            "signed, or not signed by this signer; refusing it") from None
    return fmt, body


def sign_inline(body: bytes, fmt: str, key: Ed25519PrivateKey) -> bytes:
    """A legacy inline-signed list (only for tests of back compatibility; exports are detached)."""
    sig = base64.b64encode(key.sign(_DOMAIN + fmt.encode("ascii") + b"\0" + body)).decode("ascii")
    trailer = f"#reunite-signature v1 format={fmt} key={fingerprint(key.public_key())} sig={sig}\n"
    return body + trailer.encode("ascii")
