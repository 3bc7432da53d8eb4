"""A bank's hashes as a list partners and the field's tools read, with a detached signature.

Per stored image exactly: an opaque id, the PDQ hash with its quality and (csv)
the pHash. Never a label, a name, an image, a face vector, a sha256 or any
manifest field. The list is plain text in the chosen format; the signature
goes to ``FILE.sig`` beside it, so ``mih-query`` or threatexchange's file
source read the list as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from indexer.exchange.formats import EXPORT_FORMATS, ExportRow, render
from indexer.exchange.signing import (
    ExchangeError,
    _id_secret,
    detached_signature,
    fingerprint,
    opaque_id,
    sig_path,
    signing_key,
)
from indexer.store.atomic import write_atomically
from indexer.store.catalog import Bank, Item, Subject, Vector, utcnow
from indexer.store.store import Store


@dataclass(frozen=True)
class ExportResult:
    path: Path
    signature: Path
    rows: int
    skipped_without_pdq: int
    fingerprint: str
    public_key: Path | None
    key_created: bool


def bank_rows(store: Store, bank: Bank) -> list[ExportRow]:
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
        rows.append(ExportRow(opaque_id(secret, bank.id, str(sha)), pdq[0].hex() if pdq else None,
                              quality, phash[0].hex() if phash else None))
    return rows


def export_bank(store: Store, bank: Bank, fmt: str, out: Path, key_file: Path | None = None
                ) -> ExportResult:
    """Write ``bank``'s list to ``out`` and its signature to ``out.sig`` (each atomically)."""
    if fmt not in EXPORT_FORMATS:
        raise ExchangeError(f"unknown format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    if bank.kind == "hashes":
        raise ExchangeError(f"bank {bank.name!r} holds a list imported from a partner; share the "
                            "partner's signed file instead of re-signing it as ours")
    rows = bank_rows(store, bank)
    if not rows:
        raise ExchangeError(f"bank {bank.name!r} has no PDQ or pHash to export (index it with the "
                            "hashes signals)")
    lines = list(render(rows, fmt))
    written = len(lines) - (1 if fmt in ("csv", "te-csv") else 0)
    if written == 0:
        raise ExchangeError(f"bank {bank.name!r} has no PDQ hash for the {fmt} format (use --format csv "
                            "to share its pHashes)")
    key, public, created = signing_key(store.data_dir, key_file)
    out = Path(out)
    write_atomically(out, "".join(lines).encode("utf-8"), mode=0o644)  # a list meant to be shared
    signature = sig_path(out)
    write_atomically(signature, detached_signature(out, fmt, key), mode=0o644)
    return ExportResult(out, signature, written, len(rows) - written, fingerprint(key.public_key()),
                        public, created)
