"""Signed hash lists: share what a bank knows without sharing a single image.

Organisations that may not pass victims' photos to each other can pass their
perceptual hashes, as StopNCII and Meta's ThreatExchange do. An export holds,
per stored image, exactly: an opaque id, the PDQ hash with its quality, and
(CSV) the pHash. Never a label, a name, an image, a face vector, a sha256 or
any manifest field: the opaque id is an HMAC of the image under a secret that
stays in the data folder, so the receiver can cite it back ("your H-... was
seen here") and nobody else can link it to anything.

Formats (UTF-8 text, one image per line):
- ``pdq``: ``<pdq hex>,<quality 0-100>,<id>``, the line format of the PDQ
  reference tools and ThreatExchange hash dumps;
- ``csv``: a header ``id,pdq,pdq_quality,phash`` then one row per image.

Both end with one trailer line ``#reunite-signature v1 format=... key=...
sig=...``: an Ed25519 signature (``cryptography``) over a domain tag, the
format and every byte before the trailer. The importer verifies it against
the signer's public key before reading anything, so a changed bit anywhere
(rows, format, signature) or a missing trailer refuses the whole list.

The data folder's signing key is made on first export (``keys/``, 0700; the
private key 0600); its public key is written once beside it, for partners.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from indexer import pipeline
from indexer.signals import base as signals
from indexer.signals.base import SignalVector
from indexer.store.atomic import write_atomically
from indexer.store.catalog import Bank, Item, Subject, Vector, utcnow
from indexer.store.store import NewImage, Store

FORMATS = ("pdq", "csv")
CSV_HEADER = "id,pdq,pdq_quality,phash"
KEYS_DIR = "keys"
SIGNING_KEY = "signing-ed25519.pem"
PUBLIC_KEY = "signing-ed25519.pub"
ID_SECRET = "exchange-id.secret"
_DOMAIN = b"reunite-hashlist-v1\0"
_TRAILER = re.compile(r"^#reunite-signature v1 format=(pdq|csv) key=([0-9a-f]{16}) sig=([A-Za-z0-9+/=]+)$")
_ID = re.compile(r"^H-[0-9a-f]{24}$")
_HEX = re.compile(r"^[0-9a-f]+$")
MAX_LIST_BYTES = 512 * 1024 * 1024


class ExchangeError(ValueError):
    """A list that cannot be exported or imported; the message says why, for people."""


@dataclass(frozen=True)
class HashRow:
    """One shared image: its opaque id, PDQ (hex, quality 0-100) and pHash (hex)."""

    id: str
    pdq: str | None
    quality: int | None
    phash: str | None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    skipped_without_pdq: int
    fingerprint: str
    public_key: Path | None
    key_created: bool


@dataclass(frozen=True)
class ImportResult:
    bank: str
    rows: int
    added: int
    fingerprint: str


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


# --- export ---------------------------------------------------------------------

def bank_rows(store: Store, bank: Bank) -> list[HashRow]:
    """One row per image of ``bank`` that has a PDQ or pHash, in a stable order.

    Images of subjects whose consent has expired are left out: they may no
    longer be matched here, so they must not be matched elsewhere on our word.
    """
    secret = _id_secret(store.data_dir)
    now = utcnow()
    with store.catalog.session() as s:
        items = s.execute(select(Item.id, Item.sha256, Subject.consent_expires)
                          .outerjoin(Subject, Subject.id == Item.subject_id)
                          .where(Item.bank_id == bank.id).order_by(Item.id)).all()
        vectors = s.execute(select(Vector.item_id, Vector.signal, Vector.data, Vector.quality)
                            .where(Vector.bank_id == bank.id, Vector.signal.in_(("pdq", "phash")))
                            .order_by(Vector.id)).all()
    by_item: dict[int, dict[str, tuple[bytes, float | None]]] = {}
    for item_id, signal, data, quality in vectors:
        by_item.setdefault(int(item_id), {}).setdefault(str(signal), (bytes(data), quality))
    rows = []
    for item_id, sha, expires in items:
        if expires is not None and expires <= now:
            continue
        found = by_item.get(int(item_id), {})
        if not found:
            continue
        pdq = found.get("pdq")
        phash = found.get("phash")
        quality = None if pdq is None or pdq[1] is None else int(round(pdq[1] * 100))
        rows.append(HashRow(opaque_id(secret, bank.id, str(sha)), pdq[0].hex() if pdq else None,
                            quality, phash[0].hex() if phash else None))
    return rows


def render(rows: list[HashRow], fmt: str) -> tuple[bytes, int]:
    """The unsigned body of a list and how many rows it had to leave out (no PDQ, pdq format)."""
    lines: list[str] = []
    skipped = 0
    if fmt == "pdq":
        for r in rows:
            if r.pdq is None:
                skipped += 1
                continue
            lines.append(f"{r.pdq},{r.quality if r.quality is not None else 0},{r.id}")
    elif fmt == "csv":
        lines.append(CSV_HEADER)
        for r in rows:
            quality = "" if r.quality is None else str(r.quality)
            lines.append(f"{r.id},{r.pdq or ''},{quality},{r.phash or ''}")
    else:
        raise ExchangeError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    return "".join(line + "\n" for line in lines).encode("ascii"), skipped


def _message(fmt: str, body: bytes) -> bytes:
    return _DOMAIN + fmt.encode("ascii") + b"\0" + body


def sign(body: bytes, fmt: str, key: Ed25519PrivateKey) -> bytes:
    """``body`` followed by its signature trailer."""
    sig = base64.b64encode(key.sign(_message(fmt, body))).decode("ascii")
    trailer = f"#reunite-signature v1 format={fmt} key={fingerprint(key.public_key())} sig={sig}\n"
    return body + trailer.encode("ascii")


def export_bank(store: Store, bank: Bank, fmt: str, out: Path, key_file: Path | None = None
                ) -> ExportResult:
    """Write ``bank``'s signed hash list to ``out`` (atomically)."""
    if fmt not in FORMATS:
        raise ExchangeError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if bank.kind == "hashes":
        raise ExchangeError(f"bank {bank.name!r} holds a list imported from a partner; share the "
                            "partner's signed file instead of re-signing it as ours")
    rows = bank_rows(store, bank)
    if not rows:
        raise ExchangeError(f"bank {bank.name!r} has no PDQ or pHash to export (index it with the "
                            "hashes signals)")
    body, skipped = render(rows, fmt)
    key, public, created = signing_key(store.data_dir, key_file)
    signed = sign(body, fmt, key)
    out = Path(out)
    write_atomically(out, signed, mode=0o644)  # a list meant to be shared
    return ExportResult(out, len(rows) - skipped, skipped, fingerprint(key.public_key()), public, created)


# --- import ---------------------------------------------------------------------

def verify(data: bytes, signer: Ed25519PublicKey) -> tuple[str, bytes]:
    """(format, body) of a signed list, or ExchangeError when it is unsigned or altered."""
    if len(data) > MAX_LIST_BYTES:
        raise ExchangeError(f"the list is larger than {MAX_LIST_BYTES:,} bytes")
    body_end = data.rstrip(b"\n").rfind(b"\n") + 1
    last = data[body_end:].rstrip(b"\n")
    try:
        trailer = _TRAILER.match(last.decode("ascii"))
    except UnicodeDecodeError:
        trailer = None
    if trailer is None:
        raise ExchangeError("the list is not signed (no valid '#reunite-signature' trailer on its "
                            "last line); refusing it")
    fmt, key_id, sig_text = trailer.groups()
    if key_id != fingerprint(signer):
        raise ExchangeError(f"the list names signing key {key_id}, not the given signer's key "
                            f"{fingerprint(signer)}; refusing it")
    try:
        sig = base64.b64decode(sig_text, validate=True)
        body = data[:body_end]
        signer.verify(sig, _message(fmt, body))
    except (InvalidSignature, ValueError):
        raise ExchangeError("the signature does not verify: the list was changed after it was "
                            "signed, or not signed by this signer; refusing it") from None
    return fmt, body


def parse(body: bytes, fmt: str) -> list[HashRow]:
    """Rows of a verified body; any malformed row refuses the list (it was signed that way)."""
    try:
        lines = body.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ExchangeError("the list is not ASCII text") from None
    if fmt == "csv":
        if not lines or lines[0].strip() != CSV_HEADER:
            raise ExchangeError(f"a csv list starts with the header {CSV_HEADER!r}")
        lines = lines[1:]
    rows: list[HashRow] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, start=2 if fmt == "csv" else 1):
        parts = line.strip().split(",")
        if fmt == "pdq":
            if len(parts) != 3:
                raise ExchangeError(f"line {n}: expected 'pdq,quality,id'")
            pdq, quality, ident, phash = parts[0], parts[1], parts[2], ""
        else:
            if len(parts) != 4:
                raise ExchangeError(f"line {n}: expected '{CSV_HEADER}'")
            ident, pdq, quality, phash = parts
        row = HashRow(ident, pdq or None, int(quality) if quality.isdigit() else None, phash or None)
        _check_row(row, n, quality)
        if row.id in seen:
            raise ExchangeError(f"line {n}: id {row.id} appears twice")
        seen.add(row.id)
        rows.append(row)
    return rows


def _check_row(row: HashRow, n: int, quality_text: str) -> None:
    if not _ID.match(row.id):
        raise ExchangeError(f"line {n}: the id must be H- and 24 hex digits")
    if row.pdq is None and row.phash is None:
        raise ExchangeError(f"line {n}: neither a PDQ nor a pHash")
    if row.pdq is not None and (len(row.pdq) != 64 or not _HEX.match(row.pdq)):
        raise ExchangeError(f"line {n}: a PDQ hash is 64 lower-case hex digits")
    if row.phash is not None and (len(row.phash) != 16 or not _HEX.match(row.phash)):
        raise ExchangeError(f"line {n}: a pHash is 16 lower-case hex digits")
    if quality_text and (row.quality is None or not 0 <= row.quality <= 100):
        raise ExchangeError(f"line {n}: quality must be an integer from 0 to 100")


def _synthetic_sha(key_id: str, ident: str) -> str:
    """The catalog's content key for an image we never saw (cannot equal a real image's sha256)."""
    return hashlib.sha256(f"reunite-import:{key_id}:{ident}".encode()).hexdigest()


def import_list(store: Store, path: Path, bank_name: str, signer_file: Path) -> ImportResult:
    """Verify ``path`` against the signer's public key and load it into a ``hashes`` bank.

    Everything is checked before anything is written, and the rows are
    written in one transaction: a refused list leaves the data folder as it was.
    """
    signer = load_public_key(signer_file)
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ExchangeError(f"{path}: no such file") from None
    fmt, body = verify(data, signer)
    rows = parse(body, fmt)
    key_id = fingerprint(signer)
    existing = store.catalog.bank(bank_name)
    if existing is not None and existing.kind != "hashes":
        raise ExchangeError(f"bank {bank_name!r} is a {existing.kind} bank; import into a hashes bank")
    batch = [NewImage(_extraction(row, key_id), label=row.id, source=f"import:{key_id}",
                      attributes={"signer": key_id}) for row in rows]
    bank = store.catalog.ensure_bank(bank_name, "hashes", {"imported_from": key_id})
    try:
        results = store.add_images(bank, batch)
    except BaseException:
        if existing is None:
            _drop_empty_bank(store, bank)
        raise
    store.checkpoint()
    return ImportResult(bank.name, len(rows), sum(1 for _i, created in results if created), key_id)


def _extraction(row: HashRow, key_id: str) -> pipeline.Extraction:
    vectors = []
    if row.pdq is not None:
        quality = None if row.quality is None else row.quality / 100.0
        vectors.append(SignalVector("pdq", signals.get("pdq").from_hex(row.pdq), quality=quality))
    if row.phash is not None:
        vectors.append(SignalVector("phash", signals.get("phash").from_hex(row.phash)))
    return pipeline.Extraction(sha256=_synthetic_sha(key_id, row.id), width=0, height=0,
                               format="hashes", frames=0, vectors=vectors)


def _drop_empty_bank(store: Store, bank: Bank) -> None:
    with store.catalog.session() as s:
        row = s.get(Bank, bank.id)
        if row is not None and store.catalog.count_items(bank.id) == 0:
            s.delete(row)
