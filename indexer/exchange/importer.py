"""A hash list (ours, a partner's, or the field's tools') into a ``hashes`` bank, all or nothing.

Trust is explicit. A list that carries a reunite signature (a detached
``FILE.sig``, or the inline trailer of older exports) is verified against the
signer's public key and refused when anything was changed; it cannot be
loaded "unsigned" instead, because skipping a check that could fail is how
tampered lists get in. A list without a signature (the PDQ tools,
threatexchange, StopNCII) loads only when the caller says ``unsigned``, and
the bank then records that it is unverified. Every row is parsed and checked
before anything is written, and the rows are written in one transaction.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from indexer import pipeline
from indexer.exchange.formats import IMPORT_FORMATS, MAX_ROWS, Parsed, Row, detect, parse, parse_stream
from indexer.exchange.signing import (
    MAX_LEGACY_BYTES,
    ExchangeError,
    fingerprint,
    has_inline_trailer,
    load_public_key,
    sig_path,
    verify_detached,
    verify_inline,
)
from indexer.signals import base as signals
from indexer.signals.base import SignalVector
from indexer.store.catalog import Bank
from indexer.store.store import NewImage, Store
from indexer.text import with_article


@dataclass(frozen=True)
class ImportResult:
    bank: str
    format: str
    rows: int
    added: int
    verified: bool
    fingerprint: str | None
    left_out: dict[str, int] = field(default_factory=dict)


def read_list(path: Path, signer_file: Path | None, fmt: str | None, unsigned: bool,
              max_rows: int = MAX_ROWS) -> tuple[str, Parsed, str | None]:
    """(format, rows, signer fingerprint or None) of a list, after the trust checks above."""
    path = Path(path)
    if not path.is_file():
        raise ExchangeError("no such file")
    if fmt is not None and fmt not in IMPORT_FORMATS:
        raise ExchangeError(f"unknown format {fmt!r} (one of {', '.join(IMPORT_FORMATS)})")
    detached = sig_path(path)
    inline = has_inline_trailer(path)
    if detached.exists() or inline:
        where = detached.name if detached.exists() else "its last line"
        if signer_file is None:
            raise ExchangeError(f"the list is signed ({where}); give the signer's public key with "
                                "--signer to verify it (a signed list is never loaded unverified)")
        signer = load_public_key(signer_file)
        if detached.exists():
            signed_fmt = verify_detached(path, detached, signer)
            _same_format(fmt, signed_fmt)
            return signed_fmt, parse(path, signed_fmt, max_rows), fingerprint(signer)
        if path.stat().st_size > MAX_LEGACY_BYTES:  # the old format is verified in memory
            raise ExchangeError(f"an inline-signed list is larger than {MAX_LEGACY_BYTES:,} bytes")
        signed_fmt, body = verify_inline(path.read_bytes(), signer)
        _same_format(fmt, signed_fmt)
        return signed_fmt, parse_stream(io.BytesIO(body), signed_fmt, max_rows), fingerprint(signer)
    if signer_file is not None:
        raise ExchangeError(f"the list carries no reunite signature (no {detached.name} beside it), so "
                            "it cannot be verified against --signer")
    if not unsigned:
        raise ExchangeError("the list carries no reunite signature; to load it as an unverified "
                            "list, pass --unsigned")
    fmt = fmt or detect(path)
    return fmt, parse(path, fmt, max_rows), None


def _same_format(asked: str | None, signed: str) -> None:
    if asked is not None and asked != signed:
        raise ExchangeError(f"the signature vouches for format {signed!r}, not {asked!r}; refusing it")


def import_list(store: Store, path: Path, bank_name: str, signer_file: Path | None = None, *,
                fmt: str | None = None, unsigned: bool = False, max_rows: int = MAX_ROWS) -> ImportResult:
    """Read, check and load ``path`` into the ``hashes`` bank ``bank_name``; nothing is written on refusal."""
    existing = store.catalog.bank(bank_name)
    if existing is not None and existing.kind != "hashes":
        raise ExchangeError(f"bank {bank_name!r} is {with_article(existing.kind)} bank; "
                            "import into a hashes bank")
    fmt, parsed, key_id = read_list(Path(path), signer_file, fmt, unsigned, max_rows)
    if not parsed.rows:
        reasons = ", ".join(f"{n} {why}" for why, n in parsed.left_out.items()) or "no rows"
        raise ExchangeError(f"the list has no PDQ hash to load ({reasons})")
    verified = key_id is not None
    batch = _batch(parsed.rows, fmt, key_id)
    bank = store.catalog.ensure_bank(bank_name, "hashes", _policy(None, key_id, fmt))
    if existing is not None:
        _record_trust(store, bank, key_id, fmt)  # before the rows: an unverified list marks it first
    try:
        results = store.add_images(bank, batch)
    except BaseException:
        if existing is None:
            _drop_empty_bank(store, bank)
        raise
    store.checkpoint()
    return ImportResult(bank.name, fmt, len(parsed.rows), sum(1 for _i, created in results if created),
                        verified, key_id, dict(parsed.left_out))


def _policy(old: dict | None, key_id: str | None, fmt: str) -> dict:
    """A hashes bank is verified only while every list loaded into it was."""
    policy = dict(old or {})
    verified = key_id is not None and policy.get("verified", True) is not False
    policy["verified"] = verified
    signers = sorted(set(policy.get("signers", [])) | ({key_id} if key_id else set()))
    policy["signers"] = signers
    if key_id is not None and "imported_from" not in policy:
        policy["imported_from"] = key_id
    policy["formats"] = sorted(set(policy.get("formats", [])) | {fmt})
    return policy


def _record_trust(store: Store, bank: Bank, key_id: str | None, fmt: str) -> None:
    with store.catalog.session() as s:
        row = s.get(Bank, bank.id)
        if row is not None:
            row.policy = _policy(row.policy, key_id, fmt)


def _batch(rows: list[Row], fmt: str, key_id: str | None) -> list[NewImage]:
    batch: list[NewImage] = []
    seen: set[str] = set()
    for row in rows:
        label = row.label or (f"pdq-{row.pdq[:16]}" if row.pdq else "unnamed")
        sha = _synthetic_sha(key_id, label, row)
        if sha in seen:  # the same hash under the same name twice: one image
            continue
        seen.add(sha)
        batch.append(NewImage(_extraction(row, sha), label=label,
                              source=f"import:{key_id or 'unsigned'}",
                              attributes={"signer": key_id, "verified": key_id is not None, "format": fmt}))
    return batch


def _synthetic_sha(key_id: str | None, label: str, row: Row) -> str:
    """The catalog's content key for an image we never saw (cannot equal a real image's sha256)."""
    text = f"reunite-import:{key_id or 'unsigned'}:{label}:{row.pdq or ''}:{row.phash or ''}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _extraction(row: Row, sha: str) -> pipeline.Extraction:
    vectors = []
    if row.pdq is not None:
        quality = None if row.quality is None else row.quality / 100.0
        vectors.append(SignalVector("pdq", signals.get("pdq").from_hex(row.pdq), quality=quality))
    if row.phash is not None:
        vectors.append(SignalVector("phash", signals.get("phash").from_hex(row.phash)))
    return pipeline.Extraction(sha256=sha, width=0, height=0, format="hashes", frames=0, vectors=vectors)


def _drop_empty_bank(store: Store, bank: Bank) -> None:
    with store.catalog.session() as s:
        row = s.get(Bank, bank.id)
        if row is not None and store.catalog.count_items(bank.id) == 0:
            s.delete(row)
