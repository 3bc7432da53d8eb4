"""Hash exchange between two data folders: signed export, verified import, nothing personal leaves.

Folder A indexes the fixture photos as ads (with ad ids, sites and phones in
the manifest) and exports its hashes; folder B imports the list and finds a
re-encoded copy of one of A's photos in it. A flipped bit anywhere, a missing
signature or the wrong signer refuses the list and leaves B untouched.
Peer formats (the PDQ tools, threatexchange, StopNCII) are in test_exchange_peers.py.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from pathlib import Path

import pytest
from conftest import PHOTOS, catalog_of, jpeg_bytes, photo, run_reunite, vectors_of

from indexer import exchange
from indexer.exchange import signing
from indexer.store.store import Store
from matcher.search.query import Matcher

# Each test runs on SQLite and on PostgreSQL (every data folder it makes gets its own database).
pytestmark = pytest.mark.usefixtures("every_folder_on_backend")

PDQ_LINE = re.compile(r"^[0-9a-f]{64},\d{1,3},H-[0-9a-f]{24}$")
CSV_LINE = re.compile(r"^H-[0-9a-f]{24},([0-9a-f]{64})?,(\d{1,3})?,([0-9a-f]{16})?$")
PERSONAL = ["AD-SECRET", "victim-site.example", "+12125550143", "555-0143", "astronaut", "coffee"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, every_folder_on_backend: None) -> dict[str, Path]:
    """Folder A with an indexed bank, and its pdq and csv exports."""
    root = tmp_path_factory.mktemp("exchange")
    photos = root / "photos"
    photos.mkdir()
    with (photos / "ads.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "site", "phones"])
        for n, name in enumerate(PHOTOS):
            (photos / f"{Path(name).stem}.jpg").write_bytes(jpeg_bytes(photo(name)))
            writer.writerow([f"{Path(name).stem}.jpg", f"AD-SECRET-{n}", "victim-site.example",
                             "(212) 555-0143"])
    data_a = root / "a"
    run_reunite("index", str(photos / "ads.csv"), "--bank", "crawl", "--signals", "hashes", "--quiet",
                data=data_a, check=True)
    out: dict[str, Path] = {"root": root, "a": data_a}
    for fmt in exchange.EXPORT_FORMATS:
        out[fmt] = root / f"list.{fmt}"
        done = run_reunite("export", "--bank", "crawl", "--format", fmt, "--out", str(out[fmt]),
                           data=data_a, check=True)
        assert "signed by key" in done.stdout
    return out


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def test_signing_key_is_private_and_made_once(exported: dict[str, Path]) -> None:
    keys = exported["a"] / exchange.KEYS_DIR
    assert stat.S_IMODE(os.stat(keys / exchange.SIGNING_KEY).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    key1, _pub, created = exchange.signing_key(exported["a"])
    assert not created  # made by the first export, reused by the second
    public = exchange.load_public_key(keys / exchange.PUBLIC_KEY)
    assert exchange.fingerprint(public) == exchange.fingerprint(key1.public_key())


def test_an_export_holds_only_hashes_quality_and_opaque_ids(exported: dict[str, Path]) -> None:
    pdq_lines = exported["pdq"].read_text(encoding="ascii").splitlines()
    assert len(pdq_lines) == len(PHOTOS)  # no trailer: the signature is in FILE.sig
    assert all(PDQ_LINE.match(line) for line in pdq_lines)
    csv_lines = exported["csv"].read_text(encoding="ascii").splitlines()
    assert csv_lines[0] == "id,pdq,pdq_quality,phash"
    assert all(CSV_LINE.match(line) for line in csv_lines[1:]) and len(csv_lines) == len(PHOTOS) + 1
    store = Store(exported["a"], catalog_of(exported["a"]), vectors_of(exported["a"]))
    shas = store.catalog.known_sha256(store.bank_or_error("crawl").id)
    for fmt in exchange.EXPORT_FORMATS:
        text = exported[fmt].read_text(encoding="ascii")
        assert "#reunite-signature" not in text
        assert (exported[fmt].parent / f"list.{fmt}.sig").read_text().startswith("reunite-signature v2 ")
        for forbidden in [*PERSONAL, *shas]:
            assert forbidden not in text
    ids_pdq = {line.rsplit(",", 1)[1] for line in pdq_lines}
    ids_csv = {line.split(",", 1)[0] for line in csv_lines[1:]}
    assert ids_pdq == ids_csv  # the same image has the same opaque id in every export


@pytest.mark.parametrize("fmt", ["pdq", "csv", "te-csv"])
def test_import_matches_a_reencoded_photo_across_folders(exported: dict[str, Path], fmt: str,
                                                         tmp_path: Path) -> None:
    data_b = tmp_path / "b"
    signer = exported["a"] / exchange.KEYS_DIR / exchange.PUBLIC_KEY
    done = run_reunite("import", str(exported[fmt]), "--bank", "partner-a", "--signer", str(signer),
                       data=data_b, check=True)
    assert f"imported {len(PHOTOS)} hashes ({fmt}, signed by" in done.stdout
    store_b = Store(data_b, catalog_of(data_b), vectors_of(data_b))
    bank_b = store_b.bank_or_error("partner-a")
    assert bank_b.kind == "hashes"
    query = photo("chelsea.png")
    query = query.resize((query.width * 2 // 3, query.height * 2 // 3))
    found = Matcher(store_b).match(jpeg_bytes(query, quality=55), [bank_b], top=3)
    assert found and found[0].decision == "match"
    # The hit is the opaque id folder A gave its chelsea photo, and nothing else identifies it.
    store_a = Store(exported["a"], catalog_of(exported["a"]), vectors_of(exported["a"]))
    bank_a = store_a.bank_or_error("crawl")
    [own] = Matcher(store_a).match(jpeg_bytes(photo("chelsea.png")), [bank_a], top=1)
    secret = exchange._id_secret(exported["a"])
    assert found[0].label == exchange.opaque_id(secret, bank_a.id, _sha_of(store_a, own.item))


def _sha_of(store: Store, item_id: int) -> str:
    from indexer.store.catalog import Item

    with store.catalog.session() as s:
        item = s.get(Item, item_id)
        assert item is not None
        return item.sha256


def _refused(store: Store, list_file: Path, signer: Path, match: str) -> None:
    with pytest.raises(exchange.ExchangeError, match=match):
        exchange.import_list(store, list_file, "partner", signer)
    assert store.catalog.bank("partner") is None  # nothing half-written


def _copy_list(exported: dict[str, Path], fmt: str, folder: Path, body: bytes | None = None,
               sig: bytes | None = None) -> Path:
    """A copy of an export and its FILE.sig in ``folder``, either part replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"list.{fmt}"
    path.write_bytes(exported[fmt].read_bytes() if body is None else body)
    sig_file = exported[fmt].parent / f"list.{fmt}.sig"
    (folder / f"list.{fmt}.sig").write_bytes(sig_file.read_bytes() if sig is None else sig)
    return path


def test_tampered_unsigned_or_foreign_lists_are_refused(exported: dict[str, Path], tmp_path: Path) -> None:
    signer = exported["a"] / exchange.KEYS_DIR / exchange.PUBLIC_KEY
    store = Store(tmp_path / "b", catalog_of(tmp_path / "b"), vectors_of(tmp_path / "b"))
    data = exported["pdq"].read_bytes()
    sig = (exported["pdq"].parent / "list.pdq.sig").read_bytes()
    sig_at = sig.index(b"sig=") + 10
    cases = {
        "row": (_flip(data, 5), None, "does not verify"),
        "quality": (_flip(data, 66), None, "does not verify"),
        "appended": (data + data.splitlines(keepends=True)[0], None, "does not verify"),
        "signature": (None, _flip(sig, sig_at), "does not verify|not a reunite signature"),
        "format": (None, sig.replace(b"format=pdq", b"format=hex"), "does not verify"),
        "garbage signature": (None, b"hello\n", "not a reunite signature"),
    }
    for name, (body, new_sig, match) in cases.items():
        path = _copy_list(exported, "pdq", tmp_path / name.replace(" ", "-"), body, new_sig)
        _refused(store, path, signer, match)
        # --unsigned never lets a signed list in without its check.
        with pytest.raises(exchange.ExchangeError, match="--signer"):
            exchange.import_list(store, path, "partner", None, unsigned=True)
    other_dir = tmp_path / "c"
    exchange.signing_key(other_dir)
    _refused(store, exported["pdq"], other_dir / exchange.KEYS_DIR / exchange.PUBLIC_KEY, "signing key")
    # A list without its FILE.sig is unsigned: refused against a signer, and without --unsigned.
    bare = tmp_path / "bare.pdq"
    bare.write_bytes(data)
    _refused(store, bare, signer, "no reunite signature")
    with pytest.raises(exchange.ExchangeError, match="pass --unsigned"):
        exchange.import_list(store, bare, "partner")
    assert store.catalog.bank("partner") is None
    # The command line says so and exits 2.
    bad = tmp_path / "row" / "list.pdq"
    done = run_reunite("import", str(bad), "--bank", "partner", "--signer", str(signer), data=tmp_path / "b")
    assert done.returncode == 2
    assert "signature does not verify" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_legacy_inline_signed_list_is_still_verified(exported: dict[str, Path], tmp_path: Path) -> None:
    """Lists exported before the detached signature carry it on their last line; they still load."""
    key, public, _created = exchange.signing_key(exported["a"])
    body = exported["pdq"].read_bytes()
    legacy = tmp_path / "legacy.pdq"
    legacy.write_bytes(signing.sign_inline(body, "pdq", key))
    store = Store(tmp_path / "b", catalog_of(tmp_path / "b"), vectors_of(tmp_path / "b"))
    assert public is not None
    result = exchange.import_list(store, legacy, "partner", public)
    assert result.verified and result.rows == len(PHOTOS) and result.format == "pdq"
    tampered = tmp_path / "tampered.pdq"
    tampered.write_bytes(_flip(legacy.read_bytes(), 7))
    with pytest.raises(exchange.ExchangeError, match="does not verify"):
        exchange.import_list(store, tampered, "partner-2", public)
    with pytest.raises(exchange.ExchangeError, match="--signer"):
        exchange.import_list(store, tampered, "partner-2", None, unsigned=True)
    assert store.catalog.bank("partner-2") is None


def test_imported_lists_are_not_re_exported(exported: dict[str, Path], tmp_path: Path) -> None:
    store = Store(tmp_path / "b", catalog_of(tmp_path / "b"), vectors_of(tmp_path / "b"))
    signer = exported["a"] / exchange.KEYS_DIR / exchange.PUBLIC_KEY
    result = exchange.import_list(store, exported["csv"], "partner", signer)
    assert result.added == len(PHOTOS)
    assert exchange.import_list(store, exported["csv"], "partner", signer).added == 0  # idempotent
    with pytest.raises(exchange.ExchangeError, match="imported from a partner"):
        exchange.export_bank(store, store.bank_or_error("partner"), "pdq", tmp_path / "x.pdq")
