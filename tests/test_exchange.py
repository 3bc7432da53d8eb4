"""Hash exchange between two data folders: signed export, verified import, nothing personal leaves.

Folder A indexes the fixture photos as ads (with ad ids, sites and phones in
the manifest) and exports its hashes; folder B imports the list and finds a
re-encoded copy of one of A's photos in it. A flipped bit anywhere, a missing
signature or the wrong signer refuses the list and leaves B untouched.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from pathlib import Path

import pytest
from conftest import PHOTOS, jpeg_bytes, photo, run_reunite

from indexer import exchange
from indexer.store.store import Store
from matcher.search import Matcher

PDQ_LINE = re.compile(r"^[0-9a-f]{64},\d{1,3},H-[0-9a-f]{24}$")
CSV_LINE = re.compile(r"^H-[0-9a-f]{24},([0-9a-f]{64})?,(\d{1,3})?,([0-9a-f]{16})?$")
PERSONAL = ["AD-SECRET", "victim-site.example", "+12125550143", "555-0143", "astronaut", "coffee"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
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
    for fmt in exchange.FORMATS:
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
    assert pdq_lines[-1].startswith("#reunite-signature v1 format=pdq ")
    assert len(pdq_lines) - 1 == len(PHOTOS)
    assert all(PDQ_LINE.match(line) for line in pdq_lines[:-1])
    csv_lines = exported["csv"].read_text(encoding="ascii").splitlines()
    assert csv_lines[0] == "id,pdq,pdq_quality,phash"
    assert all(CSV_LINE.match(line) for line in csv_lines[1:-1]) and len(csv_lines) == len(PHOTOS) + 2
    store = Store(exported["a"])
    shas = store.catalog.known_sha256(store.bank_or_error("crawl").id)
    for path in (exported["pdq"], exported["csv"]):
        text = path.read_text(encoding="ascii")
        for forbidden in [*PERSONAL, *shas]:
            assert forbidden not in text
    ids_pdq = {line.rsplit(",", 1)[1] for line in pdq_lines[:-1]}
    ids_csv = {line.split(",", 1)[0] for line in csv_lines[1:-1]}
    assert ids_pdq == ids_csv  # the same image has the same opaque id in every export


@pytest.mark.parametrize("fmt", exchange.FORMATS)
def test_import_matches_a_reencoded_photo_across_folders(exported: dict[str, Path], fmt: str,
                                                         tmp_path: Path) -> None:
    data_b = tmp_path / "b"
    signer = exported["a"] / exchange.KEYS_DIR / exchange.PUBLIC_KEY
    done = run_reunite("import", str(exported[fmt]), "--bank", "partner-a", "--signer", str(signer),
                       data=data_b, check=True)
    assert f"imported {len(PHOTOS)} hashes" in done.stdout
    store_b = Store(data_b)
    bank_b = store_b.bank_or_error("partner-a")
    assert bank_b.kind == "hashes"
    query = photo("chelsea.png")
    query = query.resize((query.width * 2 // 3, query.height * 2 // 3))
    found = Matcher(store_b).match(jpeg_bytes(query, quality=55), [bank_b], top=3)
    assert found and found[0].decision == "match"
    # The hit is the opaque id folder A gave its chelsea photo, and nothing else identifies it.
    store_a = Store(exported["a"])
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


def test_tampered_unsigned_or_foreign_lists_are_refused(exported: dict[str, Path], tmp_path: Path) -> None:
    signer = exported["a"] / exchange.KEYS_DIR / exchange.PUBLIC_KEY
    store = Store(tmp_path / "b")
    data = exported["pdq"].read_bytes()
    trailer_at = data.rstrip(b"\n").rfind(b"\n") + 1
    sig_at = data.index(b"sig=", trailer_at) + 10
    cases = {
        "row": (_flip(data, 5), "does not verify"),
        "quality": (_flip(data, 66), "does not verify"),
        "signature": (_flip(data, sig_at), "does not verify|not signed"),
        "unsigned": (data[:trailer_at], "not signed"),
        "format": (data.replace(b"format=pdq", b"format=csv"), "does not verify"),
    }
    for name, (body, match) in cases.items():
        path = tmp_path / f"{name}.pdq"
        path.write_bytes(body)
        _refused(store, path, signer, match)
    other_dir = tmp_path / "c"
    exchange.signing_key(other_dir)
    _refused(store, exported["pdq"], other_dir / exchange.KEYS_DIR / exchange.PUBLIC_KEY, "signing key")
    # The command line says so and exits 2.
    bad = tmp_path / "row.pdq"
    done = run_reunite("import", str(bad), "--bank", "partner", "--signer", str(signer), data=tmp_path / "b")
    assert done.returncode == 2
    assert "signature does not verify" in done.stderr and "Traceback" not in done.stderr


def test_imported_lists_are_not_re_exported(exported: dict[str, Path], tmp_path: Path) -> None:
    store = Store(tmp_path / "b")
    signer = exported["a"] / exchange.KEYS_DIR / exchange.PUBLIC_KEY
    result = exchange.import_list(store, exported["csv"], "partner", signer)
    assert result.added == len(PHOTOS)
    assert exchange.import_list(store, exported["csv"], "partner", signer).added == 0  # idempotent
    with pytest.raises(exchange.ExchangeError, match="imported from a partner"):
        exchange.export_bank(store, store.bank_or_error("partner"), "pdq", tmp_path / "x.pdq")
